"""deploy: serve the registered champion.

``local``: download the champion version and start (or replace) a KServe model server process
on a loopback port, then wait until it reports ready. ``kserve``: create or patch the
InferenceService that serves it on the cluster and wait until it is Ready. Either way the
InferenceService manifest is written as an artifact.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import yaml

from ..recipe import Recipe
from ..settings import platform_home
from ..storage import atomic_path

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def champion_version(model_name: str):
    from mlflow import MlflowClient

    return MlflowClient().get_model_version_by_alias(model_name, "champion")


def storage_uri(model_name: str, version: str) -> str:
    """Where KServe's storage initializer fetches a version: its artifact location in the object store.

    A tracking server that proxies artifacts reports ``mlflow-artifacts:/…``; the bucket path behind
    it is the server's ``--artifacts-destination``, given to this step as PLATFORM_MLFLOW_ARTIFACTS_DESTINATION.
    """
    from mlflow import MlflowClient

    uri = MlflowClient().get_model_version_download_uri(model_name, version)
    destination = os.environ.get("PLATFORM_MLFLOW_ARTIFACTS_DESTINATION")
    if uri.startswith("mlflow-artifacts:") and destination:
        uri = f"{destination.rstrip('/')}/{urlparse(uri).path.lstrip('/')}"  # netloc, if any, is the server
    return uri


def inference_service(recipe: Recipe, storage_uri: str, version: str) -> dict:
    name, spec = recipe.registry.model_name, recipe.deploy
    predictor = {
        "serviceAccountName": spec.service_account,
        "model": {"modelFormat": {"name": "kfp-ml-bundle"}, "runtime": spec.runtime, "storageUri": storage_uri,
                  "args": [f"--model_name={name}"],
                  "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory},
                                "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit}}},
    }
    if spec.canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = spec.canary_traffic_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": spec.namespace,
                     "labels": {"app.kubernetes.io/part-of": "kfp-ml-platform", "model-version": str(version)}},
        "spec": {"predictor": predictor},
    }


ISVC = {"group": "serving.kserve.io", "version": "v1beta1", "plural": "inferenceservices"}


def _is_ready(obj: dict) -> bool:
    status = obj.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    return ready and status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)


def apply_inference_service(manifest: dict, timeout: float, poll: float = 2.0) -> str:
    """Create or patch the InferenceService and wait until it is Ready; return its URL.

    KServe moves traffic to a new revision only once it is ready, so when the new one fails the
    previous revision keeps serving; this step then fails with the reason KServe reports.
    """
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # read now, not at import
    api = client.CustomObjectsApi()
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        api.get_namespaced_custom_object(**ISVC, namespace=ns, name=name)
        api.patch_namespaced_custom_object(**ISVC, namespace=ns, name=name, body=manifest)
        log.info("patched InferenceService %s/%s", ns, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        api.create_namespaced_custom_object(**ISVC, namespace=ns, body=manifest)
        log.info("created InferenceService %s/%s", ns, name)
    deadline = time.monotonic() + timeout
    while True:
        obj = api.get_namespaced_custom_object(**ISVC, namespace=ns, name=name)
        if _is_ready(obj):
            url = obj["status"].get("url", "")
            log.info("InferenceService %s/%s is Ready at %s", ns, name, url)
            return url
        if time.monotonic() > deadline:
            reasons = [f"{c.get('type')}: {c.get('reason', '')} {c.get('message', '')}".strip()
                       for c in (obj.get("status") or {}).get("conditions", []) if c.get("status") != "True"]
            raise TimeoutError(f"InferenceService {ns}/{name} was not Ready within {timeout:.0f}s "
                               f"({'; '.join(reasons) or 'no status yet'}); the previous revision, if any, "
                               "keeps serving")
        time.sleep(poll)


def deploy(recipe: Recipe, manifest_path: str | None = None) -> dict:
    name = recipe.registry.model_name
    version = champion_version(name)
    log.info("champion of %s is version %s", name, version.version)
    manifest = inference_service(recipe, storage_uri(name, version.version), version.version)
    if manifest_path:
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(yaml.safe_dump(manifest, sort_keys=False))
    if recipe.deploy.target == "kserve":
        url = apply_inference_service(manifest, recipe.deploy.timeout_s)
        return {"target": "kserve", "version": version.version, "manifest": manifest,
                "url": f"{url.rstrip('/')}/v1/models/{name}:predict"}
    model_dir = fetch_version(name, version.version)
    url = start_local_server(name, model_dir, recipe.deploy.port)
    return {"target": "local", "version": version.version, "url": url, "model_dir": str(model_dir)}


def fetch_version(name: str, version: str) -> Path:
    """Download a registered version once, the way KServe's storage initializer would."""
    import mlflow.artifacts

    dest = platform_home() / "serving" / name / f"v{version}"
    if not (dest / "MLmodel").is_file():
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp))
    return dest


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop_local_server(name: str) -> None:
    state_file = platform_home() / "serving" / f"{name}.json"
    if not state_file.is_file():
        return
    pid = json.loads(state_file.read_text())["pid"]
    try:
        if "serving" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            raise ProcessLookupError  # the pid was reused by something else: nothing of ours to stop

        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, FileNotFoundError):
        pass
    state_file.unlink(missing_ok=True)


def start_local_server(name: str, model_dir: Path, port: int, timeout: float = 120) -> str:
    """Replace the model's server process with one for ``model_dir``; return its predict URL."""
    stop_local_server(name)
    state_dir = platform_home() / "serving"
    log_path = state_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "serving", "--model_dir", str(model_dir), "--model_name", name,
           "--http_port", str(port)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT,
                                start_new_session=True)  # outlives this step's process
    (state_dir / f"{name}.json").write_text(json.dumps({"pid": proc.pid, "port": port, "model_dir": str(model_dir)}))
    ready_url = f"http://127.0.0.1:{port}/v2/models/{name}/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"model server for {name} exited with code {proc.returncode}; log {log_path}:\n{tail}")
        if _ready(ready_url):
            log.info("model server for %s ready on port %d (pid %d, log %s)", name, port, proc.pid, log_path)
            return f"http://127.0.0.1:{port}/v1/models/{name}:predict"
        time.sleep(0.5)
    stop_local_server(name)
    raise TimeoutError(f"model server for {name} was not ready within {timeout:.0f}s; see {log_path}")
