"""What every KFP component body calls first: logging, and the recipe as the step may see it.

Caching is by a step's inputs, so a step must receive only the recipe sections it reads: then a
change to ``train.epochs`` re-runs train and what follows, and load, preprocess and split come
from the cache. ``recipe_views`` cuts the resolved recipe into one JSON view per step;
``Recipe``-like objects rebuilt from a view raise if the step reads a section it did not declare,
so a missing declaration fails loudly in tests instead of silently reusing a stale result.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import BaseModel, PrivateAttr, TypeAdapter
from pydantic.fields import FieldInfo

from .recipe import Recipe, RecipeError
from .tasks import family_sections

# Run-form knob → recipe field. The knobs win over the recipe JSON they sit beside.
KNOBS = {
    "data_uri": "data.uri",
    "target": "data.target",
    "model_name": "model.name",
    "epochs": "train.epochs",
    "learning_rate": "train.learning_rate",
    "registered_model_name": "register.model_name",
}

# Every view carries the task and the family section, which decide how each step reads its data (the
# data steps without the section's ``model_only`` fields). What each step reads beyond them: a section,
# or one field of it (`section.field`). Names are the
# Recipe's attribute names (`registry` is spelled `register` in recipe files).
STEP_SECTIONS: dict[str, tuple[str, ...]] = {
    "load": ("data",),                      # + split when data.sample_rows (its seed draws the sample)
    "preprocess": ("data", "preprocess", "split.group_column"),  # the group column is kept out of the features
    "split": ("data", "split"),
    "train": ("data", "preprocess", "model", "train"),
    "tune": ("name", "data", "preprocess", "model", "train", "tune", "registry.experiment"),  # trials → MLflow
    "evaluate": ("name", "evaluate"),
    "backtest": ("name", "data", "preprocess", "split", "model", "train", "evaluate"),  # rolling: every fold
    "deploy": ("deploy", "registry"),
}


STEP_VIEWS = ("load", "preprocess", "split", "tune", "train", "evaluate", "backtest", "register", "deploy")


def step_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "botocore", "alembic", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _exit_once_output_is_written()


def _exit_once_output_is_written() -> None:
    """Skip the interpreter's teardown once KFP's executor has written this step's output.

    Tearing down torch, scikit-learn, matplotlib and MLflow modules takes 0.4–2.6 s per step on
    2 cores, time in which kfp.local (and KFP's launcher on a cluster) waits for the process to
    end. Registered before the step imports those libraries, so their own exit handlers (atexit
    runs last-registered first) have all run by the time this one ends the process. A step that
    failed (an exception, sys.exit) has written no output file and exits the normal way.
    """
    output = _executor_output_file()
    if output is None:
        return
    started = time.time()

    def exit_now() -> None:
        failed = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)  # an uncaught exception
        if failed is not None or not output.is_file() or output.stat().st_mtime < started:
            return
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(0)

    atexit.register(exit_now)


def _executor_output_file() -> Path | None:
    """The output file named in ``--executor_input`` when KFP's executor runs this process."""
    argv = sys.argv
    try:
        raw = argv[argv.index("--executor_input") + 1]
    except (ValueError, IndexError):
        raw = next((a.split("=", 1)[1] for a in argv if a.startswith("--executor_input=")), None)
    try:
        output = json.loads(raw)["outputs"]["outputFile"] if raw else None
    except (ValueError, KeyError, TypeError):
        return None
    return Path(output) if output else None


def resolve_recipe(recipe_json: str, **knobs) -> Recipe:
    """The recipe with the run form's knobs applied; ``None``/empty knobs keep the recipe's value."""
    recipe = Recipe.from_json(recipe_json)
    overrides = [f"{KNOBS[k]}={v}" for k, v in knobs.items() if v not in (None, "")]
    return Recipe.parse(recipe.model_dump(mode="json", by_alias=True), overrides) if overrides else recipe


DATA_STEPS = ("load", "preprocess", "split")


def _section_model(name: str) -> type[BaseModel] | None:
    field = Recipe.model_fields[name]
    return next((a for a in (field.annotation, *get_args(field.annotation))
                 if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _family_parts(step: str) -> tuple[str, ...]:
    """The family sections, less the fields only the model's steps read when ``step`` is a data step."""
    if step not in DATA_STEPS:
        return tuple(family_sections())
    parts: list[str] = []
    for section in family_sections():
        model = _section_model(section)
        if model.model_only:
            parts += [f"{section}.{f}" for f in model.model_fields if f not in model.model_only]
        else:
            parts.append(section)
    return tuple(parts)


def sections_of(step: str, recipe: Recipe | None) -> tuple[str, ...]:
    if step == "register":  # logs the whole recipe as run params; never cached
        return tuple(Recipe.model_fields)
    if step == "tune" and recipe is not None and recipe.tune is None:
        return ()  # no tune step: an empty view, which no change touches
    extra = ("split.seed",) if step == "load" and recipe is not None and recipe.data.sample_rows else ()
    return ("task", *_family_parts(step)) + STEP_SECTIONS[step] + extra


def recipe_views(recipe: Recipe) -> dict[str, str]:
    """Step name → the JSON of the recipe parts that step reads (canonical: sorted keys)."""
    full = recipe.model_dump(mode="json")  # attribute names (`registry`), not aliases
    views = {}
    for step in STEP_VIEWS:
        view: dict[str, Any] = {}
        for part in sections_of(step, recipe):
            section, _, field = part.partition(".")
            if field and full[section] is None:  # a family section this recipe has not
                view[section] = None
            elif field:
                view.setdefault(section, {})[field] = full[section][field]
            else:
                view[section] = full[section]
        views[step] = json.dumps(view, sort_keys=True)
    return views


class Withheld:
    """Stands in for a recipe section a step did not declare; any use of it is a bug."""

    def __init__(self, section: str, step: str):
        object.__setattr__(self, "_what", (section, step))

    def _refuse(self, *_: Any, **__: Any):
        section, step = object.__getattribute__(self, "_what")
        raise RecipeError(f"step {step!r} reads recipe section {section!r}, which its view does not carry; "
                          f"add it to STEP_SECTIONS[{step!r}] in components/runner.py")

    __getattr__ = __str__ = __format__ = __bool__ = __iter__ = __eq__ = __hash__ = __len__ = _refuse


class RecipeView(Recipe):
    """A step's view of the recipe; ``hash()`` is the hash of what the step sees."""
    _view_hash: str = PrivateAttr("")

    def hash(self) -> str:
        return self._view_hash


class PartialSection:
    """Some fields of a section (those a step declared); reading another one is a bug."""

    def __init__(self, section: str, step: str, values: dict[str, Any]):
        self.__dict__.update(values, _what=(section, step))

    def __getattr__(self, field: str):
        section, step = self.__dict__["_what"]
        return Withheld(f"{section}.{field}", step)._refuse()


def recipe_for_step(view_json: str, step: str) -> Recipe:
    """A Recipe rebuilt from a step's view: what it declared validated, everything else ``Withheld``."""
    view = json.loads(view_json)
    if step == "register":  # the whole recipe
        return Recipe.model_validate(view)
    declared = sections_of(step, None)
    values: dict[str, Any] = {}
    for name in Recipe.model_fields:
        section = _section_model(name)
        if name not in view:
            values[name] = Withheld(name, step)
        elif section is None or view[name] is None:
            values[name] = view[name]
        elif name in declared:
            values[name] = section.model_validate(view[name])
        else:  # some fields of the section: each validated alone, the rest withheld
            values[name] = PartialSection(name, step, {f: _validated(section.model_fields[f], v)
                                                       for f, v in view[name].items()})
    recipe = RecipeView.model_construct(**values)
    recipe._view_hash = hashlib.sha256(view_json.encode()).hexdigest()[:16]
    return recipe


def _validated(field: FieldInfo, value: Any) -> Any:
    annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return TypeAdapter(annotation).validate_python(value)


def write_metadata_file(*artifacts) -> None:
    """Metrics artifacts keep their values in metadata only and write no file; kfp.local's cache
    then takes the step's outputs for missing and never reuses it. Their values as a JSON file make
    the step cacheable (and, on a cluster, downloadable beside the UI's view)."""
    for artifact in artifacts:
        path = Path(artifact.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(artifact.metadata, indent=1))
