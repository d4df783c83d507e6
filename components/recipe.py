"""Recipe: the one-file description of a run, validated before anything runs.

A recipe is YAML or JSON. Every section has defaults, unknown keys are rejected (with the
field path in the message), and ``--set a.b=value`` overrides are applied before validation.

Recipe text is untrusted: it is read with a safe loader that builds only mappings, lists,
strings, numbers, booleans and null (no ``!!python/*`` or other tags), refuses duplicate keys,
and bounds the file size, the nesting depth and the number of values after YAML aliases are
expanded (a "billion laughs" file is refused in milliseconds). Every such refusal is one
``RecipeError`` line naming the file, line and column.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Task = Literal["regression", "classification", "detection", "segmentation", "pose", "obb", "generation"]
Imputation = Literal["mean", "median", "most_frequent", "drop"]
from .gate import GATE_RE  # noqa: E402  (defined there; re-exported)
# The registered model name is also the KServe InferenceService name (a DNS-1035 label), and
# KServe builds the host label "<name>-predictor-<namespace>", which must fit in 63 characters.
MODEL_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MODEL_NAME_MAX = 45  # 63 - len("-predictor-default")
DNS_LABEL_MAX = 63
MAX_RECIPE_BYTES = 1 << 20   # recipes are a few KB
MAX_DEPTH = 32               # nesting of mappings and lists
MAX_VALUES = 20_000          # values after YAML aliases are expanded


from .errors import RecipeError  # noqa: E402,F401  (defined there; re-exported for `from components.recipe import RecipeError`)
from .tasks import family, family_name, family_sections  # noqa: E402  (the table only; modules load on use)
from .tasks.instances import INSTANCE_TASKS, kind as instance_kind  # noqa: E402  (detection, segmentation, pose, obb)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
    # Fields of a family section that only the model's steps read (train, tune, evaluate, ...): the data
    # steps' views leave them out, so changing one keeps load, preprocess and split cached.
    model_only: ClassVar[tuple[str, ...]] = ()


class ReadOptions(_Section):
    """How a CSV is written; each one left unset is sniffed from the file's first 64 KiB."""
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="Field separator: , ; tab |")
    decimal: Literal[".", ","] | None = Field(None, description="Decimal mark in numbers.")
    thousands: Literal[".", ",", " ", "'"] | None = Field(None, description="Thousands separator in numbers.")
    encoding: str | None = Field(None, description="Text encoding, e.g. utf-8, cp1252, latin-1.")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, name: str | None) -> str | None:
        import codecs

        if name is not None:
            try:
                codecs.lookup(name)
            except LookupError:
                raise ValueError(f"unknown encoding {name!r}; expected one Python knows, e.g. utf-8, cp1252, latin-1")
        return name


class DataSpec(_Section):
    uri: str = Field(description="Local path, glob, object-store URI, or Redis key "
                                 "(redis://host:port/db?key=KEY) of the raw data.")
    format: Literal["auto", "csv", "json", "parquet"] = "auto"
    target: str | None = Field(None, description="Column to predict (tables; time series name a label channel).")
    drop_columns: list[str] = Field(default_factory=list, description="Columns never used as features.")
    sample_rows: int | None = Field(default=None, gt=0, description="Keep a seeded random sample (quick runs).")
    na_values: list[str] | dict[str, list[str]] | None = Field(
        None, description="Text read as missing: a list for every column, or {column: [markers]} for some (the "
                          "others keep the defaults). Unset: empty, ?, -, NA, N/A, null, None and pandas' markers.")
    read_options: ReadOptions = Field(default_factory=ReadOptions, description="CSV dialect; sniffed when unset.")

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str) -> str:
        from .storage import scheme_problem

        if problem := scheme_problem(uri):
            raise ValueError(problem)
        return uri


class PreprocessSpec(_Section):
    missing: Imputation = Field("median", description="How missing feature values are filled (global).")
    missing_per_column: dict[str, Imputation] = Field(default_factory=dict)
    drop_duplicates: bool = True
    categorical_columns: list[str] | None = Field(
        default=None, description="Force these columns categorical; others are detected from their dtype.")
    scaler: Literal["standard", "quantile", "minmax", "none"] = "standard"
    ordinal: dict[str, list[str]] = Field(
        default_factory=dict, description="Ordered categories, lowest first: {cut: [Fair, Good, Very Good]}.")
    keep_id_columns: bool | list[str] = Field(
        False, description="Text columns with (nearly) one value per row are dropped as identifiers; true keeps "
                           "them all, a list keeps those named.")
    dates: bool = Field(True, description="Turn ISO-like date/datetime columns into numeric date features.")

    @field_validator("ordinal")
    @classmethod
    def _orders(cls, orders: dict[str, list[str]]) -> dict[str, list[str]]:
        for column, levels in orders.items():
            if len(levels) < 2 or len(set(levels)) != len(levels):
                raise ValueError(f"ordinal.{column} must list at least two distinct levels, lowest first; got {levels}")
        return orders


class SplitSpec(_Section):
    method: Literal["random", "stratified", "group", "time", "rolling"] = "random"
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    group_column: str | None = None
    folds: int = Field(3, ge=2, description="rolling: expanding-window folds; the pipeline trains on the last.")

    @model_validator(mode="after")
    def _check(self) -> "SplitSpec":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1, got {total:g}")
        return self


class TimeSeriesSpec(_Section):
    """Sliding windows over channels: X = L steps of every input channel, y = a later value."""
    model_only: ClassVar[tuple[str, ...]] = ("label_rule", "threshold", "target_mode")
    context_len: int = Field(32, gt=0, description="L: time steps per window (window T = L + label_offset).")
    label_offset: int = Field(1, gt=0, description="How many steps after the window's last step the label is.")
    label_source_channel: str = Field(description="Channel whose future value is the label.")
    drop_label_from_x: bool = False
    label_rule: Literal["value", "nonzero", "gt", "lt", "quantile"] = Field(
        "value", description="value: regression; nonzero / gt / lt / quantile: binary label from the value.")
    threshold: float = Field(0.0, description="gt/lt: the threshold; quantile: q in (0, 1) of the train labels.")
    target_mode: Literal["delta", "level"] = Field(
        "delta", description="Regression: learn the change from the window's last label value (delta: robust to "
                             "trends outside the train range) or the value itself (level).")
    channels: list[str] | None = Field(None, description="Value columns to use; all but timestamp/group if unset.")
    timestamp_column: str | None = None
    group_column: str | None = Field(None, description="Column naming separate series; windows stay inside one.")

    @model_validator(mode="after")
    def _check(self) -> "TimeSeriesSpec":
        if self.target_mode == "delta" and self.drop_label_from_x and self.label_rule == "value":
            raise ValueError("target_mode 'delta' needs the label channel in the inputs (drop_label_from_x false)")
        if self.label_rule == "quantile" and not 0 < self.threshold < 1:
            raise ValueError(f"label_rule 'quantile' needs threshold in (0, 1), got {self.threshold}")
        return self


class ImageSpec(_Section):
    """Image datasets: a folder per class (classification), YOLO or COCO layout (detection, segmentation, pose,
    obb: see components/tasks/instances.py)."""
    model_only: ClassVar[tuple[str, ...]] = ("size", "hflip", "scale", "auto_augment", "pretrained")
    layout: Literal["auto", "imagefolder", "yolo", "coco"] = Field(
        "auto", description="auto: data.yaml → yolo, a COCO .json → coco, else imagefolder.")
    size: int | None = Field(None, gt=0, description="Square input size; the model's pretrained config if unset.")
    hflip: float = Field(0.5, ge=0, le=1, description="Augmentation: probability of a horizontal flip.")
    scale: tuple[float, float] = Field((0.6, 1.0), description="Augmentation: random-resized-crop area range.")
    auto_augment: str | None = Field(None, description="timm auto-augment policy, e.g. 'rand-m9-mstd0.5'.")
    pretrained: bool = Field(False, description="Start from pretrained weights (needs network or a local cache).")


class TextSpec(_Section):
    """Text classification: one text column and the label column (data.target)."""
    model_only: ClassVar[tuple[str, ...]] = ("max_length",)
    text_column: str = "text"
    max_length: int = Field(128, gt=0, le=4096, description="Tokens per text; longer ones are truncated.")


class TextGenSpec(_Section):
    """Text generation: a corpus of texts (a text column, or .txt lines) for a causal language model."""
    text_column: str = "text"
    block_size: int = Field(64, gt=1, le=1024, description="Tokens per training sequence; longer texts are cut.")


class ModelSpec(_Section):
    name: str = Field("mlp", description="A name from the model catalog (python -m components.models list).")
    params: dict[str, Any] = Field(default_factory=dict, description="Architecture parameters of that model.")


class TrainSpec(_Section):
    epochs: int = Field(100, gt=0)
    batch_size: int = Field(256, gt=0)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    weight_decay: float = Field(1e-5, ge=0)
    scheduler: Literal["plateau", "none", "cosine"] = Field(
        "plateau", description="plateau: halve the learning rate when the validation loss stalls; none: constant; "
                               "cosine: decay it to 0 over the epochs, batch by batch (after any warm-up).")
    warmup_epochs: int = Field(0, ge=0, description="Raise the learning rate linearly from 1/100 of it over these "
                                                    "first epochs, batch by batch; the scheduler takes over after.")
    early_stopping_patience: int = Field(16, gt=0)
    seed: int = 0
    ensemble: int = Field(1, gt=0, le=32, description="Train this many networks, from seeds seed, seed+1, ..., each "
                                                      "with its own early stopping, and average their predictions "
                                                      "(probabilities for classification); the bundle holds them all.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="Mixed precision on CUDA (ignored on CPU).")
    compile: Literal["off", "default", "reduce-overhead"] = "off"
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this value.")
    pos_weight: Literal["global"] | float | None = Field(
        None, description="Binary only: weight of positives; 'global' = negatives/positives in train.")
    loss: Literal["auto", "bce_soft_f1"] = Field(
        "auto", description="auto: MSE / BCE / cross-entropy; bce_soft_f1: alpha*BCE + (1-alpha)*(1-soft F1).")
    soft_f1_alpha: float = Field(0.5, ge=0, le=1)
    threads: int | None = Field(None, gt=0, description="CPU threads for training; unset: the CPU affinity and "
                                                        "cgroup quota, less cores other processes keep busy.")
    checkpoint_path: str | None = Field(None, description="Write the best epoch's weights here as training runs "
                                                          "(an ensemble: <stem>.member<k><suffix> per member).")
    init_from: str | None = Field(
        None, description="Fine-tune from a registered version (models:/name@alias), a bundle dir or a .pt file.")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms (slower on GPU).")

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> "TrainSpec":
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs}), so "
                             "that training runs at the learning rate after the warm-up")
        return self


class EvaluateSpec(_Section):
    primary_metric: str | None = Field(
        default=None, description="Metric that ranks versions; rmse (regression) or f1 (classification) if unset.")
    gate: list[str] = Field(default_factory=list, description='Thresholds such as "rmse <= 0.6", all must hold.')

    @field_validator("gate")
    @classmethod
    def _gate_syntax(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if not GATE_RE.match(rule):
                raise ValueError(f"gate rule {rule!r} must look like 'metric <= number'")
        return rules


class TuneSpec(_Section):
    """Hyper-parameter search before train (Optuna: seeded TPE sampler, median pruning on the validation
    loss per epoch); train fits the final model with the best values. Ranges come from the model's
    catalog entry; ``space`` overrides them by name (components/models/tunable.py)."""
    metric: str = Field("val_loss", description="What the search optimises on the validation split: val_loss "
                                                "(the training loss) or a metric evaluate reports (rmse, r2, f1, ...).")
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="Unset: the metric's own (minimize val_loss, rmse, log_loss; maximize r2, accuracy, f1).")
    trials: int = Field(20, gt=0, description="Finished trials the study ends with (a resumed study counts its own).")
    timeout_s: float | None = Field(None, gt=0, description="Start no trial after this many seconds.")
    seed: int = Field(0, description="Seed of the TPE sampler.")
    prune: bool = Field(True, description="Stop a trial whose validation loss trails the median of earlier trials.")
    prune_startup_trials: int = Field(3, ge=0, description="Trials that finish before any is pruned.")
    prune_warmup_epochs: int = Field(2, ge=0, description="Epochs of each trial before it may be pruned.")
    workers: int = Field(1, gt=0, le=64, description="Trial workers sharing one study (cluster: dsl.ParallelFor "
                                                     "over PLATFORM_TUNING_STORAGE, an RDB URL).")
    space: dict[str, Any] = Field(
        default_factory=dict, description="name → {low, high[, log][, step]} or a list of choices (null drops the "
                                          "catalog's range); names are model params and train options.")

    @field_validator("space")
    @classmethod
    def _ranges(cls, space: dict[str, Any]) -> dict[str, Any]:
        from .models.tunable import parse_space

        return parse_space(space)


class RegisterSpec(_Section):
    model_name: str = Field(description="Registered model name in MLflow; also the KServe InferenceService name, "
                                        f"so lowercase letters, digits and '-', starting with a letter, ending with a "
                                        f"letter or digit, at most {MODEL_NAME_MAX} characters.")
    experiment: str | None = Field(default=None, description="MLflow experiment; the recipe name if unset.")

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, name: str) -> str:
        if not MODEL_NAME_RE.match(name) or len(name) > MODEL_NAME_MAX:
            raise ValueError(f"model name {name!r} is not usable as an MLflow model and KServe InferenceService name; "
                             f"expected lowercase letters, digits and '-', starting with a letter and ending with a "
                             f"letter or digit, at most {MODEL_NAME_MAX} characters (e.g. 'house-prices-v2')")
        return name


class DeploySpec(_Section):
    target: Literal["local", "kserve"] = "local"
    port: int = Field(8080, gt=0, lt=65536, description="Local model server port.")
    namespace: str | None = Field(None, description="KServe namespace. Unset: the namespace the deploy step runs in "
                                  "(on Kubeflow Pipelines the run's, e.g. a profile namespace), else the kube config "
                                  "context's, else 'default'.")
    deployment_mode: Literal["RawDeployment", "Serverless", "Standard", "Knative"] = Field(
        "RawDeployment", description="KServe's serving.kserve.io/deploymentMode. RawDeployment (a Deployment and a "
        "Service; KServe 0.16+ calls it Standard) needs no Knative; Serverless (Knative; 0.16+: Knative) scales to "
        "zero and splits canary traffic.")
    service_account: str = Field("kfp-ml-platform-serving", description="Carries the S3 secret (kserve target).")
    runtime: str = Field("kfp-ml-platform", description="KServe ServingRuntime that runs the predictor image.")
    cpu: str = "500m"
    memory: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    canary_traffic_percent: int | None = Field(None, ge=0, le=100, description="Share of traffic for the new revision.")
    timeout_s: int = Field(600, gt=0, description="How long to wait for the InferenceService to be Ready.")

    @model_validator(mode="after")
    def _canary_needs_knative(self) -> "DeploySpec":
        if self.canary_traffic_percent is not None and self.deployment_mode not in ("Serverless", "Knative"):
            raise ValueError(f"canary_traffic_percent needs deployment_mode Serverless (KServe splits canary "
                             f"traffic with Knative only), not {self.deployment_mode}")
        return self


class Recipe(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    task: Task
    data: DataSpec
    timeseries: TimeSeriesSpec | None = Field(None, description="Present for the time-series task family.")
    image: ImageSpec | None = Field(None, description="Present for image classification, detection, segmentation, "
                                    "pose and oriented boxes (obb).")
    text: TextSpec | None = Field(None, description="Present for text classification.")
    textgen: TextGenSpec | None = Field(None, description="Present for text generation (task 'generation').")
    preprocess: PreprocessSpec = Field(default_factory=PreprocessSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    tune: TuneSpec | None = Field(None, description="Present: a tune step searches hyper-parameters before train.")
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    # Spelled `register` in recipe files; the attribute name avoids pydantic's ABCMeta.register.
    registry: RegisterSpec = Field(alias="register")
    deploy: DeploySpec = Field(default_factory=DeploySpec)

    @model_validator(mode="after")
    def _cross_checks(self) -> "Recipe":
        if self.split.method == "stratified" and self.task != "classification":
            raise ValueError("split.method 'stratified' needs task 'classification'")
        present = [name for name in family_sections() if getattr(self, name) is not None]
        if len(present) > 1:
            raise ValueError(f"a recipe has at most one family section ({', '.join(family_sections())}); "
                             f"this one has {', '.join(present)}")
        family(self.family).check_recipe(self)
        if self.data.target and self.data.target in self.data.drop_columns:
            raise ValueError(f"data.target {self.data.target!r} is also in data.drop_columns")
        if self.deploy.target == "kserve":
            host = f"{self.registry.model_name}-predictor-{self.deploy.namespace or ''}"  # unset: known at run time
            if len(host) > DNS_LABEL_MAX:
                raise ValueError(f"register.model_name and deploy.namespace are too long together: KServe's host "
                                 f"label {host!r} has {len(host)} characters, at most {DNS_LABEL_MAX} are allowed")
        return self

    # --- construction -------------------------------------------------------------------
    @classmethod
    def parse(cls, raw: dict[str, Any], overrides: list[str] | None = None, where: str = "recipe") -> "Recipe":
        _check_shape(raw, where)
        raw = json.loads(json.dumps(raw))  # deep copy
        _drop_stale_params(raw, overrides or [])
        for item in overrides or []:
            _apply_override(raw, item)
        if overrides:
            _check_shape(raw, f"{where} after --set overrides")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise RecipeError(_describe(exc)) from None

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | None = None) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist")
        where = f"recipe file {path}"
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{where} is {size:,} bytes; a recipe is at most {MAX_RECIPE_BYTES:,} bytes")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(f"{where} is not UTF-8 text (byte {exc.start}); expected a YAML or JSON file") from None
        raw = load_yaml(text, where)
        if not isinstance(raw, dict):
            raise RecipeError(f"{where} must hold a mapping, got {type(raw).__name__}")
        return cls.parse(raw, overrides, where)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        if len(text) > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe JSON is {len(text):,} characters; a recipe is at most {MAX_RECIPE_BYTES:,}")
        try:
            raw = json.loads(text)
        except RecursionError:
            raise RecipeError(f"recipe JSON is nested more than {MAX_DEPTH} levels deep") from None
        except ValueError as exc:
            raise RecipeError(f"recipe JSON is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"recipe JSON must hold an object, got {type(raw).__name__}")
        return cls.parse(raw, where="recipe JSON")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    def hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    # --- derived facts ------------------------------------------------------------------
    @property
    def primary_metric(self) -> str:
        if self.evaluate.primary_metric:
            return self.evaluate.primary_metric
        if self.task in INSTANCE_TASKS:
            return instance_kind(self.task).primary_metric
        return {"regression": "rmse", "generation": "perplexity"}.get(self.task, "f1")

    @property
    def family(self) -> str:
        """Task family: how data is read, windowed and scored."""
        return family_name([name for name in family_sections() if getattr(self, name) is not None])

    @property
    def experiment(self) -> str:
        return self.registry.experiment or self.name

    def flat_params(self) -> dict[str, str]:
        """Dotted key → value, what MLflow logs as run params."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for key, sub in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, sub)
            else:
                out[prefix] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)

        walk("", self.model_dump(mode="json", by_alias=True))
        return out


# --- reading recipe text safely ---------------------------------------------------------------

class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that builds plain data only, refuses duplicate keys and bounds nesting while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        if node is not None:
            _measure(node, {}, set(), 1)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:  # before merge keys (<<) are flattened: those may repeat keys
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = key_node.value
                    if key in seen:
                        raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                                key_node.start_mark)
                    seen.add(key)
        return super().construct_mapping(node, deep)

    def _refuse_tag(self, node):
        raise yaml.constructor.ConstructorError(None, None, f"tag {node.tag!r} is not allowed", node.start_mark)

    def _timestamp_as_text(self, node):
        return self.construct_scalar(node)  # a date in a recipe is a string, never a datetime


def _measure(node, memo: dict, active: set, depth: int) -> tuple[int, int]:
    """(values, height) of a composed YAML node with every alias expanded, memoized per node.

    Runs before anything is constructed, so aliases or merge keys (<<) that would expand to
    billions of values, nest too deep or refer to themselves are refused in microseconds.
    """
    def refuse(problem: str):
        raise yaml.composer.ComposerError(None, None, problem, node.start_mark)

    if depth > MAX_DEPTH:
        refuse(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded")
    if id(node) in active:
        refuse("an alias refers to the value that contains it")
    if id(node) not in memo:
        size, height = 1, 0
        if not isinstance(node, yaml.ScalarNode):
            active.add(id(node))
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                child_size, child_height = _measure(child, memo, active, depth + 1)
                size, height = size + child_size, max(height, child_height)
                if size > MAX_VALUES:
                    refuse(f"holds more than {MAX_VALUES:,} values once its YAML aliases (*name) are expanded; "
                           "a recipe is small, write the values out instead of nesting aliases")
            active.discard(id(node))
        memo[id(node)] = (size, height + 1)
    size, height = memo[id(node)]
    if depth + height - 1 > MAX_DEPTH:
        refuse(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded")
    return size, height


for _tag in ("binary", "omap", "pairs", "set"):
    _RecipeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _RecipeLoader._refuse_tag)
_RecipeLoader.add_constructor("tag:yaml.org,2002:timestamp", _RecipeLoader._timestamp_as_text)
_RecipeLoader.add_constructor(None, _RecipeLoader._refuse_tag)

ALLOWED_VALUES = "a recipe holds only mappings, lists, strings, numbers, booleans and null"


def load_yaml(text: str, where: str) -> Any:
    """YAML (or JSON) text → plain data, or one-line ``RecipeError`` naming where and what is wrong."""
    loader = _RecipeLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(filter(None, [getattr(exc, "context", None), getattr(exc, "problem", None)])) or str(exc)
        problem = problem.replace("tag:yaml.org,2002:", "!!")
        if "constructor for the tag" in problem or "is not allowed" in problem:
            tag = re.search(r"'([^']*)'", problem)
            problem = f"tag {tag.group(1) if tag else '?'!r} is not allowed ({ALLOWED_VALUES})"
        raise RecipeError(f"{where}{at}: {' '.join(problem.split())}") from None
    except RecursionError:
        raise RecipeError(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    _check_shape(data, where)
    return data


def _check_shape(data: Any, where: str) -> None:
    """Bound the depth and the number of values, counting each use of a YAML alias again.

    Walks at most ``MAX_VALUES`` values, so a document whose aliases expand to billions of values
    (or refer to themselves) is refused at once instead of being copied.
    """
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise RecipeError(f"{where} holds more than {MAX_VALUES:,} values once its YAML aliases (*name) are "
                              "expanded; a recipe is small, write the values out instead of nesting aliases")
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, (list, tuple)):
            children = list(value)
        elif value is None or isinstance(value, (str, int, float)):
            continue
        else:
            raise RecipeError(f"{where}: a value of type {type(value).__name__} is not allowed ({ALLOWED_VALUES})")
        if children and depth >= MAX_DEPTH:
            raise RecipeError(f"{where} is nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """``a.b.c=value``; the value is parsed as YAML so numbers, lists and booleans work."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like key.path=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError(f"override {item!r}: the key path {key.strip()!r} has an empty part; expected key.path=value")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = load_yaml(text, f"override {key.strip()!r}") if text.strip() else None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "recipe"
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field{_did_you_mean(err['loc'])}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return "invalid recipe: " + "; ".join(lines)


def _did_you_mean(loc: tuple) -> str:
    """For an unknown key: the close names its section has ("did you mean 'target'?"), else all of them."""
    import difflib
    import typing

    model: Any = Recipe
    for part in loc[:-1]:
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        field = fields.get(str(part))
        if field is None:
            return ""
        model = next((a for a in (field.annotation, *typing.get_args(field.annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return ""
    names = sorted(f.alias or name for name, f in model.model_fields.items())
    close = difflib.get_close_matches(str(loc[-1]), names, n=2)
    if close:
        return f" (did you mean {' or '.join(map(repr, close))}?)"
    return f"; valid fields are {names}"


def _drop_stale_params(raw: dict[str, Any], overrides: list[str]) -> None:
    """``--set model.name=X`` that changes the model: the recipe's model.params belong to the previous
    model (the new one would refuse them, or be steered by them), so they are dropped before the
    overrides apply, and a log line says so. ``--set model.params=...`` (the whole mapping) keeps the
    old behaviour; ``--set model.params.k=v`` still adds to the emptied mapping."""
    model = raw.get("model")
    names = [item.partition("=") for item in overrides]
    new_names = [text for key, _, text in names if key.strip() == "model.name"]
    if not new_names or not isinstance(model, dict) or not isinstance(model.get("params"), dict):
        return
    if any(key.strip() == "model.params" for key, _, _ in names):
        return
    new = load_yaml(new_names[-1], "override 'model.name'") if new_names[-1].strip() else None
    old = model.get("name", ModelSpec.model_fields["name"].default)
    if new == old or not model["params"]:
        return
    import logging

    logging.getLogger(__name__).warning(
        "model.name changed from %r to %r by an override: dropped model.params %s (they were for %s); give the "
        "new model parameters with --set model.params.<name>=<value>", old, new, json.dumps(model["params"]), old)
    model["params"] = {}
    _drop_unused_train_options(raw, new, {key.strip() for key, _, _ in names})


def _drop_unused_train_options(raw: dict[str, Any], name: Any, overridden: set[str]) -> None:
    """After a model switch by override, the recipe's train options the new model's training ignores
    (an MLP's epochs for a gradient-boosting model) go back to their defaults, with a log line; one set
    by an override itself stays and is refused by the check, naming it."""
    train = raw.get("train")
    if not isinstance(train, dict) or not isinstance(name, str):
        return
    try:
        from .models import get_entry

        honoured = getattr(get_entry(name).builder, "train_options", None)
    except Exception:  # an unknown model: the check names it
        return
    if honoured is None:
        return
    dropped = {k: train.pop(k) for k in list(train) if k not in honoured and f"train.{k}" not in overridden
               and k in TrainSpec.model_fields}
    if dropped:
        import logging

        logging.getLogger(__name__).warning("model.name changed to %r by an override: train options it does not use "
                                            "are back at their defaults (were %s)", name, json.dumps(dropped))


def json_schema() -> dict[str, Any]:
    return Recipe.model_json_schema(by_alias=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m components.recipe schema`` | ``validate FILE [--set k=v ...]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m components.recipe")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the recipe's JSON Schema (for forms and editors)")
    check = sub.add_parser("validate", help="validate a recipe file and print it resolved")
    check.add_argument("path")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.command == "schema":
        print(json.dumps(json_schema(), indent=2))
        return 0
    try:
        from .check import check

        recipe = Recipe.from_file(args.path, args.overrides)
        check(recipe)  # the same check submit.py and compile.py run
        print(yaml.safe_dump(recipe.model_dump(mode="json", by_alias=True), sort_keys=False))
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
