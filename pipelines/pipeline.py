"""The pipeline: load → preprocess → split → train (GPU node) → evaluate → register → deploy (if gate passed).

``make_pipeline(recipe)`` builds it with the recipe's values as the run form's defaults, so the
KFP UI shows the common knobs (data URI, target, model, epochs, learning rate, registered
model name) ready to edit, plus the whole recipe as one JSON parameter.
"""

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from kfp import dsl, kubernetes

from components.recipe import Recipe
from pipelines.kfp_steps import build_components


@dataclass(frozen=True)
class ClusterConfig:
    """Compile-time cluster settings: train placement, step images, and the Secrets steps read."""
    gpus: int = 1
    accelerator: str = "nvidia.com/gpu"
    node_selector: tuple[str, str] | None = ("nvidia.com/gpu.present", "true")
    toleration: str | None = "nvidia.com/gpu"
    cpu: str = "4"
    memory: str = "16G"
    image_registry: str | None = None   # None: PLATFORM_IMAGE_REGISTRY
    image_tag: str | None = None        # None: PLATFORM_IMAGE_TAG
    # Credentials reach steps only as environment variables from these Kubernetes Secrets.
    s3_secret: str | None = "kfp-ml-platform-s3"          # keys: endpoint, accesskey, secretkey
    mlflow_secret: str | None = "kfp-ml-platform-mlflow"  # keys: tracking_uri, s3_endpoint, artifacts_destination


S3_ENV = {"endpoint": "S3_ENDPOINT_URL", "accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
MLFLOW_ENV = {"tracking_uri": "MLFLOW_TRACKING_URI", "s3_endpoint": "MLFLOW_S3_ENDPOINT_URL",
              "artifacts_destination": "PLATFORM_MLFLOW_ARTIFACTS_DESTINATION"}


def _local_data_fingerprint(uri: str) -> str | None:
    from components.storage import content_hash, expand, is_remote

    if is_remote(uri):
        return None
    try:
        root = Path(uri)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else expand(uri)  # image folders
        return f"data-{content_hash(files)}"
    except Exception:  # not readable here (e.g. compiled for a cluster path): plain input caching
        return None


def make_pipeline(recipe: Recipe, cluster: ClusterConfig = ClusterConfig()):
    steps = SimpleNamespace(**build_components(cluster.image_registry, cluster.image_tag))

    @dsl.pipeline(name=f"kfp-ml-platform-{recipe.name}",
                  description=f"Train, evaluate, register and serve: recipe {recipe.name} ({recipe.task}).")
    def training_pipeline(
        data_uri: str = recipe.data.uri,
        target: str = recipe.data.target or "",
        model_name: str = recipe.model.name,
        epochs: int = recipe.train.epochs,
        learning_rate: float = recipe.train.learning_rate,
        registered_model_name: str = recipe.registry.model_name,
        recipe_json: str = recipe.to_json(),
    ):
        views = steps.resolve_recipe(recipe_json=recipe_json, data_uri=data_uri, target=target,
                                     model_name=model_name, epochs=epochs, learning_rate=learning_rate,
                                     registered_model_name=registered_model_name).set_display_name("resolve")
        view = views.outputs  # step → the recipe sections it reads: a step re-runs only when those change
        # Local data is also keyed by its content (an ordinary input, never a custom cache key:
        # a custom key makes KFP ignore every other input), so editing a file in place re-runs load.
        load = steps.load_data(recipe_json=view["load"],
                               data_fingerprint=_local_data_fingerprint(recipe.data.uri) or "").set_display_name("load")
        prep = steps.preprocess_data(recipe_json=view["preprocess"], raw=load.outputs["raw"]).set_display_name("preprocess")
        parts = steps.split_data(recipe_json=view["split"], clean=prep.outputs["clean"]).set_display_name("split")
        train = steps.train_model(recipe_json=view["train"], train=parts.outputs["train"], val=parts.outputs["val"],
                                  schema=prep.outputs["schema"]).set_display_name("train")
        _place_on_gpu(train, cluster)
        if recipe.split.method == "rolling":  # every fold trained and scored, beside the final model
            backtest = steps.backtest_model(recipe_json=view["backtest"], clean=prep.outputs["clean"],
                                            schema=prep.outputs["schema"]).set_display_name("backtest")
            _place_on_gpu(backtest, cluster)
        evaluate = steps.evaluate_model(recipe_json=view["evaluate"], model=train.outputs["model"],
                                        test=parts.outputs["test"], schema=prep.outputs["schema"],
                                        data_report=prep.outputs["report"]).set_display_name("evaluate")
        register = steps.register_model(recipe_json=view["register"], model=train.outputs["model"],
                                        evaluation=evaluate.outputs["evaluation"], schema=prep.outputs["schema"],
                                        data_report=prep.outputs["report"],
                                        pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).set_display_name("register")
        register.set_caching_options(False)  # side effects in MLflow; idempotent per run anyway
        with dsl.If(evaluate.outputs["Output"] == "passed", name="gate-passed"):
            deploy = steps.deploy_model(recipe_json=view["deploy"], registration=register.output).set_display_name("deploy")
            deploy.set_caching_options(False)
        use_secrets(cluster, s3=[load, train, register, deploy], mlflow=[train, register, deploy])

    return training_pipeline


def use_secrets(cluster: ClusterConfig, s3: list, mlflow: list) -> None:
    for task in s3 if cluster.s3_secret else []:
        kubernetes.use_secret_as_env(task, cluster.s3_secret, S3_ENV)
    for task in mlflow if cluster.mlflow_secret else []:
        kubernetes.use_secret_as_env(task, cluster.mlflow_secret, MLFLOW_ENV)


def _place_on_gpu(task, cluster: ClusterConfig) -> None:
    task.set_cpu_request(cluster.cpu).set_memory_request(cluster.memory)
    if cluster.gpus:
        task.set_accelerator_type(cluster.accelerator).set_accelerator_limit(cluster.gpus)
    if cluster.node_selector:
        kubernetes.add_node_selector(task, label_key=cluster.node_selector[0], label_value=cluster.node_selector[1])
    if cluster.toleration:
        kubernetes.add_toleration(task, key=cluster.toleration, operator="Exists", effect="NoSchedule")
