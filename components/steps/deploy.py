"""deploy: serve the registered champion.

``local``: download the champion version and start (or replace) a KServe model server process
on a loopback port, then wait until *that process* answers ready with that version. ``kserve``:
create or patch the InferenceService that serves it on the cluster and wait until it is Ready.
Either way the InferenceService manifest is written as an artifact.

A run whose version did not become champion (register gave it ``challenger``) deploys nothing:
the champion's server or InferenceService is left exactly as it is.

Local server state lives in ``platform_home()/serving/<model>.json`` (pid, port, version,
model_dir, log); it is written, atomically, only once the new server is ready. A port held by
anything other than this model's previous server is refused before anything is stopped.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import yaml

from ..errors import PlatformError
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


def registered_digest(name: str, version: str) -> str:
    """The bundle digest register recorded on the version; the model server refuses other files."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ..model_source import DIGEST_TAG

    try:
        return MlflowClient().get_model_version(name, version).tags.get(DIGEST_TAG, "")
    except MlflowException as exc:  # a bundle served by hand, not a registered version
        log.warning("no registered digest for %s version %s (%s); the server will not re-check its files",
                    name, version, str(exc).splitlines()[0][:120])
        return ""


SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
_MODE_NAMES = {"RawDeployment": "Standard", "Serverless": "Knative"}  # KServe 0.16+ names the same modes so


def run_namespace() -> str:
    """The namespace this step runs in (a pod's ServiceAccount names it: on KFP the run's, a
    profile in multi-user Kubeflow), else the kube config context's, else 'default'."""
    try:
        with open(SA_NAMESPACE_FILE) as fh:
            if ns := fh.read().strip():
                return ns
    except OSError:
        pass
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kube config here: KServe's own default
        return "default"


def inference_service(recipe: Recipe, storage_uri: str, version: str, digest: str = "") -> dict:
    name, spec = recipe.registry.model_name, recipe.deploy
    predictor = {
        "serviceAccountName": spec.service_account,
        "model": {"modelFormat": {"name": "kfp-ml-bundle"}, "runtime": spec.runtime, "storageUri": storage_uri,
                  "args": [f"--model_name={name}", f"--model_version={version}"]
                  + ([f"--expected_digest={digest}"] if digest else []),
                  "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory},
                                "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit}}},
    }
    if spec.canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = spec.canary_traffic_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": spec.namespace or run_namespace(),
                     "labels": {"app.kubernetes.io/part-of": "kfp-ml-platform", "model-version": str(version)},
                     "annotations": {DEPLOYMENT_MODE: spec.deployment_mode}},
        "spec": {"predictor": predictor},
    }


ISVC = {"group": "serving.kserve.io", "version": "v1beta1", "plural": "inferenceservices"}


def _is_ready(obj: dict) -> bool:
    status = obj.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    return ready and status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def json_patch(current: dict, manifest: dict) -> list[dict]:
    """RFC 6902 operations that make ``current`` serve ``manifest``: the fields this step owns are
    set, and a canary split the new manifest does not ask for is removed (a merge patch would keep
    it: a key absent from a merge patch is left as it is). Other fields stay as they are."""
    meta, predictor = manifest["metadata"], manifest["spec"]["predictor"]
    ops = []
    for field in ("labels", "annotations"):
        if not (current["metadata"].get(field)):
            ops.append({"op": "add", "path": _pointer("metadata", field), "value": meta[field]})
        else:
            ops += [{"op": "add", "path": _pointer("metadata", field, k), "value": v} for k, v in meta[field].items()]
    if "predictor" not in current.get("spec", {}):
        return ops + [{"op": "add", "path": "/spec/predictor", "value": predictor}]
    ops += [{"op": "add", "path": _pointer("spec", "predictor", k), "value": v} for k, v in predictor.items()]
    if "canaryTrafficPercent" not in predictor and "canaryTrafficPercent" in current["spec"]["predictor"]:
        ops.append({"op": "remove", "path": "/spec/predictor/canaryTrafficPercent"})
    return ops


def _mode(name: str | None) -> str | None:
    return _MODE_NAMES.get(name, name) if name else None


def _check_namespace(core, ns: str) -> None:
    """Refuse a namespace labelled control-plane: KServe's pod webhook skips those, so no storage
    initializer would download the model and the predictor would start without it."""
    from kubernetes.client.rest import ApiException

    try:
        labels = core.read_namespace(ns).metadata.labels or {}
    except ApiException as exc:
        if exc.status == 404:
            raise DeployError(f"namespace {ns} does not exist; set deploy.namespace to the namespace that serves "
                              "models (unset: the one the run runs in)") from None
        if exc.status == 403:
            raise DeployError(f"the deploy step may not read namespace {ns} (HTTP 403), which it does to refuse "
                              "control-plane namespaces; apply the kfp-ml-platform-deployer Role of manifests/ "
                              "(namespace/rbac.yaml) in it") from None
        raise
    if "control-plane" in labels:
        raise DeployError(f"namespace {ns} is labelled control-plane, where KServe's pod webhook does not run, so no "
                          "storage initializer would fetch the model: set deploy.namespace to a namespace that serves "
                          "models (a Kubeflow profile, or one without that label)")


def apply_inference_service(manifest: dict, timeout: float, poll: float = 2.0) -> str:
    """Create or patch the InferenceService and wait until it is Ready; return its URL.

    KServe moves traffic to a new revision only once it is ready, so when the new one fails the
    previous revision keeps serving; this step then fails with the reason KServe reports. An
    existing one is changed with a JSON patch (so a canary split can be removed); its deployment
    mode cannot change, which is refused here with the way out.
    """
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # read now, not at import
    api = client.CustomObjectsApi()
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    _check_namespace(client.CoreV1Api(), ns)
    try:
        current = api.get_namespaced_custom_object(**ISVC, namespace=ns, name=name)
        running = ((current["metadata"].get("annotations") or {}).get(DEPLOYMENT_MODE)
                   or (current.get("status") or {}).get("deploymentMode"))
        wanted = manifest["metadata"]["annotations"][DEPLOYMENT_MODE]
        if running and _mode(running) != _mode(wanted):
            raise DeployError(f"InferenceService {ns}/{name} runs in {running} mode and KServe cannot change the "
                              f"deployment mode of an existing InferenceService: set deploy.deployment_mode to "
                              f"{running}, or delete it (kubectl -n {ns} delete isvc {name}) to recreate it as {wanted}")
        # The client's patch method always sends a merge patch; a JSON patch goes through call_api.
        api.api_client.call_api(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", "PATCH",
            path_params={**ISVC, "namespace": ns, "name": name}, body=json_patch(current, manifest),
            header_params={"Accept": "application/json", "Content-Type": "application/json-patch+json"},
            auth_settings=["BearerToken"], response_type="object", _return_http_data_only=True)
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


class DeployError(PlatformError, RuntimeError):
    """The new model server could not be started or did not become ready."""


class PortInUseError(DeployError):
    """The recipe's port is held by a process other than this model's previous server."""


def _registration(registration: str | dict | None) -> dict | None:
    if registration is None or registration == "":
        return None
    return json.loads(registration) if isinstance(registration, str) else dict(registration)


def deploy(recipe: Recipe, manifest_path: str | None = None, registration: str | dict | None = None) -> dict:
    """Serve the champion. ``registration`` is what register returned (JSON or dict): when the
    version it registered is not the champion now, nothing is deployed or restarted."""
    name = recipe.registry.model_name
    version = str(champion_version(name).version)
    log.info("champion of %s is version %s", name, version)
    registered = _registration(registration)
    if registered is not None and (registered.get("alias") != "champion"
                                   or str(registered.get("version")) != version):
        return _leave_champion(recipe, registered, version, manifest_path)
    manifest = inference_service(recipe, storage_uri(name, version), version, registered_digest(name, version))
    if manifest_path:
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(yaml.safe_dump(manifest, sort_keys=False))
    if recipe.deploy.target == "kserve":
        url = apply_inference_service(manifest, recipe.deploy.timeout_s)
        return {"target": "kserve", "version": version, "manifest": manifest, "deployed": True,
                "url": f"{url.rstrip('/')}/v1/models/{name}:predict"}
    model_dir = fetch_version(name, version)
    if os.environ.get("PLATFORM_MODEL_SERVER") == "container":  # pipelines/container_runner.py serves it in its image
        return {"target": "local", "version": version, "url": "", "model_dir": str(model_dir), "deployed": True}
    url = start_local_server(name, model_dir, recipe.deploy.port, version=version)
    return {"target": "local", "version": version, "url": url, "model_dir": str(model_dir), "deployed": True}


def _leave_champion(recipe: Recipe, registered: dict, champion: str, manifest_path: str | None) -> dict:
    """A version that is not the champion: no server is started, stopped or patched."""
    name = recipe.registry.model_name
    why = (f"{name} version {registered.get('version')} was registered as {registered.get('alias') or 'no alias'}, "
           f"not champion (the champion is version {champion}); deploy changes nothing and the champion's "
           f"{'InferenceService' if recipe.deploy.target == 'kserve' else 'server'} keeps serving")
    log.info("%s", why)
    if manifest_path:  # the step's manifest artifact says why there is no manifest
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(f"# not deployed: {why}\n")
    url = ""
    state = read_state(name)
    if recipe.deploy.target == "local" and state and _is_model_server(state.get("pid"), name):
        url = f"http://127.0.0.1:{state['port']}/v1/models/{name}:predict"
    return {"target": recipe.deploy.target, "version": champion, "url": url, "deployed": False, "reason": why}


def fetch_version(name: str, version: str) -> Path:
    """Download a registered version once, the way KServe's storage initializer would."""
    from ..model_source import fetch_registered

    dest = platform_home() / "serving" / name / f"v{version}"
    if not (dest / "MLmodel").is_file():
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            fetch_registered(f"models:/{name}/{version}", "deploy", tmp)  # refuses files not as registered
    return dest


# ---- local model server processes -------------------------------------------------------------

def _state_file(name: str) -> Path:
    return platform_home() / "serving" / f"{name}.json"


def read_state(name: str) -> dict | None:
    try:
        state = json.loads(_state_file(name).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("pid"), int) else None


def _write_state(name: str, state: dict) -> None:
    path = _state_file(name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)  # readers see the old state or the new one, never half of one


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _describe(pid: int) -> str:
    args = " ".join(a for a in _cmdline(pid) if a)
    return f"pid {pid} ({args[:120]})" if args else f"pid {pid}"


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child that exited
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not serving
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_model_server(pid, name: str) -> bool:
    """Whether ``pid`` is alive and is ``python -m serving`` for model ``name`` (not a reused pid)."""
    if not isinstance(pid, int) or pid <= 0 or not _alive(pid):
        return False
    args = _cmdline(pid)
    try:
        return args[args.index("-m") + 1] == "serving" and args[args.index("--model_name") + 1] == name
    except (ValueError, IndexError):
        return False


def _port_free(port: int) -> bool:
    """Whether a server could bind ``port`` on 127.0.0.1 now (a listener on 0.0.0.0 or [::] also holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on ``port`` on any address; None where /proc/net cannot tell."""
    inodes, readable = set(), False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes if readable else None


def _port_holders(port: int) -> set[int] | None:
    """Pids with a socket listening on ``port``; None where that cannot be found out. An empty set
    with a listener present means the holder is a process this user cannot inspect."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    targets, pids = {f"socket:[{i}]" for i in inodes}, set()
    if not targets:
        return pids
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in targets for fd in (proc / "fd").iterdir()):
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def _in_group(pid: int, leader: int) -> bool:
    """``pid`` is ``leader`` or one of its workers (the server runs in its own session)."""
    try:
        return pid == leader or os.getpgid(pid) == leader
    except OSError:
        return False


def _port_in_use(port: int) -> bool:
    return not _port_free(port) or bool(_listening_inodes(port))


def _stop_pid(pid: int, name: str, wait: float = 10.0) -> None:
    if not _is_model_server(pid, name):
        return  # gone, or the pid was reused by something else: nothing of ours to stop
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.1)
    except ProcessLookupError:
        pass


def stop_local_server(name: str) -> None:
    state = read_state(name)
    if state is None:
        _state_file(name).unlink(missing_ok=True)
        return
    _stop_pid(state["pid"], name)
    _state_file(name).unlink(missing_ok=True)


def _reload_file(name: str) -> Path:
    return platform_home() / "serving" / f"{name}.reload.json"


def _swap_in_place(name: str, model_dir: Path, port: int, version: str | None, previous: dict,
                   timeout: float) -> dict | None:
    """Have the running server load the new version beside the old and swap (KServe's repository
    API, ``serving/reload.py``), instead of starting a process. Its new state, or None when it
    could not: then the caller restarts the server as before."""
    if not previous.get("reload_file"):
        return None  # a server started before hot reload existed
    target = {"model_dir": str(model_dir), "version": version or "",
              "digest": registered_digest(name, version) if version else ""}
    with atomic_path(previous["reload_file"]) as tmp:
        tmp.write_text(json.dumps(target))
    started = time.monotonic()
    status, body = _http(f"http://127.0.0.1:{port}/v2/repository/models/{name}/load", "POST", timeout)
    served = _served_versions(port, name)
    if status != 200 or (version and served != [str(version)]):
        log.warning("the %s server on port %d did not swap in version %s (HTTP %s %s; serves %s): restarting it",
                    name, port, version or "?", status or "no answer", body[:300].decode(errors="replace"), served)
        return None
    log.info("the %s server on port %d (pid %d) now serves version %s: swapped in place in %.1f s, no restart",
             name, port, previous["pid"], version or "?", time.monotonic() - started)
    return {**previous, "version": version or "", "model_dir": str(model_dir), "swapped": time.time()}


def _served_versions(port: int, name: str) -> list[str]:
    status, body = _http(f"http://127.0.0.1:{port}/v2/models/{name}")
    try:
        return [str(v) for v in json.loads(body).get("versions") or []] if status == 200 else []
    except ValueError:
        return []


def _launch(name: str, model_dir: Path, port: int, version: str | None, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "serving", "--model_dir", str(model_dir), "--model_name", name,
           "--http_port", str(port), f"--reload_file={_reload_file(name)}"]
    if version:
        cmd.append(f"--model_version={version}")
        digest = registered_digest(name, version)
        if digest:  # the server re-checks the files it loads, even from this cache
            cmd.append(f"--expected_digest={digest}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log_path, "ab") as log_file:
        log_file.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name} version {version or '?'} "
                       f"on port {port}\n".encode())
        log_file.flush()
        return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT,
                                start_new_session=True)  # outlives this step's process


def _http(url: str, method: str = "GET", timeout: float = 2) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _log_tail(log_path: Path, offset: int, lines: int = 25) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _wait_ready(proc: subprocess.Popen, name: str, version: str | None, port: int, timeout: float,
                log_path: Path, log_offset: int) -> None:
    """Until the process just started answers on ``port``: alive, holding the port, V2 health ready,
    and V2 metadata naming ``version``. Another server answering on the port does not count."""
    base = f"http://127.0.0.1:{port}"
    deadline, seen = time.monotonic() + timeout, "no answer"
    while True:
        if proc.poll() is not None:
            raise DeployError(f"the model server for {name} version {version or '?'} exited with code "
                              f"{proc.returncode} before it was ready on port {port}; last lines of {log_path}:\n"
                              f"{_log_tail(log_path, log_offset)}")
        status, body = _http(f"{base}/v2/models/{name}")
        if status == 200:
            try:
                served = [str(v) for v in json.loads(body).get("versions") or []]
            except (ValueError, AttributeError):
                served = []
            holders = _port_holders(port)
            if version and version not in served:
                seen = f"port {port} answers for versions {served or 'unknown'}, not {version}"
            elif holders is not None and not any(_in_group(p, proc.pid) for p in holders):
                seen = (f"port {port} is answered by {', '.join(map(_describe, sorted(holders))) or 'another user'}"
                        f", not by the new server (pid {proc.pid})")
            elif _http(f"{base}/v2/health/ready")[0] == 200 and proc.poll() is None:
                return
            else:
                seen = "V2 health not ready yet"
        if time.monotonic() > deadline:
            raise DeployError(f"the model server for {name} version {version or '?'} (pid {proc.pid}) was not ready "
                              f"on port {port} within {timeout:.0f}s ({seen}); last lines of {log_path}:\n"
                              f"{_log_tail(log_path, log_offset)}")
        time.sleep(0.5)


def _start(name: str, model_dir: Path, port: int, version: str | None, timeout: float) -> dict:
    """Start a server and wait for it; on failure stop it and raise. Returns its state record."""
    log_path = platform_home() / "serving" / f"{name}.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc = _launch(name, model_dir, port, version, log_path)
    try:
        _wait_ready(proc, name, version, port, timeout, log_path, offset)
    except BaseException:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        raise
    return {"pid": proc.pid, "port": port, "version": version or "", "model_dir": str(model_dir),
            "log": str(log_path), "started": time.time(), "reload_file": str(_reload_file(name))}


def _wait_port_free(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.1)


def start_local_server(name: str, model_dir: Path, port: int, timeout: float = 120, version: str | None = None) -> str:
    """Serve ``model_dir`` (registered ``version``) on 127.0.0.1:``port``; return its predict URL.

    * The port held by this model's previous server (the pid in the state file, alive, and that
      model's server): it loads the new version beside the old and swaps (``serving/reload.py``),
      no restart; where it cannot, it is stopped, then a new one started, and if that fails, the
      previous one is started again. On another port, the new one starts first and the previous one is
      stopped only once the new one is ready.
    * The port held by anything else: ``PortInUseError`` before anything is stopped.
    * The state file changes only once the new server is ready.
    """
    (platform_home() / "serving").mkdir(parents=True, exist_ok=True)
    previous = read_state(name)
    if previous is not None and not _is_model_server(previous["pid"], name):
        log.info("state file of %s names pid %s, which is not its server any more", name, previous["pid"])
        previous = None
    in_place = previous is not None and previous.get("port") == port
    if _port_in_use(port):
        holders = _port_holders(port)
        ours = in_place and (holders is None or (holders and all(_in_group(p, previous["pid"]) for p in holders)))
        if not ours:
            holder = ("a process this user cannot inspect" if holders == set() else "an unknown process"
                      if holders is None else ", ".join(_describe(p) for p in sorted(holders)))
            raise PortInUseError(
                f"port {port} on 127.0.0.1 is already in use by {holder}, which is not the {name} model server "
                f"this platform started; nothing was stopped — set deploy.port to a free port or stop that process")
    if previous is None:
        _state_file(name).unlink(missing_ok=True)  # a stale record of a server that is gone

    swapped = _swap_in_place(name, model_dir, port, version, previous, timeout) if in_place else None
    if swapped is not None:
        _write_state(name, swapped)
        return f"http://127.0.0.1:{port}/v1/models/{name}:predict"
    if in_place:
        log.info("replacing the %s server on port %d (pid %d, version %s)", name, port, previous["pid"],
                 previous.get("version") or "?")
        _stop_pid(previous["pid"], name)
        _state_file(name).unlink(missing_ok=True)  # nothing claims a server while none is up
        _wait_port_free(port)
    try:
        state = _start(name, model_dir, port, version, timeout)
    except DeployError as exc:
        if not in_place:
            raise DeployError(f"{exc}\nnothing was stopped: "
                              + (f"the previous {name} server (pid {previous['pid']}, port {previous['port']}) "
                                 "keeps serving" if previous else f"no {name} server was running")) from None
        raise DeployError(f"{exc}\n{_restore(name, previous, timeout)}") from None
    _write_state(name, state)
    if previous is not None and not in_place:
        _stop_pid(previous["pid"], name)  # only now that the new one serves
        log.info("stopped the previous %s server on port %d (pid %d)", name, previous["port"], previous["pid"])
    log.info("model server for %s version %s ready on port %d (pid %d, log %s)", name, version or "?", port,
             state["pid"], state["log"])
    return f"http://127.0.0.1:{port}/v1/models/{name}:predict"


def _restore(name: str, previous: dict, timeout: float) -> str:
    """Start the server that was replaced again, so a failed deploy does not leave the model unserved."""
    try:
        _wait_port_free(previous["port"])
        state = _start(name, Path(previous["model_dir"]), previous["port"], previous.get("version") or None, timeout)
    except (DeployError, OSError, KeyError) as exc:
        return (f"the previous {name} server (version {previous.get('version') or '?'}) could not be started again "
                f"({str(exc).splitlines()[0]}); nothing serves {name} on port {previous.get('port')} now")
    _write_state(name, state)
    return (f"the previous {name} server (version {state['version'] or '?'}) was started again on port "
            f"{state['port']} (pid {state['pid']}) and keeps serving")
