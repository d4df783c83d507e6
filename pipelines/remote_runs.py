"""Following a run on a KFP endpoint: its state and its steps' states, as the KFP UI shows them.

    python pipelines/submit.py --host H ... --wait          # submit, then follow until the run ends
    python pipelines/submit.py status RUN_ID --host H       # where a run is now
"""
from __future__ import annotations

import time

FINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELING"}
# KFP's driver and executor pods show up as tasks too; a person follows the steps.
HIDDEN = ("root", "root-driver", "exit-handler")


def run_state(client, run_id: str) -> tuple[str, dict[str, str], str]:
    """(the run's state, step display name → its state, the run's error message if any)."""
    run = client.get_run(run_id)
    tasks = (run.run_details.task_details if run.run_details else None) or []
    steps = {t.display_name: str(t.state or "PENDING") for t in tasks
             if t.display_name and not t.display_name.endswith("-driver") and t.display_name not in HIDDEN}
    error = getattr(run.error, "message", "") if run.error else ""
    return str(run.state or "PENDING"), steps, error or ""


def status_lines(client, run_id: str) -> list[str]:
    state, steps, error = run_state(client, run_id)
    lines = [f"run {run_id}: {state}" + (f" ({error})" if error else "")]
    lines += [f"  {name:<12} {step_state}" for name, step_state in steps.items()]
    return lines


def follow(client, run_id: str, timeout_s: float, interval_s: float = 5.0, say=print) -> str:
    """Print each step as its state changes until the run ends (or ``timeout_s``); return the run's state."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        state, steps, error = run_state(client, run_id)
        for name, step_state in steps.items():
            if seen.get(name) != step_state:
                say(f"  {name:<12} {step_state.lower()}")
                seen[name] = step_state
        if state in FINAL:
            say(f"run {run_id} {state}" + (f": {error}" if error else ""))
            return state
        if time.monotonic() > deadline:
            say(f"still {state} after {timeout_s:g} s; follow it with `submit.py status {run_id} --host ...`")
            return state
        time.sleep(interval_s)
