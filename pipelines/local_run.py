"""What a local run needs around kfp.local: one run at a time per store, its own output
directory, the steps stopped when the run is stopped, and which steps came from the cache."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from pipelines.step_forkserver import steps_forked

CACHE_HIT = re.compile(r"Task (\S+) cache hit")


@contextlib.contextmanager
def exclusive_store(home: Path, what: str):
    """Hold the local store (MLflow's sqlite file, the serving ports) for one run; a second run
    waits, saying for whom, instead of failing inside MLflow with 'database is locked'."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "run.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another run"
            print(f"waiting: {holder} is using {home}; this run starts when it ends", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} ({what})")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


@contextlib.contextmanager
def steps_stopped_on_signal():
    """SIGTERM/SIGINT end the run *and* its running steps (kfp.local leaves them running)."""
    def stop(signum, _frame):
        import psutil

        children = psutil.Process().children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        name = signal.Signals(signum).name
        print(f"\nstopped by {name}: {len(children)} step process(es) ended", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StepFailed(RuntimeError):
    """A step of the run failed: its name, the one-sentence reason, and where its full log is."""

    def __init__(self, step: str, reason: str, log: Path):
        super().__init__(f"step {step} failed: {reason}")
        self.step, self.reason, self.log = step, reason, log


class CacheHits(logging.Handler):
    """Collects the names of the tasks kfp.local took from its cache."""

    def __init__(self, on_hit=None):
        super().__init__(level=logging.INFO)
        self.tasks: list[str] = []
        self.on_hit = on_hit

    def emit(self, record: logging.LogRecord) -> None:
        found = CACHE_HIT.search(record.getMessage())
        if found:
            self.tasks.append(found.group(1))
            if self.on_hit:
                self.on_hit(found.group(1))

    def __enter__(self) -> "CacheHits":
        root = logging.getLogger()
        self._level = root.level
        root.setLevel(min(root.level, logging.INFO) or logging.INFO)
        root.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)


def new_run_dir(root: Path, name: str) -> Path:
    """A directory of this run's own, so concurrent or later runs never report each other's outputs."""
    path = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True)
    return path


ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([\w-]+)'")
FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
EPOCH = re.compile(r"(?:\bmember (\d+)/(\d+)\s+)?\bepoch (\d+)/(\d+)")  # members of an ensemble: one bar
REASON = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Refused)): (.+)$")
STEP_NAMES = {"resolve-recipe": "resolve", "load-data": "load", "preprocess-data": "preprocess",
              "split-data": "split", "train-model": "train", "evaluate-model": "evaluate",
              "backtest-model": "backtest", "register-model": "register", "deploy-model": "deploy",
              "tune-model": "tune", "tune-trials": "tune-worker"}


def step_name(task: str) -> str:
    return STEP_NAMES.get(task, task)


class Console:
    """kfp.local's output goes to one log file per step; the terminal gets a line per step, a
    progress bar while training, and on failure the step, its one-sentence reason and its log.

    Installed as ``sys.stdout`` for the run: kfp.local prints the steps' streamed output and logs
    its own messages there. ``verbose`` also passes everything through, as kfp.local prints it."""

    def __init__(self, log_dir: Path, terminal, verbose: bool = False):
        self.log_dir, self.terminal, self.verbose = log_dir, terminal, verbose
        log_dir.mkdir(parents=True, exist_ok=True)
        self.run_log = open(log_dir / "run.log", "a")
        self.task, self.log, self.started, self.bar = None, self.run_log, 0.0, None
        self.failed: tuple[str, Path] | None = None
        self._pending = ""

    # --- the file protocol print() and logging need --------------------------------------
    def write(self, text: str) -> int:
        if self.verbose:
            self.terminal.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def isatty(self) -> bool:
        return False

    # --- what a line means --------------------------------------------------------------------
    def _line(self, line: str) -> None:
        if found := STARTED.search(line):
            self._start(found.group(1))
        self.log.write(line + "\n")
        if found := FINISHED.search(line):
            self._finish(found.group(1), found.group(2))
        elif self.task == "train-model" and (found := EPOCH.search(line)):
            member, members, epoch, epochs = (int(g) if g else 1 for g in found.groups())
            self._progress((member - 1) * epochs + epoch, members * epochs)

    def _start(self, task: str) -> None:
        self.task, self.started = task, time.monotonic()
        self.log = open(self.log_dir / f"{step_name(task)}.log", "w")
        self._say(f"  {step_name(task):<11} running ...")

    def _finish(self, task: str, status: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        seconds = time.monotonic() - self.started
        log_path = Path(self.log.name)
        self.log.close()
        self.log, self.task = self.run_log, None
        if status == "SUCCESS":
            self._say(f"  {step_name(task):<11} done in {seconds:5.1f} s")
        else:
            self.failed = (task, log_path)
            self._say(f"  {step_name(task):<11} FAILED after {seconds:.1f} s")

    def cached(self, task: str) -> None:
        self._say(f"  {step_name(task):<11} from cache")

    def _progress(self, epoch: int, epochs: int) -> None:
        if self.verbose or not self.terminal.isatty():  # a bar only where it redraws in place
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, desc="  train", unit="epoch", file=self.terminal, leave=False,
                            dynamic_ncols=True, mininterval=0.5)
        self.bar.update(epoch - self.bar.n)

    def _say(self, text: str) -> None:
        if not self.verbose:
            self.terminal.write(text + "\n")
            self.terminal.flush()

    # --- after a failure ----------------------------------------------------------------------
    def failure_reason(self) -> tuple[str, str, Path] | None:
        """(step, the last error sentence its log holds, the log's path) of the step that failed."""
        if self.failed is None:
            return None
        task, path = self.failed
        reasons = [m.group(2) for m in map(REASON.match, path.read_text().splitlines()) if m]
        return step_name(task), (reasons[-1] if reasons else "see its log"), path

    def close(self) -> None:
        if self._pending:
            self._line(ANSI.sub("", self._pending))
        if self.bar is not None:
            self.bar.close()
        self.run_log.close()


@contextlib.contextmanager
def console_for(log_dir: Path, verbose: bool):
    """``sys.stdout`` and Python warnings routed through a ``Console`` for the duration of a run."""
    import warnings

    console = Console(log_dir, sys.stdout, verbose)
    real_stdout, real_showwarning = sys.stdout, warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        console.log.write(warnings.formatwarning(message, category, filename, lineno, line))

    sys.stdout, warnings.showwarning = console, showwarning
    try:
        yield console
    finally:
        sys.stdout, warnings.showwarning = real_stdout, real_showwarning
        console.close()


def code_version(root: Path = Path(__file__).resolve().parents[1]) -> str:
    """A hash of the platform's own code (every .py under components/, pipelines/, serving/, by path and
    content). The local step cache is kept per code version: kfp.local keys a step by its inputs and
    command, which name no code, so a step cached before the platform changed would be reused as if its
    code had made it (a pose schema without flip_idx, a model trained by an old loop)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for part in ("components", "pipelines", "serving") for p in (root / part).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


WORKSPACE = "workspace"  # kfp.local's workspace in a run directory (it removes it when the run ends)


def outputs_dir(run_dir: Path) -> Path | None:
    """kfp.local's output tree in a run directory, beside the logs and the workspace."""
    return next((p for p in sorted(run_dir.iterdir()) if p.is_dir() and p.name not in ("logs", WORKSPACE)), None)


def run_pipeline(pipeline, home: Path, name: str, caching: bool = True, verbose: bool = False,
                 runner=None) -> tuple[Path, list[str], float]:
    """Run a pipeline with kfp.local in a run directory of its own, quietly; returns the directory,
    the tasks taken from the cache and the seconds it took. A failed step raises ``StepFailed``."""
    from kfp import local

    run_dir = new_run_dir(home / "pipeline_root", name)
    # One cache for all runs of the same platform code; each run writes its outputs in a directory of its own.
    cache = home / "pipeline_root" / ".kfp_cache" / code_version()
    workspace = run_dir / WORKSPACE  # kfp.local would make one in /tmp, left there when a run is stopped
    workspace.mkdir(parents=True, exist_ok=True)
    local.init(runner=runner or local.SubprocessRunner(use_venv=False), pipeline_root=str(run_dir),
               workspace_root=str(workspace), cache_root=str(cache), raise_on_error=True, enable_caching=caching)
    started = time.time()
    with console_for(run_dir / "logs", verbose) as console, CacheHits(console.cached) as hits, \
            (contextlib.nullcontext() if runner else steps_forked(run_dir / "logs" / "forkserver.log")):
        try:
            pipeline()
        except RuntimeError:
            failed = console.failure_reason()
            if failed is None:
                raise
            raise StepFailed(*failed) from None
    return run_dir, hits.tasks, time.time() - started
