"""One check before anything runs: `recipe validate`, `submit.py` and `compile.py` all call ``check``.

Pydantic has already checked each field's type and range; this checks what only the whole recipe,
the model catalog and a peek at the data can tell: the model fits the task and family and takes its
parameters, every gate rule names a metric this task reports, the data exists and (for a local
table) its header holds the target. Everything wrong is reported at once, each with what is expected.
"""
from __future__ import annotations

import difflib
import glob
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DataError, RecipeError
from .gate import GATE_RE
from .tasks import family_for
from .tasks.instances import INSTANCE_TASKS, kind as instance_kind

if TYPE_CHECKING:  # the recipe's command line calls check: a run-time import would close a circle
    from .recipe import Recipe

# What evaluate reports per task (per-class metrics add a `_class_<name>` suffix to some of them).
TASK_METRICS = {
    "regression": ("mae", "mse", "rmse", "r2"),
    "classification": ("accuracy", "precision", "recall", "f1", "log_loss", "roc_auc", "pr_auc", "top5_accuracy",
                       "best_threshold", "f1_at_best_threshold", "f1_at_0.5"),
    **{task: instance_kind(task).metrics for task in INSTANCE_TASKS},  # detection, segmentation, pose, obb
    "generation": ("perplexity", "loss"),
}
# Reported per class too, as `<metric>_class_<name>`: classification's F1; a detector's mAP50, precision and
# recall (with the mask_ / pose_ ones of segmentation and pose models).
PER_CLASS_METRICS = {"classification": ("f1",),
                     **{task: tuple(m for m in TASK_METRICS[task] if not m.endswith("_95")) for task in INSTANCE_TASKS}}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def check(recipe: Recipe, peek_data: bool = True) -> None:
    problems = [p for p in (_model(recipe), *_metrics(recipe), *_tune(recipe), _data(recipe) if peek_data else None)
                if p]
    if problems:
        raise RecipeError("; ".join(problems))


def _model(recipe: Recipe) -> str | None:
    from .models import build_adapter
    try:
        build_adapter(recipe.model.name, recipe.task, 2 if recipe.task == "classification" else None,
                      recipe.model.params, recipe.family, train=recipe.train,
                      section=family_for(recipe).options(recipe))
    except (RecipeError, KeyError) as exc:
        return str(exc).strip("'\"")
    return None


def metric_problem(task: str, name: str, where: str) -> str | None:
    base, per_class, _ = name.partition("_class_")
    if name in TASK_METRICS[task] or (per_class and base in PER_CLASS_METRICS.get(task, ())):
        return None
    close = difflib.get_close_matches(name, TASK_METRICS[task], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    per_class = PER_CLASS_METRICS.get(task, ())
    return (f"{where}: {task} reports no metric {name!r}{hint}; it reports {', '.join(TASK_METRICS[task])}"
            + (f", and per class {', '.join(f'{m}_class_<name>' for m in per_class)}" if per_class else ""))


def _metrics(recipe: Recipe) -> list[str | None]:
    names = [("evaluate.gate", GATE_RE.match(rule).group(1)) for rule in recipe.evaluate.gate]
    names.append(("evaluate.primary_metric", recipe.primary_metric))
    return [metric_problem(recipe.task, name, where) for where, name in names]


# What tune can optimise: the training loss, or what evaluate's scoring computes on the validation split.
TUNE_METRICS = {"regression": ("val_loss", *TASK_METRICS["regression"]),
                "classification": ("val_loss", "accuracy", "precision", "recall", "f1", "log_loss", "roc_auc",
                                   "pr_auc", "top5_accuracy"),
                **{task: ("val_loss",) for task in INSTANCE_TASKS}, "generation": ("val_loss",)}


def _tune(recipe: Recipe) -> list[str | None]:
    """The tune metric is one the task can be searched on, and the space fits the model."""
    if recipe.tune is None:
        return []
    from .models.tunable import search_space
    from .tasks import family_for

    problems, metric, known = [], recipe.tune.metric, TUNE_METRICS[recipe.task]
    if metric not in known:
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"tune.metric: {recipe.task} trials cannot be scored on {metric!r}{hint}; "
                        f"known metrics are {', '.join(known)}")
    try:
        search_space(recipe, family_for(recipe).options(recipe))
    except RecipeError as exc:
        problems.append(str(exc))
    return problems


def _data(recipe: Recipe) -> str | None:
    """Exists, and for a local table the target is in the header (read without loading the data)."""
    from .storage import is_redis, is_remote

    uri = recipe.data.uri
    if is_remote(uri) or is_redis(uri):
        return None  # load checks it with the store's credentials, which may exist only on the cluster
    if not Path(uri).is_absolute() and not glob.glob(uri) and (PROJECT_ROOT / uri).exists():
        uri = str(PROJECT_ROOT / uri)  # submit.py resolves recipe paths against the project, wherever it runs
    paths = sorted(glob.glob(uri)) if any(ch in uri for ch in "*?[") else [uri] if Path(uri).exists() else []
    if not paths:
        return f"data.uri: {uri} does not exist; expected a file, a directory or a glob that names files"
    target = recipe.data.target
    if not family_for(recipe).target_in_header or not target or not Path(paths[0]).is_file():
        return None
    try:
        columns = header(Path(paths[0]), recipe.data.read_options)
    except DataError as exc:
        return str(exc)
    if columns is not None and target not in columns:
        from .tasks.tabular import delimiter_hint

        close = difflib.get_close_matches(target, columns, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"data.target: column {target!r} is not in {paths[0]}{hint}; its columns are {columns}"
                f"{delimiter_hint(columns)}")
    return None


def header(path: Path, read_options=None) -> list[str] | None:
    """A table's column names without reading its rows, a CSV in its sniffed dialect (delimiter,
    encoding; ``data.read_options`` wins); None for formats without a cheap header."""
    from .tasks.tabular import header_names

    try:
        return header_names(path, read_options)
    except Exception as exc:  # unreadable header: load reports it with the file and the reason
        raise DataError(f"data.uri: cannot read the header of {path} ({type(exc).__name__}: {exc})") from None
