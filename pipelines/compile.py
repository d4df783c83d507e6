"""Compile the pipeline to the YAML a user uploads in the KFP UI.

    python pipelines/compile.py [--recipe R] [--set k=v ...] [--output F]
        [--image-registry REG --image-tag TAG] [--gpus N] [--node-selector key=value] [--toleration KEY]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_RECIPE = ROOT / "pipelines" / "recipes" / "california-housing.yaml"


def compile_pipeline(recipe_path, overrides, output, cluster) -> Path:
    from kfp import compiler

    from components.recipe import Recipe
    from pipelines.pipeline import make_pipeline

    from components.check import check

    recipe = Recipe.from_file(recipe_path, overrides)
    check(recipe)
    compiler.Compiler().compile(make_pipeline(recipe, cluster), str(output))
    return Path(output)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", default=str(ROOT / "pipelines" / "compiled" / "pipeline.yaml"))
    parser.add_argument("--image-registry", help="registry prefix of the step images (default: PLATFORM_IMAGE_REGISTRY)")
    parser.add_argument("--image-tag", help="tag of the step images (default: PLATFORM_IMAGE_TAG)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs for the train step (0: CPU node)")
    parser.add_argument("--node-selector", default="nvidia.com/gpu.present=true",
                        help="key=value for the train step's node; '' for none")
    parser.add_argument("--toleration", default="nvidia.com/gpu", help="taint key the train step tolerates; '' for none")
    args = parser.parse_args(argv)
    from components.recipe import RecipeError
    from pipelines.pipeline import ClusterConfig

    selector = tuple(args.node_selector.split("=", 1)) if args.node_selector else None
    cluster = ClusterConfig(gpus=args.gpus, node_selector=selector, toleration=args.toleration or None,
                               image_registry=args.image_registry, image_tag=args.image_tag)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    try:
        out = compile_pipeline(args.recipe, args.overrides, args.output, cluster)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"compiled pipeline written to {out}; upload it in the KFP UI (Pipelines → Upload pipeline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
