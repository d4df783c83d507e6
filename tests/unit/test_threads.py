"""Thread budget: affinity and cgroup quota, busy cores, and the overrides."""
import os
import subprocess
import sys

from components import threads
from tests.conftest import ROOT


def test_budget_follows_affinity_and_overrides_win(monkeypatch):
    assert 1 <= threads.cpu_budget() <= len(os.sched_getaffinity(0))
    assert threads.choose_threads(3) == 3
    monkeypatch.setenv("PLATFORM_THREADS", "2")
    assert threads.choose_threads() == 2


def test_a_pinned_process_gets_one_thread_and_torch_is_set():
    code = "import torch; from components import threads; n = threads.configure(); print(n, torch.get_num_threads())"
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "PLATFORM_THREADS": ""})
    assert out.stdout.split() == ["1", "1"]


def test_busy_cores_sees_a_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert threads.busy_cores(0.5) >= 0.7
    finally:
        busy.kill()


def test_the_fork_server_a_step_came_from_is_not_counted_as_busy():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with_it, without_it = threads.busy_cores(0.5), threads.busy_cores(0.5, ignore_pid=busy.pid)
        assert with_it - without_it >= 0.7, (with_it, without_it)
        assert threads.busy_cores(0.2, ignore_pid=2 ** 22 + 1) >= 0  # a pid that is gone counts nothing
    finally:
        busy.kill()
