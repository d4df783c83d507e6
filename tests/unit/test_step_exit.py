"""A step process ends as soon as KFP's executor has written its output, without the interpreter's
teardown (seconds with torch, scikit-learn and MLflow loaded), and only then: a step that failed
exits the normal way, with its own exit status."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

COMPONENTS = textwrap.dedent('''
    import atexit
    import sys

    from components.runner import step_logging


    class Teardown:
        def __del__(self):
            print("INTERPRETER-TEARDOWN", flush=True)


    KEPT = Teardown()  # module globals are destroyed only by the interpreter's teardown


    def succeeds(name: str) -> str:
        step_logging()
        atexit.register(lambda: print("LIBRARY-EXIT-HANDLER", flush=True))  # as MLflow's, registered later
        print("STEP-WORK", flush=True)
        return "hello " + name


    def raises(name: str) -> str:
        step_logging()
        raise ValueError("the step's reason")


    def exits(name: str) -> str:
        step_logging()
        sys.exit(3)
''')


def run_step(tmp_path: Path, function: str) -> tuple[subprocess.CompletedProcess, Path]:
    module = tmp_path / "steps_under_test.py"
    module.write_text(COMPONENTS)
    output = tmp_path / function / "executor_output.json"
    output.parent.mkdir()
    executor_input = {"inputs": {"parameterValues": {"name": "world"}},
                      "outputs": {"parameters": {"Output": {"outputFile": str(tmp_path / function / "Output")}},
                                  "outputFile": str(output)}}
    proc = subprocess.run([sys.executable, "-m", "kfp.dsl.executor_main", "--component_module_path", str(module),
                           "--function_to_execute", function, "--executor_input", json.dumps(executor_input)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return proc, output


def test_a_step_that_wrote_its_output_ends_without_teardown_after_the_libraries_exit_handlers(tmp_path):
    proc, output = run_step(tmp_path, "succeeds")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(output.read_text())["parameterValues"]["Output"] == "hello world"
    assert "STEP-WORK" in proc.stdout and "Wrote executor output file" in proc.stdout  # logs flushed
    assert "LIBRARY-EXIT-HANDLER" in proc.stdout  # exit handlers registered by the step still ran
    assert "INTERPRETER-TEARDOWN" not in proc.stdout  # the teardown did not


@pytest.mark.parametrize("function, status, says", [("raises", 1, "the step's reason"), ("exits", 3, "")])
def test_a_step_that_failed_exits_the_normal_way_with_its_status(tmp_path, function, status, says):
    proc, output = run_step(tmp_path, function)
    assert proc.returncode == status
    assert not output.exists()
    assert says in proc.stderr
    assert "INTERPRETER-TEARDOWN" in proc.stdout  # the normal exit path, teardown included
