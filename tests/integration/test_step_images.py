"""What a torch-free step image holds: its extras alone install into a fresh virtual environment
without torch, and the step runs there (what images/<step>.Dockerfile builds)."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("extra", ["data", "registry", "deploy"])
def test_step_extras_install_without_torch_and_run(extra, regression_run, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    # uv resolves and installs the same extras in seconds where pip takes minutes (mlflow's tree).
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    command = [uv, "pip", "install", "--quiet", "--python", py] if Path(uv).exists() else [py, "-m", "pip", "install",
                                                                                           "--quiet"]
    install = subprocess.run([*command, f"{ROOT}[{extra}]"], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    _, p = regression_run
    script = {
        "data": f"""
            from components.recipe import Recipe
            from components.steps import load, preprocess, split
            r = Recipe.parse({{"name": "t", "task": "regression", "register": {{"model_name": "t"}},
                              "data": {{"uri": "{DATA / 'california_housing.parquet'}", "target": "MedHouseVal"}}}})
            d = "{tmp_path}"
            load.load(r, d + "/raw.parquet")
            preprocess.preprocess(r, d + "/raw.parquet", d + "/clean.parquet", d + "/s.json", d + "/r.md")
            print(split.split(r, d + "/clean.parquet", d + "/a.parquet", d + "/b.parquet", d + "/c.parquet"))
        """,
        "registry": f"""
            import os
            os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{tmp_path}/m.db"
            from components.recipe import Recipe
            from components.steps.register import register
            r = Recipe.parse({{"name": "t", "task": "regression", "register": {{"model_name": "t"}},
                              "data": {{"uri": "x", "target": "MedHouseVal"}}}})
            print(register(r, "{p['model']}", "{p['eval']}", "image-test"))
        """,
        "deploy": f"""
            import os
            os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{tmp_path}/m.db"
            from components.recipe import Recipe
            from components.steps.register import register
            from components.steps.deploy import deploy
            r = Recipe.parse({{"name": "t", "task": "regression", "register": {{"model_name": "t"}},
                              "data": {{"uri": "x", "target": "MedHouseVal"}}, "deploy": {{"target": "kserve"}}}})
            register(r, "{p['model']}", "{p['eval']}", "image-test")
            try:  # no cluster here: the step gets as far as the Kubernetes client
                deploy(r, "{tmp_path}/isvc.yaml")
            except Exception as exc:  # exactly the client's "no kube-config" refusal, nothing else
                from kubernetes.config import ConfigException
                assert isinstance(exc, ConfigException) and "kube-config" in str(exc).lower(), repr(exc)
            else:
                raise AssertionError("deploy reached a cluster that is not there")
            assert "kind: InferenceService" in open("{tmp_path}/isvc.yaml").read()
        """,
    }[extra]
    script = textwrap.dedent(script) + "\nimport importlib.util; assert importlib.util.find_spec('torch') is None\n"
    run = subprocess.run([py, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]


def test_each_dockerfile_installs_its_steps_extras_before_the_code():
    """images/<step>.Dockerfile installs the extras pyproject names for that step, in a layer before
    the source is copied (a code change rebuilds in seconds); torch only in train and serving."""
    from images.requirements import requirements
    from pipelines.kfp_steps import STEP_IMAGES

    extras = {"data": "data", "registry": "registry", "deploy": "deploy", "train": "train vision",
              "serving": "serving vision"}
    assert set(STEP_IMAGES.values()) <= set(extras)
    for step, wanted in extras.items():
        text = (ROOT / "images" / f"{step}.Dockerfile").read_text()
        install = text.index(f"requirements.py pyproject.toml {wanted})")
        assert install < text.index("COPY components"), step
        assert ("TORCH_IMAGE" in text) == (step in ("train", "serving")), step
        reqs = requirements(str(ROOT / "pyproject.toml"), wanted.split())
        assert any(r.startswith("kfp") for r in reqs), reqs  # the KFP executor in every image
    ignored = (ROOT / ".dockerignore").read_text().splitlines()  # the context: the code and pyproject only
    assert "*" in ignored and "!components/" in ignored and "!.platform/" not in ignored
