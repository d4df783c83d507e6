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
from components.storage import is_redis
from pipelines.kfp_steps import build_components


@dataclass(frozen=True)
class StepResources:
    """Kubernetes requests and limits of one step's container."""
    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str


# Requests are what the scheduler reserves, limits what a step may burst to (memory over its limit
# is an OOM kill): sized for the shipped recipes with room for data a few times larger.
DEFAULT_RESOURCES: dict[str, StepResources] = {
    "resolve": StepResources("100m", "256Mi", "500m", "512Mi"),
    "load": StepResources("500m", "2Gi", "2", "8Gi"),
    "preprocess": StepResources("500m", "2Gi", "2", "8Gi"),
    "split": StepResources("500m", "2Gi", "2", "8Gi"),
    "train": StepResources("4", "16Gi", "8", "32Gi"),
    "tune": StepResources("4", "16Gi", "8", "32Gi"),
    "backtest": StepResources("4", "16Gi", "8", "32Gi"),
    "evaluate": StepResources("1", "4Gi", "2", "8Gi"),
    "register": StepResources("500m", "1Gi", "1", "4Gi"),
    "deploy": StepResources("100m", "512Mi", "500m", "1Gi"),
}
NETWORK_STEPS = ("load", "register", "deploy")  # talk to the object store, MLflow or the Kubernetes API


@dataclass(frozen=True)
class ClusterConfig:
    """Compile-time cluster settings: train placement, step images and resources, retries, and the
    Secrets steps read."""
    gpus: int = 1
    accelerator: str = "nvidia.com/gpu"
    node_selector: tuple[str, str] | None = ("nvidia.com/gpu.present", "true")
    toleration: str | None = "nvidia.com/gpu"
    image_registry: str | None = None   # None: PLATFORM_IMAGE_REGISTRY (pipelines/images.py decides)
    image_tag: str | None = None        # None: PLATFORM_IMAGE_TAG
    # Credentials reach steps only as environment variables from these Kubernetes Secrets.
    s3_secret: str | None = "kfp-ml-platform-s3"          # keys: endpoint, accesskey, secretkey
    mlflow_secret: str | None = "kfp-ml-platform-mlflow"  # keys: tracking_uri, s3_endpoint, artifacts_destination
    tuning_secret: str | None = "kfp-ml-platform-tuning"  # key: storage (the RDB URL tune workers share)
    # keys: password, username (an ACL user); optional: load starts without it (a Redis with no password,
    # or data elsewhere), and a URI's own password still wins
    redis_secret: str | None = "kfp-ml-platform-redis"
    # step → requests/limits; a step not named here keeps its DEFAULT_RESOURCES entry
    resources: tuple[tuple[str, StepResources], ...] = ()
    # Retries of the steps that touch the network (NETWORK_STEPS), with exponential backoff.
    # None: 3 on a cluster; 0 for a config that names no Secrets (the local run, where a retry
    # would only repeat a clear failure, e.g. bad input, several times).
    retries: int | None = None
    retry_backoff: str = "30s"
    retry_backoff_max: str = "10m"

    @classmethod
    def local(cls) -> "ClusterConfig":
        """The config of a run on this machine: no GPU placement, no Secrets, no retries."""
        return cls(gpus=0, node_selector=None, toleration=None, s3_secret=None, mlflow_secret=None, retries=0,
                   tuning_secret=None, redis_secret=None)

    def step_resources(self, step: str) -> StepResources:
        return dict(self.resources).get(step) or DEFAULT_RESOURCES[step]

    @property
    def step_retries(self) -> int:
        if self.retries is not None:
            return self.retries
        return 0 if self.s3_secret is None and self.mlflow_secret is None else 3


S3_ENV = {"endpoint": "S3_ENDPOINT_URL", "accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
MLFLOW_ENV = {"tracking_uri": "MLFLOW_TRACKING_URI", "s3_endpoint": "MLFLOW_S3_ENDPOINT_URL",
              "artifacts_destination": "PLATFORM_MLFLOW_ARTIFACTS_DESTINATION"}
TUNING_ENV = {"storage": "PLATFORM_TUNING_STORAGE"}
REDIS_ENV = {"password": "REDIS_PASSWORD", "username": "REDIS_USERNAME"}


def _local_data_fingerprint(uri: str) -> str | None:
    from components.storage import content_hash, expand, is_remote

    if is_remote(uri):
        return None
    try:
        root = Path(uri)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else expand(uri)  # image folders
        # a Redis key: expand reads it into files in the cache, so this hashes the key's content
        return f"data-{content_hash(files)}"
    except Exception:  # not readable here (e.g. compiled for a cluster path): plain input caching
        return None


def _model_cacheable(recipe: Recipe) -> bool:
    """Whether a finished train step may be reused: an adapter whose code comes from outside (the external
    model's git ``ref``) says so per params; every other model is decided by its inputs alone."""
    from components.models import code_is_pinned

    return code_is_pinned(recipe.model.name, recipe.model.params)


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
        """Train, evaluate, register and serve one recipe.

        Args:
            data_uri: Where the data is: an s3:// URI (object, prefix or glob) in the cluster's object store; a CSV, JSON, Parquet table, an image folder, a YOLO or COCO directory or an archive. Overrides the recipe's data.uri.
            target: Column to predict (tables and text); empty for image and time-series recipes that name none.
            model_name: Model from the catalog (python -m components.models list), e.g. mlp, hist_gradient_boosting, timm:resnet18, yolo11n. Overrides model.name.
            epochs: Training epochs. Overrides train.epochs.
            learning_rate: Optimizer learning rate. Overrides train.learning_rate.
            registered_model_name: MLflow registered model name, also the InferenceService name (a DNS-1035 label). Overrides register.model_name.
            recipe_json: The whole recipe as JSON (the form's fields above override it): preprocessing, split, model parameters, the evaluation gate, and deploy (target kserve, namespace: empty means the namespace the run runs in).
        """
        views = steps.resolve_recipe(recipe_json=recipe_json, data_uri=data_uri, target=target,
                                     model_name=model_name, epochs=epochs, learning_rate=learning_rate,
                                     registered_model_name=registered_model_name).set_display_name("resolve")
        tasks = {"resolve": views}
        view = views.outputs  # step → the recipe sections it reads: a step re-runs only when those change
        # Local data is also keyed by its content (an ordinary input, never a custom cache key:
        # a custom key makes KFP ignore every other input), so editing a file in place re-runs load.
        fingerprint = _local_data_fingerprint(recipe.data.uri)
        load = steps.load_data(recipe_json=view["load"], data_fingerprint=fingerprint or "").set_display_name("load")
        if fingerprint is None and is_redis(recipe.data.uri):
            load.set_caching_options(False)  # a Redis key changes in place: unread here, never served from cache
        if cluster.redis_secret:  # whatever the recipe names: the run form's data_uri may name a Redis key
            kubernetes.use_secret_as_env(load, cluster.redis_secret, REDIS_ENV, optional=True)
        prep = steps.preprocess_data(recipe_json=view["preprocess"], raw=load.outputs["raw"]).set_display_name("preprocess")
        parts = steps.split_data(recipe_json=view["split"], clean=prep.outputs["clean"]).set_display_name("split")
        tune = _add_tune(steps, recipe, view, parts, prep, cluster, tasks) if recipe.tune else None
        train = steps.train_model(recipe_json=view["train"], train=parts.outputs["train"], val=parts.outputs["val"],
                                  schema=prep.outputs["schema"],
                                  **({"tuned_params": tune.outputs["Output"]} if tune else {})).set_display_name("train")
        _place_on_gpu(train, cluster)
        if not _model_cacheable(recipe):
            train.set_caching_options(False)  # code from a git branch, which may have moved since a cached run
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
        tasks.update(load=load, preprocess=prep, split=parts, train=train, evaluate=evaluate, register=register,
                     deploy=deploy, **({"backtest": backtest} if recipe.split.method == "rolling" else {}))
        set_resources_and_retries(tasks, cluster)

    return training_pipeline


def _add_tune(steps, recipe: Recipe, view, parts, prep, cluster: ClusterConfig, tasks: dict):
    """The tune step before train; with ``tune.workers`` > 1, that many trial workers first (dsl.ParallelFor)
    on one study in a shared RDB (the tuning Secret's URL), whose best values the tune step then returns."""
    data = dict(recipe_json=view["tune"], train=parts.outputs["train"], val=parts.outputs["val"],
                schema=prep.outputs["schema"])
    workers = []
    if recipe.tune.workers > 1:
        with dsl.ParallelFor(list(range(recipe.tune.workers)), parallelism=recipe.tune.workers,
                             name="tune-workers") as worker:
            workers.append(steps.tune_trials(worker=worker, **data).set_display_name("tune-worker"))
    tune = steps.tune_model(**data).set_display_name("tune").after(*workers)
    for task in (tune, *workers):
        if not _model_cacheable(recipe):
            task.set_caching_options(False)  # a git branch's code may have moved since a cached study
        _place_on_gpu(task, cluster)
        use_secrets(cluster, s3=[], mlflow=[task])
        if cluster.tuning_secret:
            kubernetes.use_secret_as_env(task, cluster.tuning_secret, TUNING_ENV)
    for task in workers:
        set_resources_and_retries({"tune": task}, cluster)
    tasks["tune"] = tune
    return tune


def use_secrets(cluster: ClusterConfig, s3: list, mlflow: list) -> None:
    for task in s3 if cluster.s3_secret else []:
        kubernetes.use_secret_as_env(task, cluster.s3_secret, S3_ENV)
    for task in mlflow if cluster.mlflow_secret else []:
        kubernetes.use_secret_as_env(task, cluster.mlflow_secret, MLFLOW_ENV)


def set_resources_and_retries(tasks: dict, cluster: ClusterConfig) -> None:
    """Requests and limits on every step; retries with backoff on the steps that touch the network."""
    for step, task in tasks.items():
        r = cluster.step_resources(step)
        task.set_cpu_request(r.cpu).set_cpu_limit(r.cpu_limit).set_memory_request(r.memory).set_memory_limit(r.memory_limit)
        if step in NETWORK_STEPS and cluster.step_retries:
            task.set_retry(num_retries=cluster.step_retries, backoff_duration=cluster.retry_backoff, backoff_factor=2.0,
                           backoff_max_duration=cluster.retry_backoff_max)


def _place_on_gpu(task, cluster: ClusterConfig) -> None:
    if cluster.gpus:
        task.set_accelerator_type(cluster.accelerator).set_accelerator_limit(cluster.gpus)
    if cluster.node_selector:
        kubernetes.add_node_selector(task, label_key=cluster.node_selector[0], label_value=cluster.node_selector[1])
    if cluster.toleration:
        kubernetes.add_toleration(task, key=cluster.toleration, operator="Exists", effect="NoSchedule")
