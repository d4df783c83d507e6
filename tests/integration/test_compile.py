"""The compiled pipeline a user uploads in the KFP UI."""
import yaml

from pipelines.compile import main as compile_main
from tests.conftest import ROOT

STEPS = ["load-data", "preprocess-data", "split-data", "train-model", "evaluate-model", "register-model"]


def compiled(tmp_path, *args):
    out = tmp_path / "pipeline.yaml"
    assert compile_main(["--output", str(out), *args]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def test_dag_order_gpu_on_train_only_and_gated_deploy(tmp_path):
    spec, platform = compiled(tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(STEPS) <= set(tasks)
    deps = {name: set(t.get("dependentTasks", [])) for name, t in tasks.items()}
    assert deps["load-data"] == {"resolve-recipe"} and deps["preprocess-data"] == {"load-data", "resolve-recipe"}
    assert "split-data" in deps["train-model"]
    assert {"train-model", "split-data"} <= deps["evaluate-model"] and "evaluate-model" in deps["register-model"]

    condition = next(t for n, t in tasks.items() if n.startswith("condition"))
    assert "evaluate-model" in condition["dependentTasks"]
    assert "== 'passed'" in condition["triggerPolicy"]["condition"]
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["deploy-model"]

    executors = spec["deploymentSpec"]["executors"]
    gpu = {name: e["container"].get("resources", {}).get("accelerator") for name, e in executors.items()}
    assert gpu.pop("exec-train-model") == {"count": "1", "resourceCount": "1", "resourceType": "nvidia.com/gpu",
                                           "type": "nvidia.com/gpu"}
    assert not any(gpu.values()), "only train asks for a GPU"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    placed = {name for name, ex in k8s.items() if "nodeSelector" in ex or "tolerations" in ex}
    assert placed == {"exec-train-model"}, "only train is pinned to GPU nodes"
    assert k8s["exec-train-model"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert k8s["exec-train-model"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_run_form_knobs_have_recipe_defaults(tmp_path):
    spec, _ = compiled(tmp_path, "--set", "train.epochs=33")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"data_uri", "target", "model_name", "epochs", "learning_rate", "registered_model_name",
                           "recipe_json"}
    assert params["epochs"]["defaultValue"] == 33 and params["target"]["defaultValue"] == "MedHouseVal"
    assert '"epochs":33' in params["recipe_json"]["defaultValue"]


def test_images_and_placement_are_configurable(tmp_path):
    spec, platform = compiled(tmp_path, "--image-registry", "registry.local/ml", "--image-tag", "v9",
                              "--gpus", "2", "--node-selector", "pool=a100", "--toleration", "")
    images = {n: e["container"]["image"] for n, e in spec["deploymentSpec"]["executors"].items()}
    assert images["exec-train-model"] == "registry.local/ml/train:v9"
    assert images["exec-load-data"] == "registry.local/ml/data:v9"
    assert len(set(images.values())) == 4  # data, train, registry, deploy
    assert spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]["accelerator"]["count"] == "2"
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]
    assert train["nodeSelector"]["labels"] == {"pool": "a100"} and "tolerations" not in train


def test_bad_recipe_is_refused_before_compiling(tmp_path, capsys):
    assert compile_main(["--output", str(tmp_path / "x.yaml"), "--set", "train.epochs=0"]) == 2
    assert "train.epochs" in capsys.readouterr().err and not (tmp_path / "x.yaml").exists()


def test_credentials_come_from_secrets_only(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak-this-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:pw-not-to-leak@mlflow:5000")
    spec, platform = compiled(tmp_path)
    text = (tmp_path / "pipeline.yaml").read_text()
    assert "do-not-leak-this-secret" not in text and "pw-not-to-leak" not in text
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    envs = {name: {k["envVar"]: s["secretName"] for s in ex.get("secretAsEnv", []) for k in s["keyToEnv"]}
            for name, ex in k8s.items() if ex.get("secretAsEnv")}
    assert envs["exec-load-data"] == {"S3_ENDPOINT_URL": "kfp-ml-platform-s3", "AWS_ACCESS_KEY_ID": "kfp-ml-platform-s3",
                                      "AWS_SECRET_ACCESS_KEY": "kfp-ml-platform-s3",
                                      "REDIS_PASSWORD": "kfp-ml-platform-redis", "REDIS_USERNAME": "kfp-ml-platform-redis"}
    # the Redis one is optional (a load of other data, or from a Redis without a password, starts without it)
    optional = {s["secretName"]: s["optional"] for s in k8s["exec-load-data"]["secretAsEnv"]}
    assert optional == {"kfp-ml-platform-redis": True, "kfp-ml-platform-s3": False}
    assert not [n for n, e in envs.items() if "REDIS_PASSWORD" in e and n != "exec-load-data"], "load alone reads Redis"
    assert envs["exec-register-model"]["MLFLOW_TRACKING_URI"] == "kfp-ml-platform-mlflow"
    assert "exec-preprocess-data" not in envs and "exec-split-data" not in envs, "data steps need no credentials"


def test_image_recipe_compiles_to_the_same_dag_keyed_by_its_content_as_an_input(tmp_path):
    spec, _ = compiled(tmp_path, "--recipe", "pipelines/recipes/trees-yolo.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert set(STEPS) <= set(tasks)
    assert spec["root"]["inputDefinitions"]["parameters"]["model_name"]["defaultValue"] == "yolo11n"
    # No custom cache key anywhere: on KFP's backend after 2.17 it makes the cache ignore every input.
    assert all("cacheKey" not in task.get("cachingOptions", {}) for task in tasks.values())
    fingerprint = tasks["load-data"]["inputs"]["parameters"]["data_fingerprint"]["runtimeValue"]["constant"]
    assert fingerprint.startswith("data-") and len(fingerprint) > 10


def test_every_run_form_parameter_has_a_description(tmp_path):
    spec, _ = compiled(tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    missing = [name for name, p in params.items() if len(p.get("description", "")) < 20]
    assert missing == []
    assert "s3://" in params["data_uri"]["description"] and "namespace" in params["recipe_json"]["description"]


def test_every_step_has_requests_and_limits_and_network_steps_retry(tmp_path):
    spec, _ = compiled(tmp_path, "--resources", "train=6,24Gi,12,48Gi", "--resources", "load=1,3Gi", "--retries", "5")
    executors = spec["deploymentSpec"]["executors"]
    for name, e in executors.items():
        r = e["container"]["resources"]
        assert {"resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"} <= set(r), name
    train = executors["exec-train-model"]["container"]["resources"]
    assert (train["resourceCpuRequest"], train["resourceMemoryRequest"], train["resourceCpuLimit"],
            train["resourceMemoryLimit"]) == ("6", "24Gi", "12", "48Gi")
    load = executors["exec-load-data"]["container"]["resources"]
    assert (load["resourceCpuLimit"], load["resourceMemoryLimit"]) == ("1", "3Gi"), "limits default to the requests"
    tasks = spec["root"]["dag"]["tasks"]
    condition = next(t for n, t in tasks.items() if n.startswith("condition"))
    deploy = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]["deploy-model"]
    retried = {n: t["retryPolicy"] for n, t in {**tasks, "deploy-model": deploy}.items() if "retryPolicy" in t}
    assert set(retried) == {"load-data", "register-model", "deploy-model"}
    assert all(p["maxRetryCount"] == 5 and p["backoffDuration"] == "30s" and p["backoffFactor"] == 2
               for p in retried.values())


def test_bad_resources_flag_is_refused(tmp_path, capsys):
    assert compile_main(["--output", str(tmp_path / "x.yaml"), "--resources", "trian=1,2Gi"]) == 2
    assert "expected STEP=CPU,MEMORY" in capsys.readouterr().err and not (tmp_path / "x.yaml").exists()


def test_local_runs_do_not_retry():
    """kfp.local honours retry policies: a local run's bad input must fail once, not four times."""
    from pipelines.pipeline import ClusterConfig

    local = ClusterConfig(gpus=0, node_selector=None, toleration=None, s3_secret=None, mlflow_secret=None)
    assert local.step_retries == 0 and ClusterConfig.local().step_retries == 0 and ClusterConfig().step_retries == 3


def test_cluster_target_defaults_run_on_a_cluster(tmp_path, s3_env, monkeypatch):
    """Data in the object store, deploy.target kserve in the run's namespace, the configured images."""
    import json

    from components.storage import object_store

    monkeypatch.delenv("PLATFORM_IMAGE_REGISTRY", raising=False)
    spec, _ = compiled(tmp_path, "--target", "cluster", "--image-registry", "registry.local/ml", "--image-tag", "v3")
    params = spec["root"]["inputDefinitions"]["parameters"]
    data_uri = params["data_uri"]["defaultValue"]
    assert data_uri.startswith("s3://kfp-ml-platform-data/california-housing/")
    bucket, key = data_uri[len("s3://"):].split("/", 1)
    assert object_store().stat_object(bucket, key).size == (ROOT / "data" / "california_housing.parquet").stat().st_size
    recipe = json.loads(params["recipe_json"]["defaultValue"])
    assert recipe["data"]["uri"] == data_uri
    assert recipe["deploy"]["target"] == "kserve" and recipe["deploy"]["namespace"] is None
    assert recipe["deploy"]["deployment_mode"] == "RawDeployment"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {f"registry.local/ml/{i}:v3" for i in ("data", "train", "registry", "deploy")}
    fingerprint = spec["root"]["dag"]["tasks"]["load-data"]["inputs"]["parameters"]["data_fingerprint"]
    assert fingerprint["runtimeValue"]["constant"] == "", "remote data: plain input caching"


def test_cluster_target_keeps_a_named_namespace_and_needs_a_registry(tmp_path, s3_env, monkeypatch, capsys):
    import json

    monkeypatch.delenv("PLATFORM_IMAGE_REGISTRY", raising=False)
    assert compile_main(["--output", str(tmp_path / "x.yaml"), "--target", "cluster"]) == 2
    assert "no image registry is configured" in capsys.readouterr().err and not (tmp_path / "x.yaml").exists()
    monkeypatch.setenv("PLATFORM_IMAGE_REGISTRY", "registry.local/ml")
    spec, _ = compiled(tmp_path, "--target", "cluster", "--set", "deploy.namespace=models")
    recipe = json.loads(spec["root"]["inputDefinitions"]["parameters"]["recipe_json"]["defaultValue"])
    assert recipe["deploy"]["namespace"] == "models" and recipe["deploy"]["target"] == "kserve"
