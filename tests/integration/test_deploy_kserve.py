"""deploy's kserve target through the kubernetes client, against a Kubernetes API answered on
127.0.0.1 that stores InferenceServices and plays KServe's controller (Ready or failing)."""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.steps.deploy import apply_inference_service, inference_service
from tests.conftest import make_recipe

pytestmark = pytest.mark.integration
PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/?]+))?")


@pytest.fixture()
def kube_api(tmp_path, monkeypatch):
    store, calls, behaviour = {}, [], {"ready": True}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reconcile(self, obj):
            """What KServe's controller would report for this generation."""
            gen = obj["metadata"]["generation"]
            if behaviour["ready"]:
                url = f"http://{obj['metadata']['name']}.{obj['metadata']['namespace']}.example.com"
                obj["status"] = {"observedGeneration": gen, "url": url,
                                 "conditions": [{"type": "Ready", "status": "True"}]}
            else:  # the new revision fails; the old status (and traffic) stays
                status = obj.setdefault("status", {})
                status["conditions"] = [{"type": "Ready", "status": "False", "reason": "RevisionFailed",
                                         "message": "container crashed"}]

        def do_GET(self):
            ns, name = PATH.match(self.path).groups()
            calls.append(("GET", name))
            obj = store.get((ns, name))
            return self._send(200, obj) if obj else self._send(404, {"kind": "Status", "code": 404,
                                                                     "reason": "NotFound"})

        def do_POST(self):
            ns, _ = PATH.match(self.path).groups()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body["metadata"]["generation"] = 1
            self._reconcile(body)
            store[(ns, body["metadata"]["name"])] = body
            calls.append(("POST", body["metadata"]["name"]))
            self._send(201, body)

        def do_PATCH(self):
            ns, name = PATH.match(self.path).groups()
            patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            obj = store[(ns, name)]
            obj["spec"], obj["metadata"]["labels"] = patch["spec"], patch["metadata"]["labels"]
            obj["metadata"]["generation"] += 1
            self._reconcile(obj)
            calls.append(("PATCH", name, self.headers["Content-Type"]))
            self._send(200, obj)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield store, calls, behaviour
    server.shutdown()


def test_create_then_patch_and_wait_for_ready(kube_api):
    store, calls, _ = kube_api
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models", "canary_traffic_percent": 10})
    first = inference_service(recipe, "s3://mlflow/artifacts/1/models/m-1/artifacts", "1")
    assert apply_inference_service(first, timeout=5, poll=0.05) == "http://housing-test.models.example.com"
    assert ("POST", "housing-test") in calls
    second = inference_service(recipe, "s3://mlflow/artifacts/1/models/m-2/artifacts", "2")
    apply_inference_service(second, timeout=5, poll=0.05)
    stored = store[("models", "housing-test")]
    assert stored["metadata"]["generation"] == 2 and stored["metadata"]["labels"]["model-version"] == "2"
    predictor = stored["spec"]["predictor"]
    assert predictor["model"]["storageUri"].endswith("m-2/artifacts") and predictor["canaryTrafficPercent"] == 10
    assert predictor["serviceAccountName"] == "kfp-ml-platform-serving"


def test_a_failing_revision_times_out_and_leaves_the_old_one(kube_api):
    store, _, behaviour = kube_api
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models"})
    apply_inference_service(inference_service(recipe, "s3://b/v1", "1"), timeout=5, poll=0.05)
    behaviour["ready"] = False
    with pytest.raises(TimeoutError, match="not Ready within 0s .*RevisionFailed container crashed.*keeps serving"):
        apply_inference_service(inference_service(recipe, "s3://b/v2", "2"), timeout=0.2, poll=0.05)
    assert store[("models", "housing-test")]["status"]["url"].startswith("http://housing-test"), "old URL kept"
