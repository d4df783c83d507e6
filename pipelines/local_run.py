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


class CacheHits(logging.Handler):
    """Collects the names of the tasks kfp.local took from its cache."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.tasks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = CACHE_HIT.search(record.getMessage())
        if found:
            self.tasks.append(found.group(1))

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
