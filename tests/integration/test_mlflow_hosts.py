"""The MLflow server as manifests/mlflow.yaml runs it answers the in-cluster Host header.

MLflow 3 refuses Host headers it does not list (403 "Invalid Host header") while /health keeps
answering 200, so a server that looks healthy can refuse every step. A real `mlflow server` on
127.0.0.1 gets the manifest's --allowed-hosts and requests that carry the Host header a step in
the cluster sends (http://mlflow.kubeflow:5000)."""
import pytest
import requests
import yaml

from tests.conftest import ROOT, start_mlflow_server, stop_process

pytestmark = pytest.mark.integration


def manifest_allowed_hosts() -> str:
    docs = list(yaml.safe_load_all((ROOT / "manifests" / "mlflow.yaml").read_text()))
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--allowed-hosts") + 1]


@pytest.fixture(scope="module")
def mlflow_as_deployed(python, tmp_path_factory):
    proc, url = start_mlflow_server(python, tmp_path_factory.mktemp("mlflow-hosts"), None,
                                    "--allowed-hosts", manifest_allowed_hosts())
    yield url
    stop_process(proc)


SEARCH = "/api/2.0/mlflow/experiments/search"


@pytest.mark.parametrize("host", ["mlflow.kubeflow:5000", "mlflow.kubeflow.svc.cluster.local:5000", "localhost:5000"])
def test_in_cluster_host_header_is_answered(mlflow_as_deployed, host):
    resp = requests.get(mlflow_as_deployed + SEARCH, params={"max_results": 5}, headers={"Host": host}, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    assert any(e["name"] == "Default" for e in resp.json()["experiments"])
    created = requests.post(mlflow_as_deployed + "/api/2.0/mlflow/experiments/create", headers={"Host": host},
                            json={"name": f"host-check-{host}"}, timeout=30)
    assert created.status_code == 200 and created.json()["experiment_id"], created.text[:300]


def test_other_hosts_are_still_refused(mlflow_as_deployed):
    """--allowed-hosts keeps the DNS-rebinding protection: a Host it does not list gets 403,
    while /health answers 200 (which is why a readiness probe alone cannot catch a missing entry)."""
    bad = {"Host": "mlflow.kubeflow.attacker.example:5000"}
    resp = requests.get(mlflow_as_deployed + SEARCH, params={"max_results": 5}, headers=bad, timeout=30)
    assert resp.status_code == 403 and "Invalid Host header" in resp.text
    assert requests.get(mlflow_as_deployed + "/health", headers=bad, timeout=30).status_code == 200
