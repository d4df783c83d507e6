"""deploy's kserve target through the kubernetes client, against a Kubernetes API answered on
127.0.0.1 that stores InferenceServices, applies merge and JSON patches the way the API server
does, answers Namespace reads, and plays KServe's controller (Ready or failing)."""
import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.steps import deploy as deploy_module
from components.steps.deploy import DeployError, apply_inference_service, inference_service
from tests.conftest import make_recipe

pytestmark = pytest.mark.integration
PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/?]+))?")
NAMESPACE = re.compile(r"^/api/v1/namespaces/([^/?]+)$")
MODE = "serving.kserve.io/deploymentMode"


def merge_patch(target, patch):
    """RFC 7386: what the API server does with application/merge-patch+json."""
    if not isinstance(patch, dict):
        return patch
    target = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


def json_patch(doc, ops):
    """RFC 6902 add/replace/remove/test: what the API server does with application/json-patch+json."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] in ("add", "replace"):
            if op["op"] == "replace" and last not in node:
                raise KeyError(f"replace of a missing member {op['path']}")
            node[last] = op["value"]
        elif op["op"] == "remove":
            del node[last]  # a missing member is an error, as in the API server
        elif op["op"] == "test":
            assert node[last] == op["value"]
        else:
            raise ValueError(op["op"])
    return doc


@pytest.fixture()
def kube_api(tmp_path, monkeypatch):
    namespaces = {"models": {"kubernetes.io/metadata.name": "models"},
                  "team-a": {"app.kubernetes.io/part-of": "kubeflow-profile"},
                  "kubeflow": {"control-plane": "kubeflow", "kubernetes.io/metadata.name": "kubeflow"}}
    store, calls, behaviour = {}, [], {"ready": True, "namespaces": namespaces}  # namespace → labels
    monkeypatch.setattr(deploy_module, "SA_NAMESPACE_FILE", str(tmp_path / "no-such-file"))  # not in a pod

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
            if m := NAMESPACE.match(self.path):
                calls.append(("GET namespace", m.group(1)))
                if m.group(1) not in namespaces:
                    return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                return self._send(200, {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": m.group(1), "labels": namespaces[m.group(1)]}})
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
            kind = self.headers["Content-Type"]
            old = store[(ns, name)]
            obj = json_patch(old, patch) if kind == "application/json-patch+json" else merge_patch(old, patch)
            obj["metadata"]["generation"] = old["metadata"]["generation"] + 1
            store[(ns, name)] = obj
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
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models", "canary_traffic_percent": 10,
                                 "deployment_mode": "Serverless"})
    first = inference_service(recipe, "s3://mlflow/artifacts/1/models/m-1/artifacts", "1")
    assert apply_inference_service(first, timeout=5, poll=0.05) == "http://housing-test.models.example.com"
    assert ("POST", "housing-test") in calls and ("GET namespace", "models") in calls
    second = inference_service(recipe, "s3://mlflow/artifacts/1/models/m-2/artifacts", "2")
    apply_inference_service(second, timeout=5, poll=0.05)
    stored = store[("models", "housing-test")]
    assert stored["metadata"]["generation"] == 2 and stored["metadata"]["labels"]["model-version"] == "2"
    assert stored["metadata"]["annotations"][MODE] == "Serverless"
    predictor = stored["spec"]["predictor"]
    assert predictor["model"]["storageUri"].endswith("m-2/artifacts") and predictor["canaryTrafficPercent"] == 10
    assert predictor["serviceAccountName"] == "kfp-ml-platform-serving"
    assert ("PATCH", "housing-test", "application/json-patch+json") in calls


def test_deployment_mode_is_explicit_and_raw_by_default(kube_api):
    store, _, _ = kube_api
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models"})
    manifest = inference_service(recipe, "s3://b/v1", "1")
    assert manifest["metadata"]["annotations"] == {MODE: "RawDeployment"}
    apply_inference_service(manifest, timeout=5, poll=0.05)
    assert store[("models", "housing-test")]["metadata"]["annotations"][MODE] == "RawDeployment"


def test_a_canary_split_is_removed_by_the_next_deploy(kube_api):
    """A merge patch cannot drop canaryTrafficPercent (an absent key keeps the stored value); the
    JSON patch removes it, so the new revision takes all the traffic."""
    store, calls, _ = kube_api
    canary = make_recipe(deploy={"target": "kserve", "namespace": "models", "canary_traffic_percent": 20,
                                 "deployment_mode": "Serverless"})
    full = make_recipe(deploy={"target": "kserve", "namespace": "models", "deployment_mode": "Serverless"})
    apply_inference_service(inference_service(full, "s3://b/v1", "1"), timeout=5, poll=0.05)
    apply_inference_service(inference_service(canary, "s3://b/v2", "2"), timeout=5, poll=0.05)
    assert store[("models", "housing-test")]["spec"]["predictor"]["canaryTrafficPercent"] == 20
    apply_inference_service(inference_service(full, "s3://b/v3", "3"), timeout=5, poll=0.05)
    predictor = store[("models", "housing-test")]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor and predictor["model"]["storageUri"] == "s3://b/v3"
    patches = [c for c in calls if c[0] == "PATCH"]
    assert len(patches) == 2 and all(c[2] == "application/json-patch+json" for c in patches)
    # and with a merge patch, as before, the canary would have stayed:
    stale = merge_patch({"spec": {"predictor": {"canaryTrafficPercent": 20}}},
                        {"spec": {"predictor": inference_service(full, "s3://b/v3", "3")["spec"]["predictor"]}})
    assert stale["spec"]["predictor"]["canaryTrafficPercent"] == 20


def test_a_control_plane_namespace_is_refused_before_anything_is_created(kube_api):
    store, calls, _ = kube_api
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "kubeflow"})
    with pytest.raises(DeployError) as refused:
        apply_inference_service(inference_service(recipe, "s3://b/v1", "1"), timeout=5, poll=0.05)
    message = str(refused.value)
    assert "namespace kubeflow is labelled control-plane" in message and "storage initializer" in message
    assert "deploy.namespace" in message and message.count(". ") == 0, "one sentence"
    assert store == {} and not any(c[0] in ("POST", "PATCH") for c in calls)


def test_a_missing_namespace_is_named(kube_api):
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "nowhere"})
    with pytest.raises(DeployError, match="namespace nowhere does not exist"):
        apply_inference_service(inference_service(recipe, "s3://b/v1", "1"), timeout=5, poll=0.05)


def test_unset_namespace_is_the_one_the_step_runs_in(kube_api, tmp_path, monkeypatch):
    """On KFP the deploy step's ServiceAccount token names the run's namespace (a profile in
    multi-user Kubeflow); the compiled recipe leaves deploy.namespace unset for that."""
    store, _, _ = kube_api
    sa_namespace = tmp_path / "namespace"
    sa_namespace.write_text("team-a")
    monkeypatch.setattr(deploy_module, "SA_NAMESPACE_FILE", str(sa_namespace))
    recipe = make_recipe(deploy={"target": "kserve"})
    assert recipe.deploy.namespace is None
    manifest = inference_service(recipe, "s3://b/v1", "1")
    assert manifest["metadata"]["namespace"] == "team-a"
    apply_inference_service(manifest, timeout=5, poll=0.05)
    assert ("team-a", "housing-test") in store


def test_changing_the_deployment_mode_of_a_running_service_is_refused(kube_api):
    store, calls, _ = kube_api
    serverless = make_recipe(deploy={"target": "kserve", "namespace": "models", "deployment_mode": "Serverless"})
    apply_inference_service(inference_service(serverless, "s3://b/v1", "1"), timeout=5, poll=0.05)
    raw = make_recipe(deploy={"target": "kserve", "namespace": "models"})
    with pytest.raises(DeployError, match="runs in Serverless mode.*cannot change"):
        apply_inference_service(inference_service(raw, "s3://b/v2", "2"), timeout=5, poll=0.05)
    assert not any(c[0] == "PATCH" for c in calls)
    assert store[("models", "housing-test")]["spec"]["predictor"]["model"]["storageUri"] == "s3://b/v1"
    standard = make_recipe(deploy={"target": "kserve", "namespace": "models", "deployment_mode": "Knative"})
    apply_inference_service(inference_service(standard, "s3://b/v3", "3"), timeout=5, poll=0.05)  # same mode, new name


def test_a_failing_revision_times_out_and_leaves_the_old_one(kube_api):
    store, _, behaviour = kube_api
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models"})
    apply_inference_service(inference_service(recipe, "s3://b/v1", "1"), timeout=5, poll=0.05)
    behaviour["ready"] = False
    with pytest.raises(TimeoutError, match="not Ready within 0s .*RevisionFailed container crashed.*keeps serving"):
        apply_inference_service(inference_service(recipe, "s3://b/v2", "2"), timeout=0.2, poll=0.05)
    assert store[("models", "housing-test")]["status"]["url"].startswith("http://housing-test"), "old URL kept"
