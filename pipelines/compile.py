"""Compile the pipeline to the YAML a user uploads in the KFP UI.

    python pipelines/compile.py [--recipe R] [--set k=v ...] [--output F] [--target recipe|cluster]
        [--image-registry REG --image-tag TAG] [--gpus N] [--node-selector key=value] [--toleration KEY]
        [--resources STEP=CPU,MEMORY[,CPU_LIMIT,MEMORY_LIMIT] ...] [--retries N]

--target cluster: the run form's defaults run on the cluster as they are. Local data is uploaded
to the object store (S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY here; bucket
PLATFORM_DATA_BUCKET, default kfp-ml-platform-data) and data_uri points at it; deploy.target is
kserve; deploy.namespace stays unset unless the recipe or --set names one, so the model is served
in the namespace the run runs in; the step images must name a registry (--image-registry or
PLATFORM_IMAGE_REGISTRY). --target recipe (the default): the recipe as written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_RECIPE = ROOT / "pipelines" / "recipes" / "california-housing.yaml"


def cluster_recipe(recipe_path, overrides):
    """The recipe as a cluster runs it: served by KServe, its data in the object store."""
    from components.check import check
    from components.recipe import Recipe
    from pipelines.submit import stage_data

    recipe = Recipe.from_file(recipe_path, ["deploy.target=kserve", *overrides])  # --set still wins
    check(recipe)
    return stage_data(recipe)


def compile_pipeline(recipe_path, overrides, output, cluster, target: str = "recipe") -> Path:
    from kfp import compiler

    from components.check import check
    from components.recipe import Recipe
    from pipelines.pipeline import make_pipeline

    if target == "cluster":
        recipe = cluster_recipe(recipe_path, overrides)
    else:
        recipe = Recipe.from_file(recipe_path, overrides)
        check(recipe)
    compiler.Compiler().compile(make_pipeline(recipe, cluster), str(output))
    return Path(output)


def parse_resources(items: list[str]) -> tuple:
    """``train=8,32Gi,16,64Gi`` → (("train", StepResources(...)),); limits default to the requests."""
    from components.recipe import RecipeError
    from pipelines.pipeline import DEFAULT_RESOURCES, StepResources

    parsed = []
    for item in items:
        step, _, values = item.partition("=")
        parts = [v.strip() for v in values.split(",")]
        if step not in DEFAULT_RESOURCES or len(parts) not in (2, 4) or not all(parts):
            raise RecipeError(f"--resources {item!r}: expected STEP=CPU,MEMORY[,CPU_LIMIT,MEMORY_LIMIT] with STEP one "
                              f"of {', '.join(DEFAULT_RESOURCES)}, e.g. train=8,32Gi,16,64Gi")
        cpu, memory, *limits = parts
        parsed.append((step, StepResources(cpu, memory, *(limits or [cpu, memory]))))
    return tuple(parsed)


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared with submit.py --host: images, train placement, resources, retries."""
    parser.add_argument("--image-registry", help="registry prefix of the step images (default: PLATFORM_IMAGE_REGISTRY)")
    parser.add_argument("--image-tag", help="tag of the step images (default: PLATFORM_IMAGE_TAG, else 0.1.0)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs for the train step (0: CPU node)")
    parser.add_argument("--node-selector", default="nvidia.com/gpu.present=true",
                        help="key=value for the train step's node; '' for none")
    parser.add_argument("--toleration", default="nvidia.com/gpu", help="taint key the train step tolerates; '' for none")
    parser.add_argument("--resources", action="append", default=[], metavar="STEP=CPU,MEMORY[,CPU_LIMIT,MEMORY_LIMIT]",
                        help="requests (and limits) of a step, e.g. train=8,32Gi,16,64Gi (repeatable; the others keep "
                             "pipelines/pipeline.py's DEFAULT_RESOURCES)")
    parser.add_argument("--retries", type=int, default=3,
                        help="retries, with exponential backoff from 30 s, of the steps that touch the network "
                             "(load, register, deploy)")


def cluster_config(args):
    from pipelines.pipeline import ClusterConfig

    selector = tuple(args.node_selector.split("=", 1)) if args.node_selector else None
    return ClusterConfig(gpus=args.gpus, node_selector=selector, toleration=args.toleration or None,
                         image_registry=args.image_registry, image_tag=args.image_tag,
                         resources=parse_resources(args.resources), retries=args.retries)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", default=str(ROOT / "pipelines" / "compiled" / "pipeline.yaml"))
    parser.add_argument("--target", choices=["recipe", "cluster"], default="recipe",
                        help="cluster: defaults that run on a cluster as they are (data uploaded to the object store, "
                             "deploy.target kserve in the run's namespace); recipe: the recipe as written")
    add_cluster_args(parser)
    args = parser.parse_args(argv)
    from components.recipe import RecipeError
    from components.storage import ObjectStoreError
    from pipelines.images import registry_problem

    if args.target == "cluster" and (problem := registry_problem(args.image_registry)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        cluster = cluster_config(args)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        out = compile_pipeline(args.recipe, args.overrides, args.output, cluster, args.target)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ObjectStoreError as exc:
        print(f"error: the data is on this machine and must be uploaded for the cluster, but {exc}", file=sys.stderr)
        return 2
    print(f"compiled pipeline written to {out}; upload it in the KFP UI (Pipelines → Upload pipeline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
