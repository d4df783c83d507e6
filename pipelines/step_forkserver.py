"""A fork server for kfp.local's subprocess runner: every step still runs in a process of its own,
forked from one that has already imported the libraries the steps share.

kfp.local starts each step as ``sh -ec '... python -m kfp.dsl.executor_main ...'``: a new interpreter
that imports pandas, scikit-learn, torch, matplotlib and MLflow again, 0.5–3.5 s a step and most of
what the local DAG spends beyond the work itself (tests/benchmarks/bench_dag.py). The server imports
them once, in the background while the first steps run, and forks a child per step. The child does
what the shell script would: writes the component's source to a temporary file, takes the step's
environment, working directory and arguments, runs KFP's executor, and ends with the exit status a
fresh interpreter would have. Its output goes to the pipe kfp.local reads, so logs, outputs and
statuses are those of a plain run; a command of any other form runs the usual way.

The idea is multiprocessing's forkserver with ``set_forkserver_preload`` (which cannot give a child
the caller's stdout), or Android's zygote. Forking is only safe while the server has one thread, so
it checks before every fork and answers "run it yourself" otherwise. The native pools the preloaded
libraries start (OpenBLAS's workers, jemalloc's background thread) handle fork themselves with
pthread_atfork; polars' are not known to, so polars is not preloaded.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EXECUTOR = "kfp.dsl.executor_main"
# What the steps import, in the order the DAG first needs it (measured with sys.modules after each step).
PRELOAD = (
    EXECUTOR, "components.runner", "pipelines.kfp_steps",
    "pandas", "pyarrow.parquet", "pyarrow.dataset", "components.steps.load", "components.steps.preprocess",
    "sklearn.model_selection", "sklearn.preprocessing", "sklearn.metrics", "components.steps.split",
    "torch", "torch.optim", "torch._dynamo", "components.models.torch_training", "components.steps.train",
    "sklearn.compose", "sklearn.pipeline", "sklearn.linear_model", "mlflow.pyfunc", "matplotlib.pyplot",
    "sklearn.ensemble", "sklearn.inspection", "markdown", "components.steps.evaluate",
    "mlflow.store.tracking.sqlalchemy_store", "git", "components.steps.register",
    "kubernetes.client", "components.steps.deploy",
)
_HEADER = struct.Struct("!I")
_STATUS = struct.Struct("!i")
FALLBACK = -(2 ** 31)  # the server's answer for "not forked: run it the usual way"


def kfp_script(python: str) -> str:
    """The shell script of kfp's lightweight component command, ``python3`` replaced by ``python`` as
    kfp.local's subprocess runner does (kfp/dsl/component_factory.py)."""
    return ('program_path=$(mktemp -d)\n\nprintf "%s" "$0" > "$program_path/ephemeral_component.py"\n'
            f'_KFP_RUNTIME=true {python} -m {EXECUTOR}                         --component_module_path'
            '                         "$program_path/ephemeral_component.py"                         "$@"\n')


def step_request(full_command: list[str]) -> dict | None:
    """The source and executor arguments of a kfp.local step command, if it is exactly the known form."""
    if len(full_command) < 4 or full_command[:2] != ["sh", "-ec"] or full_command[2] != kfp_script(sys.executable):
        return None
    return {"source": full_command[3], "args": full_command[4:]}


# --- the server ------------------------------------------------------------------------------

def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)  # to the pipe the client waits on; then stdout is not used again
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    waiting: dict[int, tuple[int, socket.socket]] = {}  # pidfd → (pid, the client's connection)
    preload, parent = list(PRELOAD), os.getppid()
    while True:
        if not waiting and os.getppid() != parent:  # the run that started it was killed
            return
        readable, _, _ = select.select([listener, *waiting], [], [], 0 if preload else 1.0)
        if not readable and preload:
            _import(preload.pop(0))  # between requests: a request waits at most for one module
            continue
        for ready in readable:
            if ready is listener:
                _fork_step(listener, waiting, path)
            else:
                pid, conn = waiting.pop(ready)
                _, status = os.waitpid(pid, 0)
                os.close(ready)
                shutil.rmtree(_step_dir(path, pid), ignore_errors=True)  # a killed step could not remove it
                _say(f"{pid} ended with {os.waitstatus_to_exitcode(status)}")
                with contextlib.suppress(OSError):
                    conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(status)))
                conn.close()


def _import(name: str) -> None:
    if name == "matplotlib.pyplot":
        import matplotlib

        matplotlib.use("Agg")  # what components/plots.py chooses; steps are headless
    started = time.monotonic()
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 — an optional library missing is the step's business, not ours
        _say(f"preload: {name} not imported: {e}")
    else:
        _say(f"preload: {name} in {time.monotonic() - started:.2f} s")


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {text}", file=sys.stderr, flush=True)


def _step_dir(socket_path: str, pid: int) -> str:
    """Where the step forked as ``pid`` keeps its copy of the component module: beside the server's
    socket, so the server removes it when it reaps the step and the client's close removes them all."""
    return os.path.join(os.path.dirname(socket_path), f"step-{pid}")


def _fork_step(listener: socket.socket, waiting: dict, path: str) -> None:
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 1)
        (size,) = _HEADER.unpack(header)
        payload = b""
        while len(payload) < size:
            chunk = conn.recv(size - len(payload))
            if not chunk:
                raise ConnectionError("client left")
            payload += chunk
        request = json.loads(payload)
        if len(fds) != 1:
            raise ValueError(f"{len(fds)} file descriptors, expected the step's output pipe")
    except (OSError, ValueError, struct.error) as e:
        _say(f"bad request: {e}")
        conn.close()
        for fd in fds:
            os.close(fd)
        return
    if threading.active_count() > 1:  # a Python thread may hold a lock the child would inherit held
        _say(f"not forking while threads run ({', '.join(t.name for t in threading.enumerate())}): a fresh interpreter")
        with contextlib.suppress(OSError):  # the client may have gone
            conn.sendall(_STATUS.pack(FALLBACK))
        conn.close()
        os.close(fds[0])
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        listener.close()
        for _, other in waiting.values():
            other.close()
        _run_step(request, fds[0], conn, _step_dir(path, os.getpid()))  # never returns
    os.close(fds[0])
    waiting[os.pidfd_open(pid)] = (pid, conn)
    _say(f"forked {pid} for {request['args'][-1] if request['args'] else '?'}")


def _run_step(request: dict, out_fd: int, conn: socket.socket, step_dir: str) -> None:
    """In the forked child: what ``sh -ec kfp_script`` and a fresh interpreter would do, then exit.

    The child tells the client its exit status itself (the status a fresh interpreter would end with is
    settled before its exit handlers run); the server, which may be busy importing, sends it again
    after reaping the child, which only counts when the child was killed before it could."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        _show_in_ps(request["args"])  # first: setproctitle needs the environment block as it was
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"], _KFP_RUNTIME="true", PLATFORM_FORKSERVER_PID=str(os.getppid()))
        tempfile.tempdir = None  # the step's TMPDIR, not the one the server's first temporary file settled on
        module = Path(step_dir) / "ephemeral_component.py"  # kfp's sh script would leave its copy in /tmp
        module.parent.mkdir()
        module.write_text(request["source"])
        executor = sys.modules[EXECUTOR] if EXECUTOR in sys.modules else importlib.import_module(EXECUTOR)
        sys.argv = [executor.__file__, "--component_module_path", str(module), *request["args"]]
        executor.executor_main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 — as the interpreter would: the traceback, then status 1
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, e.__traceback__
        sys.excepthook(type(e), e, e.__traceback__)
    finally:
        shutil.rmtree(step_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            conn.sendall(_STATUS.pack(code))
        atexit._run_exitfuncs()  # the libraries' handlers and components.runner's early exit, as at shutdown
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _show_in_ps(args: list[str]) -> None:
    """``ps`` shows the step's command as it would for a fresh interpreter, less the long JSON argument."""
    try:
        from setproctitle import setproctitle
    except ImportError:  # only the title is missing
        return
    shown = [a if len(a) < 200 else "..." for a in args]
    setproctitle(" ".join([sys.executable, "-m", EXECUTOR, *shown, f"(forked by {__name__})"]))


# --- the client, in the process that runs kfp.local -------------------------------------------

class ForkServer:
    """Starts the server beside a local run and sends it the steps; ``run`` has the signature of
    kfp.local's ``run_local_subprocess``, for which it stands in."""

    def __init__(self, log: Path):
        self.dir = tempfile.mkdtemp(prefix="kfp-forkserver-")
        self.path = os.path.join(self.dir, "socket")
        self.log = open(log, "a")
        env = {**os.environ, "_KFP_RUNTIME": "true"}  # kfp's light import, as in the step command
        self.process = subprocess.Popen([sys.executable, "-m", __name__, self.path], stdout=subprocess.PIPE,
                                        stderr=self.log, stdin=subprocess.DEVNULL, env=env, text=True)
        self._ready = False

    def _wait_ready(self) -> bool:
        if not self._ready and self.process.poll() is None:
            self._ready = self.process.stdout.readline().strip() == "ready"
        return self._ready and self.process.poll() is None

    def run(self, full_command: list[str], env_vars: dict[str, str] | None = None, fallback=None) -> int:
        request = step_request(full_command)
        code = self._forked(request, env_vars) if request is not None and self._wait_ready() else FALLBACK
        return fallback(full_command, env_vars) if code == FALLBACK else code

    def _forked(self, request: dict, env_vars: dict[str, str] | None) -> int:
        read, write = os.pipe()
        payload = json.dumps({**request, "cwd": os.getcwd(), "env": {**os.environ, **(env_vars or {})}}).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            try:
                conn.connect(self.path)
                socket.send_fds(conn, [_HEADER.pack(len(payload))], [write])
                conn.sendall(payload)
            except OSError:
                os.close(read)
                return FALLBACK
            finally:
                os.close(write)
            with open(read, encoding="utf-8", errors="replace") as out:  # as kfp.local prints a step's lines
                for line in out:
                    print(line, end="")
            status = b""
            while len(status) < _STATUS.size and (chunk := conn.recv(_STATUS.size - len(status))):
                status += chunk
        if len(status) < _STATUS.size:
            print(f"the step's fork server ended before the step did (see {self.log.name})", file=sys.stderr)
            return 1
        (code,) = _STATUS.unpack(status)
        if code != FALLBACK:
            print("\n")
        return code

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)  # the socket and any step's module left by a killed server


@contextlib.contextmanager
def steps_forked(log: Path):
    """kfp.local's subprocess runner sends its steps to a fork server for the duration of the block.
    ``PLATFORM_STEP_FORKSERVER=0`` turns it off (every step a fresh interpreter, as kfp.local does)."""
    if os.environ.get("PLATFORM_STEP_FORKSERVER", "1") == "0" or not hasattr(os, "pidfd_open"):
        yield None
        return
    from kfp.local import subprocess_task_handler as handler

    original = handler.run_local_subprocess
    server = ForkServer(log)
    handler.run_local_subprocess = lambda full_command, env_vars=None: server.run(full_command, env_vars, original)
    try:
        yield server
    finally:
        handler.run_local_subprocess = original
        server.close()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(sys.argv[1])
