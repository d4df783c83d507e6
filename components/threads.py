"""How many threads a step's numeric work should use.

PyTorch (and OpenMP under it) starts one thread per core it may run on. That is right on an idle
machine and wrong twice over elsewhere: in a container whose CPU quota is smaller than the node
(Kubernetes limits), and beside another busy process, where every parallel region waits for the
thread that shares a core and training runs several times slower than with fewer threads. The
budget is the CPU affinity, capped by the cgroup quota, less the cores other processes keep busy
when the step starts (not counting the fork server a local run's steps come from, whose imports
end within seconds); ``train.threads`` (or ``PLATFORM_THREADS``) sets it outright.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time

log = logging.getLogger(__name__)


def cpu_budget() -> int:
    """Cores this process may use: its affinity, capped by a cgroup CPU quota (v2 or v1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def _cgroup_quota() -> float | None:
    try:
        text = open("/sys/fs/cgroup/cpu.max").read().split()
        if text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, IndexError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


def busy_cores(seconds: float = 0.25, ignore_pid: int | None = None) -> float:
    """Cores kept busy by all processes over a short sample (/proc/stat), less what ``ignore_pid``
    used meanwhile; 0 where it cannot be read."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle, _process_ticks(ignore_pid)

    try:
        (total0, idle0, own0), _, (total1, idle1, own1) = sample(), time.sleep(seconds), sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    elapsed = total1 - total0
    cores = os.cpu_count() or 1
    return 0.0 if elapsed <= 0 else max(0.0, (1 - (idle1 - idle0) / elapsed - (own1 - own0) / elapsed) * cores)


def _process_ticks(pid: int | None) -> int:
    """utime + stime of a process in clock ticks (the unit of /proc/stat); 0 if it is gone."""
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


def choose_threads(requested: int | None = None) -> int:
    if requested:
        return requested
    if os.environ.get("PLATFORM_THREADS"):
        return max(1, int(os.environ["PLATFORM_THREADS"]))
    budget = cpu_budget()
    # A step forked by pipelines/step_forkserver.py: the server's imports end within seconds.
    server = int(os.environ.get("PLATFORM_FORKSERVER_PID", "0") or 0)
    return max(1, budget - int(round(busy_cores(ignore_pid=server)))) if budget > 1 else 1


def configure(requested: int | None = None) -> int:
    """Set PyTorch's intra-op threads (when torch is in use) and return the number chosen."""
    threads = choose_threads(requested)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    log.info("using %d thread(s) (CPU budget %d%s)", threads, cpu_budget(),
             "" if requested or os.environ.get("PLATFORM_THREADS") else ", less cores busy at start")
    return threads
