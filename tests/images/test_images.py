"""The built images (`make images`), each step run in its own image as uid 1000 with a read-only
root filesystem, then the whole DAG with `submit.py --runner container`, ending with the serving
image answering V1 and V2. Run with `make test-images` (PLATFORM_IMAGE_TESTS=1)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from pipelines import container_runner as cr
from tests.conftest import DATA, ROOT, free_port

STEPS = ("data", "train", "registry", "deploy", "serving")
HARDENED = ["--user", "1000:1000", "--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges"]
SMALL = {"name": "t", "task": "regression", "register": {"model_name": "t"},
         "data": {"uri": str(DATA / "california_housing.parquet"), "target": "MedHouseVal", "sample_rows": 1500},
         "model": {"name": "mlp", "params": {"hidden_sizes": [16]}}, "train": {"epochs": 2, "batch_size": 128},
         "evaluate": {"gate": ["rmse <= 5"]}}


def image(step: str) -> str:
    os.environ.setdefault("PLATFORM_IMAGE_REGISTRY", "localhost/kfp-ml-platform")
    return cr.image(step)


def podman(*args, timeout=600, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)[:300]}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def run_in(step: str, script: str, work: Path, *extra: str, network: str = "none") -> str:
    """Run a Python script in a step image as uid 1000, read-only root, tmpfs /tmp, no network by
    default; ``work`` (owned by uid 1000) is mounted at /work, the shipped data read-only."""
    prelude = textwrap.dedent("""
        import os, importlib.util
        assert os.getuid() == 1000 and os.getgid() == 1000, (os.getuid(), os.getgid())
        for path in ("/app/x", "/opt/venv/x", "/x"):
            try:
                open(path, "w")
                raise AssertionError(f"{path} is writable: the root filesystem should be read-only")
            except OSError:
                pass
        assert os.environ["PLATFORM_HOME"] == "/tmp/platform"
    """)
    proc = podman("run", "--rm", *HARDENED, f"--network={network}", "-v", f"{work}:/work",
                  "-v", f"{DATA}:{DATA}:ro", *extra, "--entrypoint", "python", image(step), "-c",
                  prelude + textwrap.dedent(script), check=False)
    assert proc.returncode == 0, f"{step} image:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image-steps")
    os.chown(path, 1000, 1000) if os.geteuid() == 0 else path.chmod(0o777)
    return path


def test_images_are_built_and_sized():
    sizes = {}
    for step in STEPS:
        proc = podman("image", "inspect", "--format", "{{.Size}} {{.Config.User}}", image(step), check=False)
        assert proc.returncode == 0, f"{image(step)} is not built: run `make images`"
        size, user = proc.stdout.split()
        assert user.startswith("1000"), f"{step} image runs as {user!r}, not uid 1000"
        sizes[step] = int(size) / 1e9
    print("image sizes (GB):", json.dumps({k: round(v, 2) for k, v in sizes.items()}))
    assert max(sizes[s] for s in ("data", "registry", "deploy")) < sizes["train"]


@pytest.mark.parametrize("step", ["data", "registry", "deploy"])
def test_torch_free_images_have_no_torch(step, work):
    run_in(step, "assert importlib.util.find_spec('torch') is None, 'torch in a torch-free image'", work)


def test_data_step_in_its_image(work):
    out = run_in("data", f"""
        from components.recipe import Recipe
        from components.steps import load, preprocess, split
        r = Recipe.parse({SMALL!r})
        load.load(r, "/work/raw.parquet")
        preprocess.preprocess(r, "/work/raw.parquet", "/work/clean.parquet", "/work/schema.json", "/work/report.md")
        print(split.split(r, "/work/clean.parquet", "/work/train.parquet", "/work/val.parquet", "/work/test.parquet"))
    """, work)
    assert "train" in out and (work / "test.parquet").is_file()


def test_train_and_evaluate_in_their_image(work):
    out = run_in("train", f"""
        import cv2, torch, ultralytics, timm, transformers  # opencv headless: imports without libGL
        assert torch.__version__.startswith("2.14.1"), torch.__version__
        from components.recipe import Recipe
        from components.steps.train import train
        from components.steps.evaluate import evaluate
        r = Recipe.parse({SMALL!r})
        train(r, "/work/train.parquet", "/work/val.parquet", "/work/schema.json", "/work/model", "/work/curve.html")
        print(evaluate(r, "/work/model", "/work/test.parquet", "/work/eval", "/work/report.html")["verdict"])
    """, work)
    assert out.strip().endswith("passed"), out[-2000:]


def test_an_external_model_clones_and_trains_in_the_train_image(work):
    """model.params.repo: the train image has git, so the external adapter clones the repository at its
    commit, trains it (the platform's packages seen through system_site_packages, nothing downloaded:
    no network) and predicts."""
    from tests.integration.test_external_adapter import git, make_repo

    repo = make_repo(work / "repo")
    head = git(repo, "rev-parse", "HEAD")  # before the chown: git refuses a repository another user owns
    subprocess.run(["chown", "-R", "1000:1000", str(repo)], check=True) if os.geteuid() == 0 else None
    out = run_in("train", f"""
        import json, numpy as np
        from components.models import build_adapter
        from components.recipe import TrainSpec
        rng = np.random.default_rng(0)
        X = rng.normal(size=(160, 4)).astype(np.float32)
        y = X[:, 0] * 2 - X[:, 1]
        spec = TrainSpec(epochs=3, seed=1)
        adapter = build_adapter("external", "regression", None, {{"repo": "/work/repo", "system_site_packages": True}},
                                train=spec)
        adapter.fit(X[:120], y[:120], X[120:], y[120:], spec)
        print(json.dumps({{"commit": adapter.commit_, "epochs": len(adapter.history_),
                          "rmse": float(np.sqrt(np.mean((adapter.predict_raw(X[120:]) - y[120:]) ** 2)))}}))
    """, work)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["commit"] == head and result["epochs"] == 3, result
    assert result["rmse"] < float(np.std(np.random.default_rng(0).normal(size=(160, 4))[120:, 0] * 2)), result


def test_register_and_deploy_in_their_images(work):
    register = f"""
        import os
        os.environ["MLFLOW_TRACKING_URI"] = "sqlite:////work/mlflow.db"
        os.environ["PLATFORM_ARTIFACT_ROOT"] = "/work/mlartifacts"
        from components.recipe import Recipe
        from components.steps.register import register
        r = Recipe.parse({SMALL!r})
        print(register(r, "/work/model", "/work/eval", "image-test"))
    """
    assert "champion" in run_in("registry", register, work)
    run_in("deploy", f"""
        import os
        os.environ["MLFLOW_TRACKING_URI"] = "sqlite:////work/mlflow.db"
        from components.recipe import Recipe
        from components.steps.deploy import deploy
        r = Recipe.parse({{**{SMALL!r}, "deploy": {{"target": "kserve"}}}})
        try:  # no cluster here: the step gets as far as the Kubernetes client
            deploy(r, "/work/isvc.yaml")
        except Exception as exc:
            assert "kube" in type(exc).__module__ or "config" in str(exc).lower(), exc
        assert "kind: InferenceService" in open("/work/isvc.yaml").read()
    """, work)


def _check_v1_v2(base: str, name: str, rows: list[dict]) -> None:
    v1 = requests.post(f"{base}/v1/models/{name}:predict", json={"instances": rows}, timeout=30)
    assert v1.status_code == 200, v1.text
    assert len(v1.json()["predictions"]) == len(rows)
    body = {"inputs": [{"name": c, "shape": [len(rows)], "datatype": "FP64", "data": [r[c] for r in rows]}
                       for c in rows[0]]}
    v2 = requests.post(f"{base}/v2/models/{name}/infer", json=body, timeout=30)
    assert v2.status_code == 200, v2.text
    assert len(v2.json()["outputs"][0]["data"]) == len(rows)
    bad = requests.post(f"{base}/v1/models/{name}:predict", data=b"{not json", timeout=30,
                        headers={"Content-Type": "application/json"})
    assert bad.status_code == 400, bad.text


def test_serving_image_answers_v1_and_v2(work):
    import pandas as pd

    port = free_port()
    name = "image-test-serving"
    podman("rm", "-f", name, check=False)
    podman("run", "-d", "--name", name, *HARDENED, "-p", f"127.0.0.1:{port}:8080", "-v", f"{work / 'model'}:/mnt/models:ro",
           image("serving"), "--model_name", "housing")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/models/housing/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            running = podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout
            assert "true" in running and time.monotonic() < deadline, podman("logs", name, check=False).stderr[-3000:]
            time.sleep(1)
        rows = pd.read_parquet(work / "test.parquet").drop(columns="MedHouseVal").head(3).to_dict("records")
        _check_v1_v2(f"http://127.0.0.1:{port}", "housing", rows)
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


def test_dag_with_the_container_runner(tmp_path):
    """The default recipe with few epochs, every step in its image; the served champion answers."""
    home = tmp_path / "home"
    env = {**os.environ, "PLATFORM_HOME": str(home), "PLATFORM_IMAGE_REGISTRY": "localhost/kfp-ml-platform"}
    for key in ("MLFLOW_TRACKING_URI", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DOCKER_HOST"):
        env.pop(key, None)
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "pipelines/submit.py", "--runner", "container", "--set", "train.epochs=3",
                               "--set", f"deploy.port={free_port()}"], capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=1500)
        seconds = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
        out = proc.stdout
        print(f"container-runner DAG: {seconds:.0f} s wall (including service start-up)")
        for step in ("load", "preprocess", "split", "train", "evaluate", "register", "deploy"):
            assert re.search(rf"^\s*{step}\s+done in", out, re.M), f"{step} did not run:\n{out[-3000:]}"
        served = re.search(r"served at:\s+(http://127\.0\.0\.1:(\d+))/v1/models/(\S+):predict", out)
        assert served, out[-3000:]
        base, name = served.group(1), served.group(3)
        state = json.loads((home / "serving" / f"{name}.json").read_text())
        assert state["container"] == cr.serving_container(name, home)
        example = json.loads((Path(state["model_dir"]) / "input_example.json").read_text())
        rows = [dict(zip(example["columns"], r)) for r in example["data"][:3]]
        _check_v1_v2(base, name, rows)
        # The steps' network reaches the two services and nothing else.
        probe = textwrap.dedent("""
            import socket, urllib.request
            assert urllib.request.urlopen("http://mlflow:5000/health", timeout=5).status == 200
            socket.create_connection(("s3", 8333), timeout=5).close()
            for host, port in (("1.1.1.1", 443), ("pypi.org", 443)):
                try:
                    socket.create_connection((host, port), timeout=5).close()
                    raise AssertionError(f"a step reached {host}")
                except OSError:
                    pass
        """)
        podman("run", "--rm", *HARDENED, f"--network={cr.network(home)}", "--entrypoint", "python", image("data"), "-c", probe)
    finally:
        cr.stop(home)
