"""The external model: a git repository the test creates (scikit-learn SGD on the given Parquet, metrics as
JSON lines, a joblib file, a predict function) trained through build_adapter, bundled, loaded, and each
way it can fail named; then once through submit.py to a served model."""
import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from components.errors import RecipeError
from components.models import build_adapter, load_adapter
from components.models.external import ExternalTrainingError, environment
from components.recipe import TrainSpec

TRAIN_PY = '''\
import argparse, json, pathlib
import joblib, numpy as np, pandas as pd
from sklearn.linear_model import SGDClassifier, SGDRegressor

ap = argparse.ArgumentParser()
for name in ("--train", "--val", "--output-dir", "--epochs", "--seed"):
    ap.add_argument(name)
a = ap.parse_args()
train, val = pd.read_parquet(a.train), pd.read_parquet(a.val)
X, y, Xv, yv = train.drop(columns="y").to_numpy(), train["y"].to_numpy(), val.drop(columns="y").to_numpy(), val["y"].to_numpy()
classify = y.dtype.kind in "iu"
model = (SGDClassifier(loss="log_loss", random_state=int(a.seed)) if classify
         else SGDRegressor(random_state=int(a.seed), learning_rate="constant", eta0=0.01))
out = pathlib.Path(a.output_dir)
with open(out / "metrics.jsonl", "w") as metrics:
    for epoch in range(1, int(a.epochs) + 1):
        if classify:
            model.partial_fit(X, y, classes=np.arange(3))
            p = np.clip(model.predict_proba(Xv)[np.arange(len(yv)), yv], 1e-12, 1)
            loss = float(-np.mean(np.log(p)))
        else:
            model.partial_fit(X, y)
            loss = float(np.mean((model.predict(Xv) - yv) ** 2))
        print(f"epoch {epoch} val_loss {loss:.4f}", flush=True)
        metrics.write(json.dumps({"epoch": epoch, "val_loss": loss, "note": "text is dropped"}) + "\\n")
        metrics.flush()
joblib.dump(model, out / "model.joblib")
'''

PREDICT_PY = '''\
import functools, pathlib
import joblib


@functools.lru_cache
def _model(model_dir):
    return joblib.load(pathlib.Path(model_dir) / "model.joblib")


def predict(X, model_dir):
    model = _model(model_dir)
    return model.predict_proba(X.to_numpy()) if hasattr(model, "predict_proba") else model.predict(X.to_numpy())
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(repo), "PATH": "/usr/bin:/bin"}).stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    files = {"train.py": TRAIN_PY, "predict.py": PREDICT_PY,
             "requirements.txt": "numpy\nscikit-learn>=1.0\npandas\npyarrow\njoblib\n", **(files or {})}
    return commit(path, files, "first")


def commit(path: Path, files: dict[str, str], message: str) -> Path:
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", message)
    return path


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def data(task, n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = X[:, 0] * 2 - X[:, 1] if task == "regression" else (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    return X[:120], y[:120], X[120:], y[120:]


def external(repo, task="regression", train=None, **params):
    return build_adapter("external", task, 3 if task == "classification" else None,
                         {"repo": str(repo), "system_site_packages": True, **params}, train=train)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_fit_predict_save_load_round_trip(tmp_path, repo, task, caplog):
    caplog.set_level("INFO", logger="components.models.external")
    spec = TrainSpec(epochs=4, seed=1)
    adapter = external(f"file://{repo}", task, train=spec)
    states = []
    assert adapter.fit(*data(task), spec, states.append) is adapter
    assert [s["epoch"] for s in states] == [1, 2, 3, 4] and adapter.history_ == states
    assert set(states[0]) == {"epoch", "val_loss"}, "non-numeric fields are dropped"
    assert "external | epoch 3 val_loss" in caplog.text, "the command's output is in the step log"
    assert adapter.commit_ == git(repo, "rev-parse", "HEAD")
    X_val = data(task)[2]
    out = adapter.predict_raw(X_val)
    adapter.save(tmp_path / "m")
    assert (tmp_path / "m" / "src" / "train.py").is_file() and not (tmp_path / "m" / "src" / ".git").exists()
    assert (tmp_path / "m" / "output" / "model.joblib").is_file()
    assert json.loads((tmp_path / "m" / "config.json").read_text())["commit"] == adapter.commit_
    again = load_adapter("external", tmp_path / "m")
    assert again.commit_ == adapter.commit_
    np.testing.assert_allclose(again.predict_raw(X_val), out, rtol=1e-6)
    assert not list((tmp_path / "m").rglob("__pycache__")), "importing the bundled code leaves the bundle as it was"
    if task == "regression":
        assert out.shape == (40,) and np.mean((out - data(task)[3]) ** 2) < 0.5 * np.var(data(task)[3])
    else:
        assert out.shape == (40, 3) and np.allclose(out.sum(1), 1)


def test_ref_pins_a_commit_and_the_environment_is_reused(tmp_path, repo):
    first = git(repo, "rev-parse", "HEAD")
    commit(repo, {"predict.py": PREDICT_PY + "\nraise ImportError('the second commit is broken')\n"}, "second")
    adapter = external(repo, ref=first).fit(*data("regression"), TrainSpec(epochs=1), None)
    assert adapter.commit_ == first and "broken" not in (adapter._src / "predict.py").read_text()
    with pytest.raises(ExternalTrainingError, match=r"importing 'predict' from the repository failed: ImportError: "
                                                    r"the second commit is broken"):
        external(repo, ref="main").fit(*data("regression"), TrainSpec(epochs=1), None)
    envs = list((tmp_path / "home" / "external" / "envs").iterdir())
    assert len(envs) == 1, "the same requirements reuse one environment"


def test_requirements_the_platform_satisfies_are_not_installed(tmp_path, repo):
    """With system_site_packages the environment is a bare venv that sees the platform's packages."""
    venv = environment(repo, None, True, 60)
    assert not (venv / "requirements.txt").exists()
    code = "import sklearn, sys; print(sys.prefix)"
    assert subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == str(venv)
    with pytest.raises(RecipeError, match=r"'missing\.txt' is not a file of the repository"):
        environment(repo, "missing.txt", True, 60)


def test_metrics_from_stdout_and_custom_command(tmp_path):
    repo = make_repo(tmp_path / "r2", {"fit.py": textwrap.dedent('''\
        import json, sys, joblib, pathlib
        out, scale = pathlib.Path(sys.argv[1]), float(sys.argv[2])
        for epoch in (1, 2):
            print(json.dumps({"epoch": epoch, "val_loss": 1.0 / epoch}))
        joblib.dump(scale, out / "model.joblib")
        '''), "predict.py": "import joblib, pathlib\n\ndef predict(X, model_dir):\n"
                            "    return X['x0'].to_numpy() * joblib.load(pathlib.Path(model_dir) / 'model.joblib')\n"})
    adapter = external(repo, train_command=["{python}", "fit.py", "{output_dir}", "{scale}"], metrics_file="stdout",
                       parameters={"scale": 3})
    adapter.fit(*data("regression"), TrainSpec(), None)
    assert adapter.history_ == [{"epoch": 1, "val_loss": 1.0}, {"epoch": 2, "val_loss": 0.5}]
    X = data("regression")[2]
    np.testing.assert_allclose(adapter.predict_raw(X), X[:, 0] * 3, rtol=1e-6)


# --- each way it fails, named ----------------------------------------------------------------------
def fit(adapter):
    return adapter.fit(*data("regression"), TrainSpec(), None)


def test_repository_missing_or_not_git(tmp_path):
    with pytest.raises(RecipeError, match=r"^model\.params\.repo: '.*nowhere' does not exist"):
        fit(external(tmp_path / "nowhere"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(RecipeError, match=r"^model\.params\.repo: '.*plain' is not a git repository"):
        fit(external(tmp_path / "plain"))


def test_unknown_ref_lists_the_branches(repo):
    with pytest.raises(RecipeError, match=r"^model\.params\.ref: 'v9' is not a branch, tag or commit of .*\['main'\]"):
        fit(external(repo, ref="v9"))


def test_failing_command_shows_its_last_20_lines(tmp_path):
    repo = make_repo(tmp_path / "r", {"train.py": "import sys\nfor i in range(1, 31):\n    print(f'line {i}')\n"
                                                  "sys.exit(3)\n"})
    with pytest.raises(ExternalTrainingError, match=r"exited with status 3; its last 20 lines:\nline 11\n") as err:
        fit(external(repo))
    assert "line 30" in str(err.value) and "line 10\n" not in str(err.value)


@pytest.mark.parametrize("script,match", [
    ("pass", r"wrote no metrics\.jsonl in \{output_dir\}"),
    ("(out / 'metrics.jsonl').write_text('{\"epoch\": 1, \"val_loss\": 0.5}\\nnot json\\n')",
     r"line 2 of metrics\.jsonl is not JSON: 'not json'"),
    ("(out / 'metrics.jsonl').write_text('{\"epoch\": 1, \"loss\": 0.5}\\n')",
     r"record 1 of metrics\.jsonl has no finite numeric 'val_loss'"),
])
def test_missing_or_malformed_metrics(tmp_path, script, match):
    train = f"import pathlib, sys\nout = pathlib.Path(sys.argv[sys.argv.index('--output-dir') + 1])\n{script}\n"
    repo = make_repo(tmp_path / "r", {"train.py": train})
    with pytest.raises(ExternalTrainingError, match=match):
        fit(external(repo))


def test_missing_entry_point(repo):
    with pytest.raises(ExternalTrainingError, match=r"has no module 'serve' \(expected serve\.py\)"):
        fit(external(repo, predict="serve:predict"))
    with pytest.raises(ExternalTrainingError, match=r"predict\.py has no function 'infer' .* defines \['predict'\]"):
        fit(external(repo, predict="predict:infer"))


def test_timeout_stops_the_command(tmp_path):
    repo = make_repo(tmp_path / "r", {"train.py": "import time\nprint('starting', flush=True)\ntime.sleep(60)\n"})
    with pytest.raises(ExternalTrainingError, match=r"ran past 1 s and was stopped; its last output:\nstarting"):
        fit(external(repo, timeout_s=1))


def test_params_and_train_options_are_checked_before_anything_runs(repo):
    with pytest.raises(RecipeError, match=r"the 'repo' parameter of external is required"):
        build_adapter("external", "regression")
    with pytest.raises(RecipeError, match=r"unknown placeholder \{epoch\}; known are"):
        external(repo, train_command=["python", "train.py", "{epoch}"])
    with pytest.raises(RecipeError, match=r"the 'predict' parameter of external"):
        external(repo, predict="predict.py")
    with pytest.raises(RecipeError, match=r"^train\.seed: .* has no \{seed\} placeholder .* Got 5 instead\.$"):
        external(repo, train=TrainSpec(seed=5), train_command=["python", "train.py", "{epochs}"])
    with pytest.raises(RecipeError, match=r"^train\.batch_size: the 'batch_size' option of external must be left"):
        external(repo, train=TrainSpec(batch_size=7))


# --- through the pipeline ----------------------------------------------------------------------------
def test_a_moving_ref_is_never_served_from_the_pipeline_cache(repo):
    from pipelines.pipeline import _model_cacheable
    from tests.conftest import make_recipe

    sha = git(repo, "rev-parse", "HEAD")
    def external_model(**params):
        return make_recipe(model={"name": "external", "params": {"repo": str(repo), **params}})

    assert not _model_cacheable(external_model()) and not _model_cacheable(external_model(ref="main"))
    assert _model_cacheable(external_model(ref=sha)) and _model_cacheable(make_recipe())


def test_a_moving_ref_tunes_in_a_study_of_its_current_commit(tmp_path, repo):
    """Tuning's study is per commit: after the branch moves, trials of the old code are not continued; and
    the compiled pipeline never takes a tune step (or its trial workers) from the cache for such a ref."""
    import yaml

    from components.steps.tune import study_name
    from pipelines.compile import main as compile_main
    from tests.conftest import ROOT, make_recipe

    recipe = make_recipe(model={"name": "external", "params": {"repo": str(repo), "ref": "main"}}, tune={"trials": 2})
    parts = [tmp_path / "train.parquet", tmp_path / "val.parquet"]
    for part in parts:
        part.write_bytes(b"same data")
    first = study_name(recipe, *map(str, parts))
    pinned = make_recipe(model={"name": "external", "params": {"repo": str(repo), "ref": git(repo, "rev-parse", "HEAD")}},
                         tune={"trials": 2})
    pinned_name = study_name(pinned, *map(str, parts))
    assert study_name(recipe, *map(str, parts)) == first
    commit(repo, {"train.py": TRAIN_PY + "\n# changed\n"}, "second")
    assert study_name(recipe, *map(str, parts)) != first
    assert study_name(pinned, *map(str, parts)) == pinned_name  # pinned code: the same study, as before

    out = tmp_path / "pipeline.yaml"
    assert compile_main(["--output", str(out), "--recipe", str(ROOT / "pipelines" / "recipes" / "california-housing.yaml"),
                         "--set", "model.name=external", "--set", f"model.params.repo={repo}",
                         "--set", "tune.trials=4", "--set", "tune.workers=2"]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))  # the pipeline; the platform spec follows
    tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for n, t in tasks.items() if n.startswith("for-loop"))
    worker = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]["tune-trials"]
    assert tasks["tune-model"]["cachingOptions"] == {} and worker["cachingOptions"] == {}  # caching off
    assert tasks["train-model"]["cachingOptions"] == {} and tasks["load-data"]["cachingOptions"] == {"enableCache": True}


@pytest.mark.e2e
def test_submit_trains_registers_and_serves_an_external_model(tmp_path, monkeypatch, repo):
    import requests

    from components.recipe import Recipe
    from components.steps.deploy import stop_local_server
    from pipelines.submit import run_local
    from tests.conftest import ROOT, free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PLATFORM_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    name, port = "e2e-external", free_port()
    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "california-housing.yaml", [
        "model.name=external", f"model.params.repo={repo}", "model.params.system_site_packages=true",
        "data.sample_rows=1500", "train.epochs=5", "evaluate.gate=['rmse <= 1.5']",
        f"register.model_name={name}", f"deploy.port={port}"])
    try:
        summary = run_local(recipe)
        assert summary["gate"] == "passed" and "(champion)" in summary["registered"], summary
        answer = summary["sample_answer"]["predictions"]
        assert len(answer) >= 1 and all(isinstance(v, float) for v in answer)
        served = json.loads((Path(os.environ["PLATFORM_HOME"]) / "serving" / f"{name}.json").read_text())
        assert (Path(served["model_dir"]).rglob("src/predict.py").__next__()).is_file()
        v1 = requests.post(summary["served_url"], json=summary["sample_request"], timeout=30)
        assert v1.status_code == 200 and v1.json()["predictions"] == answer
    finally:
        stop_local_server(name)



def test_the_source_is_extracted_alike_where_tarfile_has_no_filters(tmp_path, repo, monkeypatch):
    """Python before 3.11.4 (the Debian base image's 3.11.2) has no tarfile filters: the committed files
    still arrive, checked by hand."""
    import tarfile

    from components.models.external import archive_source

    head = git(repo, "rev-parse", "HEAD")
    archive_source(repo, head, tmp_path / "with")
    monkeypatch.delattr(tarfile, "data_filter")
    archive_source(repo, head, tmp_path / "without")
    files = sorted(p.relative_to(tmp_path / "with") for p in (tmp_path / "with").rglob("*"))
    assert files == sorted(p.relative_to(tmp_path / "without") for p in (tmp_path / "without").rglob("*"))
    assert (tmp_path / "without" / "train.py").read_text() == TRAIN_PY


@pytest.mark.parametrize("links", [[("s2", "."), ("s1", "s2/..")], [("up", "..")], [("abs", "/etc")]])
def test_without_tarfile_filters_a_link_out_of_the_source_is_refused(tmp_path, monkeypatch, links):
    """Checked member by member before anything is extracted, a chain of links (s1 -> s2/.., s2 -> .)
    could still point outside: any link target that is absolute or has a .. part is refused."""
    import io
    import tarfile

    from components.models import external

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.setattr(external.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, buffer.getvalue()))
    with pytest.raises(ExternalTrainingError, match=r"which is not a file, a folder or a link within the repository"):
        external.archive_source(tmp_path, "HEAD", tmp_path / "src")
    assert not any((tmp_path / "src").iterdir())
