"""kfp.local's subprocess runner with the step fork server (pipelines/step_forkserver.py): real
components through the real kfp.local, each in a process forked from the server."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Output
from kfp.local.subprocess_task_handler import replace_python_executable

from pipelines.step_forkserver import kfp_script, step_request, steps_forked

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@dsl.component(base_image="python:3.11", install_kfp_package=False)  # as pipelines/kfp_steps.py builds them
def whoami(table: Output[Dataset]) -> str:
    import json
    import os
    import sys
    import tempfile

    with open(table.path, "w") as f:
        f.write("a,b\n1,2\n")
    with open("/proc/self/cmdline") as f:  # what ps shows
        shown = f.read().replace("\0", " ")
    return json.dumps({"ps": shown, "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "argv": sys.argv[1:3],
                       "greeting": os.environ.get("GREETING"), "kfp_runtime": os.environ.get("_KFP_RUNTIME"),
                       "tmp": tempfile.gettempdir()})


@dsl.component(base_image="python:3.11", install_kfp_package=False)  # as pipelines/kfp_steps.py builds them
def fails(how: str):
    import sys

    if how == "raise":
        raise ValueError("no column named 'price' (expected the recipe's target)")
    if how == "killed":  # as the OOM killer would: no chance to report anything
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(3)


@pytest.fixture
def kfp_local(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True, enable_caching=False)
    return tmp_path


def test_each_step_runs_in_a_process_forked_from_the_server_with_its_env_outputs_and_args(kfp_local, monkeypatch):
    import json

    with steps_forked(kfp_local / "forkserver.log") as server:
        monkeypatch.setenv("GREETING", "hello")  # after the server started: each step gets the caller's env of now
        (kfp_local / "step-tmp").mkdir()
        monkeypatch.setenv("TMPDIR", str(kfp_local / "step-tmp"))
        first = whoami()
        monkeypatch.delenv("GREETING")
        monkeypatch.delenv("TMPDIR")
        second = whoami()
    seen = [json.loads(task.outputs["Output"]) for task in (first, second)]
    for step in seen:
        assert step["ppid"] == server.process.pid, "forked by the server, not a fresh interpreter under sh"
        assert step["cwd"] == str(ROOT) and step["kfp_runtime"] == "true"
        assert step["argv"][0] == "--component_module_path" and step["argv"][1].endswith("ephemeral_component.py")
        assert "kfp.dsl.executor_main" in step["ps"] and "--function_to_execute whoami" in step["ps"]
    assert seen[0]["pid"] != seen[1]["pid"], "a process per step"
    assert seen[0]["greeting"] == "hello" and seen[1]["greeting"] is None, "each step gets its own environment"
    assert seen[0]["tmp"] == str(kfp_local / "step-tmp") != seen[1]["tmp"], "and its own TMPDIR"
    assert list((kfp_local / "step-tmp").iterdir()) == [], "the step's module is removed when it ends"
    assert not any(Path(step["argv"][1]).exists() for step in seen)
    assert Path(first.outputs["table"].path).read_text() == "a,b\n1,2\n"
    assert server.process.poll() is not None, "the server ends with the run"


@pytest.mark.parametrize("how, said", [("raise", "ValueError: no column named 'price'"), ("exit", ""), ("killed", "")])
def test_a_failing_step_fails_as_a_fresh_interpreter_would(kfp_local, capsys, how, said):
    with steps_forked(kfp_local / "forkserver.log") as server:
        with pytest.raises(RuntimeError, match="FAILURE"):
            fails(how=how)
        assert [p.name for p in Path(server.dir).iterdir()] == ["socket"], "the step's module went with it"
    assert not Path(server.dir).exists()
    out = capsys.readouterr().out
    assert said in out and (how != "raise" or "Traceback (most recent call last)" in out)
    if how == "killed":  # the child could not report; the server's reaping did
        assert "ended with -9" in (kfp_local / "forkserver.log").read_text()


def test_the_server_is_off_on_request_and_steps_run_as_kfp_local_runs_them(kfp_local, monkeypatch):
    import json

    monkeypatch.setenv("PLATFORM_STEP_FORKSERVER", "0")
    with steps_forked(kfp_local / "forkserver.log") as server:
        step = json.loads(whoami().outputs["Output"])
    assert server is None
    assert step["argv"][1].startswith("/tmp/tmp."), "mktemp's directory: the shell script ran"
    shutil.rmtree(Path(step["argv"][1]).parent)  # which kfp's script leaves behind


def test_only_kfps_own_command_is_forked():
    command = replace_python_executable(whoami.component_spec.implementation.container.command, sys.executable)
    request = step_request([*command, "--executor_input", "{}", "--function_to_execute", "whoami"])
    assert request is not None, "kfp's lightweight command changed: update kfp_script"
    assert "def whoami" in request["source"] and request["args"][-1] == "whoami"
    altered = [command[0], command[1], command[2].replace("printf", "echo"), *command[3:]]
    assert step_request(altered) is None
    assert step_request(["sh", "-c", kfp_script(sys.executable), "src"]) is None
    assert step_request(["python", "-m", "kfp.dsl.executor_main"]) is None


def test_the_server_ends_when_the_run_that_started_it_is_killed(tmp_path):
    script = ("import sys, time; from pathlib import Path; from pipelines.step_forkserver import ForkServer\n"
              f"server = ForkServer(Path({str(tmp_path / 'log')!r})); server._wait_ready()\n"
              "print(server.process.pid, flush=True); time.sleep(120)\n")
    run = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    server = psutil.Process(int(run.stdout.readline()))
    run.send_signal(signal.SIGKILL)
    run.wait()
    started = time.monotonic()
    gone, _ = psutil.wait_procs([server], timeout=10)
    assert gone, "the fork server outlived its killed run"
    assert time.monotonic() - started < 10
    run.stdout.close()


def test_a_garbled_request_is_refused_and_the_server_keeps_serving(kfp_local):
    import json
    import socket

    with steps_forked(kfp_local / "forkserver.log") as server:
        server._wait_ready()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as garbled:
            garbled.connect(server.path)
            garbled.sendall(b"\x00\x00\x00\x09not json!")
            assert garbled.recv(4) == b"", "the server hangs up on it"
        step = json.loads(whoami().outputs["Output"])
        assert step["ppid"] == server.process.pid
    assert "bad request" in (kfp_local / "forkserver.log").read_text()
