"""deploy's local target against real model server processes on free loopback ports and a real
MLflow store (sqlite): whose port it is, which process answers, and what a challenger may touch."""
import json
import os
import signal
import socket
from pathlib import Path

import pytest
import requests

from components.steps.deploy import (DeployError, PortInUseError, deploy, read_state, start_local_server,
                                     stop_local_server)
from components.steps.register import register
from tests.conftest import evaluation_claiming, free_port, make_recipe, served_answer
from tests.integration.test_deploy_kserve import kube_api  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def _row(p):
    example = json.loads((p["model"] / "input_example.json").read_text())
    return dict(zip(example["columns"], example["data"][0]))


def _served_versions(port, name):
    return requests.get(f"http://127.0.0.1:{port}/v2/models/{name}", timeout=10).json().get("versions")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture()
def served(regression_run, mlflow_sqlite, tmp_path):
    """v1 registered as champion and served on a free port; every server a test starts is stopped."""
    _, p = regression_run
    recipe = make_recipe(deploy={"port": free_port()})
    name = recipe.registry.model_name
    first = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "e1", rmse=0.6), "run-1")
    assert first["alias"] == "champion"
    result = deploy(recipe, str(tmp_path / "isvc.yaml"), registration=json.dumps(first))
    started = [read_state(name)["pid"]]
    yield recipe, p, result, started
    stop_local_server(name)
    for pid in started:  # anything a failed assertion left running
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_a_port_held_by_another_process_is_refused_before_anything_is_stopped(served, tmp_path):
    recipe, p, first, _ = served
    name = recipe.registry.model_name
    state_before = (tmp_path / "home" / "serving" / f"{name}.json").read_bytes()
    old_pid = read_state(name)["pid"]
    answer = served_answer(requests.post(first["url"], json={"instances": [_row(p)]}, timeout=30))

    with socket.socket() as foreign:  # a plain listener holds the port the recipe now asks for
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        moved = make_recipe(deploy={"port": port})
        with pytest.raises(PortInUseError, match=rf"port {port} .*in use by pid {os.getpid()} .*deploy\.port"):
            deploy(moved, None)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            foreign.accept()[0].close()  # the holder is untouched and still listening

    assert (tmp_path / "home" / "serving" / f"{name}.json").read_bytes() == state_before, "state file unchanged"
    assert _alive(old_pid), "the running champion server was not stopped"
    assert served_answer(requests.post(first["url"], json={"instances": [_row(p)]}, timeout=30)) == answer


def test_redeploy_swaps_the_new_version_into_the_running_server(served, tmp_path):
    """KServe's repository API: the running server loads version 2 beside 1 and swaps, no restart."""
    recipe, p, first, started = served
    name, port = recipe.registry.model_name, recipe.deploy.port
    old = read_state(name)
    assert _served_versions(port, name) == ["1"], "V2 metadata names the version served"
    assert old["port"] == port and old["version"] == "1"

    better = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "e2", rmse=0.5), "run-2")
    assert better["alias"] == "champion" and better["version"] == "2"
    second = deploy(recipe, None, registration=json.dumps(better))
    new = read_state(name)
    assert second["deployed"] and second["version"] == "2"
    assert new["pid"] == old["pid"] and "swapped" in new, "the same process, a new bundle"
    assert new["port"] == port and new["version"] == "2" and new["model_dir"].endswith("v2")
    assert _served_versions(port, name) == ["2"], "V2 metadata names the version now served"
    assert isinstance(requests.post(second["url"], json={"instances": [_row(p)]}, timeout=30).json()
                      ["predictions"][0], float)


def test_a_reload_without_a_digest_or_for_another_model_swaps_nothing(served, tmp_path):
    """The load endpoint is unauthenticated: a reload file naming no digest (for a server that checks
    one) or a load for a model this server does not hold is refused, and version 1 keeps serving."""
    recipe, p, first, started = served
    name, port = recipe.registry.model_name, recipe.deploy.port
    state = read_state(name)
    Path(state["reload_file"]).write_text(json.dumps({"model_dir": state["model_dir"], "version": "9"}))
    for model in (name, "someone-else"):
        resp = requests.post(f"http://127.0.0.1:{port}/v2/repository/models/{model}/load", timeout=30)
        assert resp.status_code >= 400, resp.text
    assert _served_versions(port, name) == ["1"] and read_state(name)["pid"] == state["pid"]
    assert isinstance(requests.post(first["url"], json={"instances": [_row(p)]}, timeout=30).json()
                      ["predictions"][0], float)


def test_a_server_that_cannot_swap_is_replaced_and_the_state_names_the_new_process(served, tmp_path):
    """A server started without a reload file (an older one) is stopped and a new one started."""
    recipe, p, first, started = served
    name, port = recipe.registry.model_name, recipe.deploy.port
    old = read_state(name)
    state_file = Path(old["log"]).with_name(f"{name}.json")
    state_file.write_text(json.dumps({k: v for k, v in old.items() if k != "reload_file"}))

    better = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "e2", rmse=0.5), "run-2")
    second = deploy(recipe, None, registration=json.dumps(better))
    new = read_state(name)
    started.append(new["pid"])
    assert second["deployed"] and second["version"] == "2"
    assert new["pid"] != old["pid"] and _alive(new["pid"]) and not _alive(old["pid"])
    assert new["port"] == port and new["version"] == "2" and new["model_dir"].endswith("v2")
    assert _served_versions(port, name) == ["2"], "V2 metadata names the version now served"
    assert isinstance(requests.post(second["url"], json={"instances": [_row(p)]}, timeout=30).json()
                      ["predictions"][0], float)


def test_a_challenger_leaves_the_champion_server_alone(served, tmp_path):
    recipe, p, first, _ = served
    name = recipe.registry.model_name
    state_before = (tmp_path / "home" / "serving" / f"{name}.json").read_bytes()
    pid = read_state(name)["pid"]
    answer = served_answer(requests.post(first["url"], json={"instances": [_row(p)]}, timeout=30))

    worse = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "e3", rmse=0.9), "run-3")
    assert worse["alias"] == "challenger"
    result = deploy(recipe, str(tmp_path / "isvc-3.yaml"), registration=json.dumps(worse))

    assert read_state(name)["pid"] == pid and _alive(pid), "the champion's server was not restarted"
    assert (tmp_path / "home" / "serving" / f"{name}.json").read_bytes() == state_before
    assert result["deployed"] is False and result["version"] == "1" and result["url"] == first["url"]
    assert "challenger" in (tmp_path / "isvc-3.yaml").read_text()
    assert _served_versions(recipe.deploy.port, name) == ["1"]
    assert served_answer(requests.post(first["url"], json={"instances": [_row(p)]}, timeout=30)) == answer


def test_a_new_server_that_dies_fails_with_its_log_and_the_previous_one_serves_again(served, tmp_path):
    recipe, p, first, started = served
    name, port = recipe.registry.model_name, recipe.deploy.port
    old = read_state(name)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    with pytest.raises(DeployError, match=r"(?s)exited with code .*last lines of .*started again on port"):
        start_local_server(name, broken, port, timeout=120, version="2")
    restored = read_state(name)
    started.append(restored["pid"])
    assert restored["pid"] != old["pid"] and _alive(restored["pid"]) and restored["version"] == "1"
    assert _served_versions(port, name) == ["1"]
    assert isinstance(requests.post(first["url"], json={"instances": [_row(p)]}, timeout=30).json()
                      ["predictions"][0], float)


def test_a_challenger_does_not_patch_the_inference_service(kube_api, regression_run, mlflow_sqlite,  # noqa: F811
                                                            tmp_path):
    store, calls, _ = kube_api
    _, p = regression_run
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models"})
    first = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "k1", rmse=0.6), "run-k1")
    deploy(recipe, None, registration=first)
    assert [c[0] for c in calls].count("POST") == 1
    served_spec = json.dumps(store[("models", "housing-test")]["spec"])

    worse = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "k2", rmse=0.9), "run-k2")
    calls.clear()
    result = deploy(recipe, str(tmp_path / "isvc.yaml"), registration=worse)
    assert json.dumps(store[("models", "housing-test")]["spec"]) == served_spec
    assert calls == [] and result["deployed"] is False, "the cluster was not touched"
    assert "kind: InferenceService" not in (tmp_path / "isvc.yaml").read_text()
