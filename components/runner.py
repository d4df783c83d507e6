"""What every KFP component body calls first: logging, and the recipe resolved from its knobs."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from .recipe import Recipe

# Run-form knob → recipe field. The knobs win over the recipe JSON they sit beside.
KNOBS = {
    "data_uri": "data.uri",
    "target": "data.target",
    "model_name": "model.name",
    "epochs": "train.epochs",
    "learning_rate": "train.learning_rate",
    "registered_model_name": "register.model_name",
}


def step_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "botocore", "alembic", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def resolve_recipe(recipe_json: str, **knobs) -> Recipe:
    """The recipe with the run form's knobs applied; ``None``/empty knobs keep the recipe's value."""
    recipe = Recipe.from_json(recipe_json)
    overrides = [f"{KNOBS[k]}={v}" for k, v in knobs.items() if v not in (None, "")]
    return Recipe.parse(recipe.model_dump(mode="json", by_alias=True), overrides) if overrides else recipe


def write_metadata_file(*artifacts) -> None:
    """Metrics artifacts keep their values in metadata only and write no file; kfp.local's cache
    then takes the step's outputs for missing and never reuses it. Their values as a JSON file make
    the step cacheable (and, on a cluster, downloadable beside the UI's view)."""
    for artifact in artifacts:
        path = Path(artifact.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(artifact.metadata, indent=1))
