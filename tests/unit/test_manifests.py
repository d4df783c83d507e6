"""Manifests, and the InferenceService deploy renders, checked offline against the official
Kubernetes and KServe API models (the kubernetes and kserve SDKs' generated OpenAPI types):
every field must exist in its type, with a value of the right shape. The manifests are rendered
the way they are applied (`kubectl kustomize`), in every variant: single-user, a profile
namespace, and either with the MinIO component."""
import re
import shutil
import subprocess
from urllib.parse import urlparse

import kserve
import kubernetes.client as k8s
import pytest
import yaml

from components.steps.deploy import inference_service
from tests.conftest import ROOT, make_recipe

KINDS = {
    ("v1", "Secret"): k8s.V1Secret, ("v1", "ServiceAccount"): k8s.V1ServiceAccount, ("v1", "Service"): k8s.V1Service,
    ("v1", "PersistentVolumeClaim"): k8s.V1PersistentVolumeClaim, ("apps/v1", "Deployment"): k8s.V1Deployment,
    ("batch/v1", "Job"): k8s.V1Job, ("rbac.authorization.k8s.io/v1", "Role"): k8s.V1Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.V1RoleBinding,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.V1NetworkPolicy,
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): kserve.V1alpha1ServingRuntime,
    ("serving.kserve.io/v1beta1", "InferenceService"): kserve.V1beta1InferenceService,
}
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}


def _model(name: str):
    return getattr(k8s, name, None) or getattr(kserve, name)


def check(value, type_name: str, where: str) -> list[str]:
    """Errors of ``value`` against an OpenAPI type name such as 'list[V1Container]' or 'V1PodSpec'."""
    if m := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in check(v, m.group(1), f"{where}[{i}]")]
    if m := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        return [e for key, v in value.items() for e in check(v, m.group(1), f"{where}.{key}")]
    if type_name in SCALARS:
        return [] if isinstance(value, SCALARS[type_name]) else [f"{where}: expected {type_name}, got {value!r}"]
    model = _model(type_name)
    if type_name in ("IntOrString", "V1IntOrString"):
        return [] if isinstance(value, (int, str)) else [f"{where}: expected int or string"]
    if type_name == "ResourceQuantity" or model is None:
        return [] if isinstance(value, (int, float, str)) else [f"{where}: expected a quantity"]
    if not isinstance(value, dict):
        return [f"{where}: expected an object of {type_name}, got {value!r}"]
    fields = {json_name: attr for attr, json_name in model.attribute_map.items()}
    errors = [f"{where}.{key}: no such field in {type_name}" for key in value if key not in fields]
    return errors + [e for key, v in value.items() if key in fields
                     for e in check(v, model.openapi_types[fields[key]], f"{where}.{key}")]


def validate(doc: dict) -> list[str]:
    model = KINDS.get((doc.get("apiVersion"), doc.get("kind")))
    if model is None:
        return [f"unknown kind {doc.get('apiVersion')}/{doc.get('kind')}"]
    if not doc.get("metadata", {}).get("name"):
        return [f"{doc['kind']}: metadata.name is required"]
    return check(doc, model.__name__, doc["kind"])


KUSTOMIZE = shutil.which("kubectl") or shutil.which("kustomize")
VARIANTS = {"single-user": ".", "profile": "profile", "single-user+minio": ".", "profile+minio": "profile"}


def rendered(variant: str = "single-user", tmp_path=None) -> list[dict]:
    """What `kubectl kustomize` renders for a variant ("+minio": with components/minio enabled)."""
    if KUSTOMIZE is None:
        pytest.skip("neither kubectl nor kustomize is installed; the manifests cannot be rendered")
    root = ROOT / "manifests"
    if variant.endswith("+minio"):  # the documented switch: uncomment the component
        root = tmp_path / "manifests"
        shutil.copytree(ROOT / "manifests", root)
        for k in (root / "kustomization.yaml", root / "profile" / "kustomization.yaml"):
            text = k.read_text().replace("# components:", "components:")
            k.write_text(re.sub(r"^#   - (\.\./)?components/minio", r"  - \1components/minio", text, flags=re.M))
    cmd = [KUSTOMIZE, "kustomize", str(root / VARIANTS[variant])] if KUSTOMIZE.endswith("kubectl") \
        else [KUSTOMIZE, "build", str(root / VARIANTS[variant])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_object_matches_its_api_schema(variant, tmp_path):
    docs = rendered(variant, tmp_path)
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Secret", "ServiceAccount", "Role", "RoleBinding", "ServingRuntime"}
    if not variant.startswith("profile"):
        assert kinds >= {"Deployment", "Service", "Job", "PersistentVolumeClaim", "NetworkPolicy"}
    assert [e for d in docs for e in validate(d)] == []
    assert all(d["metadata"].get("namespace") for d in docs), "every object lands in a namespace"


def _secret(docs, name):
    return next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name)


def test_seaweedfs_is_the_default_object_store_and_minio_an_option(tmp_path):
    """KFP 2.15+ serves S3 from the `seaweedfs` Service on 8333; `minio-service` no longer exists."""
    for variant in ("single-user", "profile"):
        docs = rendered(variant)
        assert "minio-service" not in yaml.safe_dump_all(docs)
        s3, mlflow = _secret(docs, "kfp-ml-platform-s3"), _secret(docs, "kfp-ml-platform-mlflow")
        assert s3["stringData"]["endpoint"] == mlflow["stringData"]["s3_endpoint"] == "http://seaweedfs.kubeflow:8333"
        assert s3["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == "seaweedfs.kubeflow:8333"
    for variant in ("single-user+minio", "profile+minio"):
        docs = rendered(variant, tmp_path / variant)
        s3, mlflow = _secret(docs, "kfp-ml-platform-s3"), _secret(docs, "kfp-ml-platform-mlflow")
        assert s3["stringData"]["endpoint"] == mlflow["stringData"]["s3_endpoint"] == "http://minio-service.kubeflow:9000"
        assert s3["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == "minio-service.kubeflow:9000"
        assert "seaweedfs" not in yaml.safe_dump_all(docs)


def test_profile_overlay_gives_default_editor_what_a_run_needs():
    """Multi-user Kubeflow runs land in the profile namespace as `default-editor`."""
    docs = rendered("profile")
    assert {d["metadata"]["namespace"] for d in docs} == {"kubeflow-user-example-com"}
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted([
        ("Secret", "kfp-ml-platform-s3"), ("Secret", "kfp-ml-platform-mlflow"),
        ("ServiceAccount", "kfp-ml-platform-serving"), ("ServingRuntime", "kfp-ml-platform"),
        ("Role", "kfp-ml-platform-deployer"), ("RoleBinding", "kfp-ml-platform-deployer")])
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default-editor"}]  # the binding's namespace
    assert binding["roleRef"]["name"] == "kfp-ml-platform-deployer"
    single = next(d for d in rendered("single-user") if d["kind"] == "RoleBinding")
    assert single["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]


def test_mlflow_allows_the_host_the_steps_use():
    """MLflow 3 refuses Host headers it does not list (403 Invalid Host header): the tracking URI
    the steps get from the Secret must be one it allows, and arbitrary hosts must not be."""
    from mlflow.server.security_utils import is_allowed_host_header

    docs = rendered("single-user")
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = args[args.index("--allowed-hosts") + 1].split(",")
    host = urlparse(_secret(docs, "kfp-ml-platform-mlflow")["stringData"]["tracking_uri"]).netloc
    assert host == "mlflow.kubeflow:5000" and is_allowed_host_header(allowed, host)
    assert is_allowed_host_header(allowed, "mlflow.kubeflow.svc.cluster.local:5000")
    assert is_allowed_host_header(allowed, "localhost:5000"), "kubectl port-forward"
    assert "*" not in allowed and not is_allowed_host_header(allowed, "mlflow.kubeflow.attacker.example:5000")


def test_validator_catches_mistakes():
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "lables": {}},
           "secrets": {"name": "s"}}
    errors = validate(bad)
    assert any("metadata.lables: no such field" in e for e in errors)
    assert any("secrets: expected a list" in e for e in errors)


@pytest.mark.parametrize("canary, mode", [(None, "RawDeployment"), (20, "Serverless"), (None, "Standard")])
def test_rendered_inference_service_matches_kserve_schema(canary, mode):
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models", "canary_traffic_percent": canary,
                                 "deployment_mode": mode})
    manifest = inference_service(recipe, "s3://mlflow/artifacts/1/models/m-abc/artifacts", "3")
    assert validate(manifest) == []
    assert manifest["spec"]["predictor"]["model"]["runtime"] == "kfp-ml-platform"
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode


def test_canary_traffic_needs_serverless_mode():
    """KServe splits canary traffic with Knative only; in RawDeployment the field would do nothing."""
    from components.recipe import RecipeError

    with pytest.raises(RecipeError, match="canary_traffic_percent needs deployment_mode Serverless"):
        make_recipe(deploy={"target": "kserve", "canary_traffic_percent": 10})
    assert make_recipe(deploy={"target": "kserve"}).deploy.deployment_mode == "RawDeployment"


@pytest.mark.parametrize("variant", ["single-user", "profile"])
def test_containers_run_as_non_root_read_only_with_limits(variant):
    """KFP's pipeline steps are not here: its launcher writes inside the container, so their root
    filesystem cannot be read-only; every long-running container of ours is."""
    for d in rendered(variant):
        spec = d["spec"] if d["kind"] == "ServingRuntime" else d.get("spec", {}).get("template", {}).get("spec")
        for c in (spec or {}).get("containers", []):
            assert c["resources"]["limits"], f"{d['kind']} {c['name']} has limits"
            ctx = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
            assert ctx.get("runAsNonRoot") and ctx.get("allowPrivilegeEscalation") is False, d["metadata"]["name"]
            assert ctx.get("readOnlyRootFilesystem") is True, f"{d['metadata']['name']}: read-only root filesystem"
            writable = {m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])}
            assert writable <= volumes, f"{d['metadata']['name']}: every mount has a volume"


def test_deployer_role_is_least_privilege():
    role = next(d for d in rendered() if d["kind"] == "Role")
    assert {g for r in role["rules"] for g in r["apiGroups"]} == {"serving.kserve.io", ""}
    assert not any(v in ("delete", "*") for r in role["rules"] for v in r["verbs"])
    core = [r for r in role["rules"] if r["apiGroups"] == [""]]
    assert core == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}], \
        "only reading its own Namespace's labels (the control-plane check)"
