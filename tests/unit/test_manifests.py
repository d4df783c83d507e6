"""Manifests, and the InferenceService deploy renders, checked offline against the official
Kubernetes and KServe API models (the kubernetes and kserve SDKs' generated OpenAPI types):
every field must exist in its type, with a value of the right shape."""
import re

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


def rendered() -> list[dict]:
    """What `kubectl kustomize manifests/` renders: every resource, with the kustomization's namespace."""
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"]
            for d in yaml.safe_load_all((ROOT / "manifests" / name).read_text()) if d]
    for d in docs:
        d["metadata"].setdefault("namespace", kustomization["namespace"])
    return docs


def test_every_manifest_matches_its_api_schema():
    docs = rendered()
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Secret", "ServiceAccount", "Deployment", "Service", "Job", "Role", "RoleBinding", "ServingRuntime"}
    assert [e for d in docs for e in validate(d)] == []


def test_validator_catches_mistakes():
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "lables": {}},
           "secrets": {"name": "s"}}
    errors = validate(bad)
    assert any("metadata.lables: no such field" in e for e in errors)
    assert any("secrets: expected a list" in e for e in errors)


@pytest.mark.parametrize("canary", [None, 20])
def test_rendered_inference_service_matches_kserve_schema(canary):
    recipe = make_recipe(deploy={"target": "kserve", "namespace": "models", "canary_traffic_percent": canary})
    manifest = inference_service(recipe, "s3://mlflow/artifacts/1/models/m-abc/artifacts", "3")
    assert validate(manifest) == []
    assert manifest["spec"]["predictor"]["model"]["runtime"] == "kfp-ml-platform"


def test_containers_run_as_non_root_read_only_with_limits():
    """KFP's pipeline steps are not here: its launcher writes inside the container, so their root
    filesystem cannot be read-only; every long-running container of ours is."""
    for d in rendered():
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
    assert {g for r in role["rules"] for g in r["apiGroups"]} == {"serving.kserve.io"}
    assert not any(v in ("delete", "*") for r in role["rules"] for v in r["verbs"])
