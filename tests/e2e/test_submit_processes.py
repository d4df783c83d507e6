"""submit.py as people use it: stopped half way, or started twice at once on the same local store."""
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

SMALL = ["--set", "model.params.hidden_sizes=[8]", "--set", "evaluate.gate=['rmse <= 0.0001']",
         "--set", "register.model_name=proc-housing"]


def submit(tmp_path, *args: str, log_name: str) -> subprocess.Popen:
    env = {**os.environ, "PLATFORM_HOME": str(tmp_path / "home"), "PLATFORM_ARTIFACT_ROOT": str(tmp_path / "art"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    return subprocess.Popen([sys.executable, "pipelines/submit.py", *SMALL, *args], cwd=ROOT, env=env,
                            stdout=open(tmp_path / log_name, "w"), stderr=subprocess.STDOUT)


def command_line(process: psutil.Process) -> str:
    # Steps start and end while we look: a child may be gone or a zombie by the time we ask.
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess is a NoSuchProcess
        return ""


def test_a_stopped_submit_stops_the_step_it_was_running(tmp_path):
    proc = submit(tmp_path, "--set", "train.epochs=100000", "--set", "train.early_stopping_patience=100000",
                  log_name="submit.log")
    try:
        deadline, train = time.monotonic() + 240, None
        while train is None and time.monotonic() < deadline and proc.poll() is None:
            train = next((p for p in psutil.Process(proc.pid).children(recursive=True)
                          if "train_model" in command_line(p)), None)
            time.sleep(0.5)
        assert train is not None, (tmp_path / "submit.log").read_text()[-3000:]
        time.sleep(2)  # well inside the training loop
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        psutil.wait_procs([train], timeout=5)
        assert not train.is_running(), "the train step outlived the stopped submit"
        assert "stopped by SIGTERM" in (tmp_path / "submit.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_two_submits_on_one_store_both_finish_each_with_its_own_outputs(tmp_path):
    first = submit(tmp_path, "--set", "train.epochs=2", log_name="first.log")
    time.sleep(1)
    second = submit(tmp_path, "--set", "train.epochs=2", log_name="second.log")
    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    logs = [(tmp_path / name).read_text() for name in ("first.log", "second.log")]
    outputs = [next(line for line in log.splitlines() if line.startswith("outputs:")) for log in logs]
    assert outputs[0] != outputs[1], outputs
    assert "waiting:" in logs[1] and "is using" in logs[1], "the second run said why it waited"
    assert "version 1" in logs[0] and "version 1" in logs[1], "the second run's steps came from the first's"
    assert "registered before: the same bundle, recipe and evaluation" in logs[1]
    assert len(logs[0].splitlines()) < 60, "one line per step and a short summary, not KFP's executor dumps"
    assert "from cache:  nothing" in logs[0] and "gate:        failed  (rmse" in logs[0]


def test_a_failing_step_ends_with_its_name_its_reason_and_its_log(tmp_path):
    # A column the pre-run check cannot see missing (it peeks at the target only): preprocess finds it.
    proc = submit(tmp_path, "--set", "data.drop_columns=['no_such_column']", log_name="failed.log")
    assert proc.wait(timeout=300) == 1, (tmp_path / "failed.log").read_text()[-2000:]
    last = (tmp_path / "failed.log").read_text().strip().splitlines()[-2:]
    assert last[0].startswith("step preprocess failed: ") and "no_such_column" in last[0], last
    log = last[1].removeprefix("full log: ")
    assert log.endswith("preprocess.log") and "Traceback" in open(log).read(), "the traceback is in the step's log"
    assert "Traceback" not in (tmp_path / "failed.log").read_text()
