"""Run a recipe: locally with kfp.local (default), or on a KFP endpoint with --host.

    python pipelines/submit.py                                  # default recipe, whole DAG, locally
    python pipelines/submit.py --recipe pipelines/recipes/breast-cancer.yaml --set train.epochs=20
    python pipelines/submit.py --host https://kfp.example.com --experiment housing --image-registry REG --image-tag TAG
    python pipelines/submit.py --host https://kubeflow.example.com/pipeline --namespace team-a   # multi-user
    python pipelines/submit.py --host https://kfp.example.com --wait          # and follow it to the end
    python pipelines/submit.py status RUN_ID --host https://kfp.example.com   # a run's state and its steps'
    python pipelines/submit.py predict --model models:/california-housing@champion --data data/california_housing.parquet
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.check import check  # noqa: E402
from components.errors import PlatformError  # noqa: E402
from components.recipe import Recipe, RecipeError  # noqa: E402
from components.settings import local_service_env, platform_home, redact_uri  # noqa: E402

DEFAULT_RECIPE = ROOT / "pipelines" / "recipes" / "california-housing.yaml"


def run_local(recipe: Recipe, caching: bool = True, verbose: bool = False, runner: str = "subprocess") -> dict:
    """Run the whole DAG on this machine and return what a person wants to know about it."""
    from pipelines.local_run import exclusive_store, run_pipeline, steps_stopped_on_signal
    from pipelines.pipeline import ClusterConfig, make_pipeline

    home = platform_home()
    os.environ.update(local_service_env(home))
    from components.storage import resolve_data_uri

    data_uri = resolve_data_uri(recipe.data.uri, ROOT)  # steps run with their own working directory; s3:// stays
    if data_uri != recipe.data.uri:
        recipe = Recipe.parse(recipe.model_dump(mode="json", by_alias=True), [f"data.uri={data_uri}"])
    kfp_runner = None
    if runner == "container":  # every step in its own image, with S3 and MLflow in containers
        from pipelines import container_runner

        kfp_runner = container_runner.prepare(home, recipe.data.uri)
    pipeline = make_pipeline(recipe, ClusterConfig.local())
    with exclusive_store(home, f"recipe {recipe.name}"), steps_stopped_on_signal():
        run_dir, cached, seconds = run_pipeline(pipeline, home, recipe.name, caching, verbose, runner=kfp_runner)
        if kfp_runner is not None:
            container_runner.serve_champion(recipe)  # the serving image, where deploy would start a process
        return summarize(recipe, run_dir, seconds, cached)


def step_output(outputs: Path, task: str) -> str | None:
    """The parameter a task of this run returned (kfp.local keeps it in executor_output.json)."""
    path = outputs / task / "executor_output.json"
    return json.loads(path.read_text()).get("parameterValues", {}).get("Output") if path.is_file() else None


def summarize(recipe: Recipe, run_dir: Path, seconds: float, cached: list[str]) -> dict:
    name = recipe.registry.model_name
    from pipelines.local_run import outputs_dir, step_name

    outputs = outputs_dir(run_dir) or run_dir
    registration = json.loads(step_output(outputs, "register-model") or "{}")
    summary = {"seconds": round(seconds, 1), "outputs": str(outputs), "logs": str(run_dir / "logs"),
               "registration": registration,
               "cached": [step_name(task) for task in cached],
               "backtest": json.loads(step_output(outputs, "backtest-model") or "{}"),
               "tuned": json.loads(step_output(outputs, "tune-model") or "{}"),  # best values; empty when cached
               "registered": f"{name} version {registration.get('version', '?')} ({registration.get('alias', '?')})",
               "gate": registration.get("gate", "?"), "tracking_uri": redact_uri(os.environ["MLFLOW_TRACKING_URI"])}
    state = platform_home() / "serving" / f"{name}.json"
    if summary["gate"] == "passed" and state.is_file():
        served = json.loads(state.read_text())
        url = f"http://127.0.0.1:{served['port']}/v1/models/{name}:predict"
        body = {"instances": sample_instances(Path(served["model_dir"]))}
        summary.update(served_url=url, served_port=served["port"], served_version=Path(served["model_dir"]).name.lstrip("v"),
                       sample_request=body, sample_answer=post_json(url, body),
                       curl=f"curl -s -H 'Content-Type: application/json' {url} -d {shlex.quote(json.dumps(body))}")
    return summary


def sample_instances(model_dir: Path, rows: int = 2) -> list[dict]:
    """Rows from the input example MLflow stored with the registered version."""
    example = json.loads((model_dir / "input_example.json").read_text())
    if example["columns"] == ["window"]:  # time series: one [C][L] window per instance
        return [row[0] for row in example["data"][:rows]]
    return [dict(zip(example["columns"], row)) for row in example["data"][:rows]]


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _tree_hash(root: Path, files: list[Path]) -> str:
    """Content and layout of a directory: a renamed or moved file changes it too."""
    import hashlib

    from components.storage import content_hash

    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\0{content_hash([path])}\n".encode())
    return digest.hexdigest()[:16]


def stage_data(recipe: Recipe) -> Recipe:
    """A cluster cannot read this machine's files: upload local data and point the recipe at it.

    A directory (an image folder, a YOLO or COCO dataset) is uploaded whole, keeping its layout,
    and the recipe points at its prefix; a file or a glob's files go under one prefix keyed by
    their content, so the same data is uploaded once and changed data lands somewhere new."""
    from components.errors import DataError
    from components.storage import content_hash, expand, is_redis, is_remote, object_store, upload

    if is_remote(recipe.data.uri) or is_redis(recipe.data.uri):  # the cluster reads it where it is
        return recipe
    object_store()  # fails with a clear message when no object store is configured
    local = Path(recipe.data.uri) if Path(recipe.data.uri).is_absolute() else ROOT / recipe.data.uri
    bucket = os.environ.get("PLATFORM_DATA_BUCKET", "kfp-ml-platform-data")
    if local.is_dir():
        files = _tree_files(local)
        if not files:
            raise DataError(f"directory {local} holds no files to upload")
        uri = f"s3://{bucket}/{recipe.name}/{_tree_hash(local, files)}/{local.name}"
        for path in files:
            upload(path, f"{uri}/{path.relative_to(local).as_posix()}")
    else:
        files = expand(str(local))
        prefix = f"s3://{bucket}/{recipe.name}/{content_hash(files)}"
        for path in files:
            upload(path, f"{prefix}/{path.name}")
        uri = f"{prefix}/{files[0].name}" if len(files) == 1 else prefix
    print(f"uploaded {len(files)} local file(s) to {uri}")
    return Recipe.parse(recipe.model_dump(mode="json", by_alias=True), [f"data.uri={uri}"])


def kfp_client(host: str, namespace: str | None = None, token_path: str | None = None):
    """A kfp.Client that authenticates the way the endpoint wants, checked against multi-user mode.

    Bearer token: from a file (``--token-path`` or KF_PIPELINES_SA_TOKEN_PATH, e.g. a projected
    ServiceAccount token; re-read on every request) or from KF_PIPELINES_TOKEN (e.g. the output of
    ``kubectl create token default-editor -n <profile> --audience pipelines.kubeflow.org``).
    Session cookie: KF_PIPELINES_COOKIE (``name=value`` as the browser holds it, e.g.
    ``oauth2_proxy_kubeflow=…`` behind Kubeflow's oauth2-proxy). Secrets come from the
    environment or a file, never from the command line, so they stay out of shell history and ps.
    """
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token_path = token_path or os.environ.get("KF_PIPELINES_SA_TOKEN_PATH")
    if token_path and not Path(token_path).is_file():
        raise SubmitError(f"the token file {token_path} does not exist (--token-path / KF_PIPELINES_SA_TOKEN_PATH)")
    credentials = ServiceAccountTokenVolumeCredentials(path=token_path) if token_path else None
    token = None if credentials else os.environ.get("KF_PIPELINES_TOKEN") or None
    client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token, credentials=credentials,
                        cookies=os.environ.get("KF_PIPELINES_COOKIE") or None)
    if not namespace and client.get_kfp_healthz().multi_user:
        raise SubmitError(f"{host} is a multi-user Kubeflow: pass --namespace with your profile namespace "
                          "(runs land there and run as its default-editor)")
    return client


class SubmitError(PlatformError, RuntimeError):
    """The run cannot be submitted as asked; the message says why and what to pass."""


def submit_remote(recipe: Recipe, host: str, experiment: str | None, run_name: str | None,
                  pipeline_root: str | None = None, caching: bool = True, cluster=None,
                  namespace: str | None = None, token_path: str | None = None):
    """Upload local data, then create a run of the pipeline compiled for ``cluster`` (its images,
    resources and retries); the images must name a registry the cluster pulls from. Returns the
    client and the run's id."""
    from pipelines.images import registry_problem
    from pipelines.pipeline import ClusterConfig, make_pipeline

    cluster = cluster or ClusterConfig()
    if problem := registry_problem(cluster.image_registry):
        raise SubmitError(problem)
    client = kfp_client(host, namespace, token_path)  # before uploading: a refused login uploads nothing
    recipe = stage_data(recipe)
    return client, client.create_run_from_pipeline_func(make_pipeline(recipe, cluster), arguments={},
                                               experiment_name=experiment or recipe.experiment,
                                               namespace=namespace,
                                               run_name=run_name or f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                               pipeline_root=pipeline_root,  # None: the namespace's KFP default
                                               enable_caching=caching).run_id


def predict_main(argv: list[str]) -> int:
    """``submit.py predict``: score a table with a registered model (the batch-scoring pipeline)."""
    from pipelines.batch_pipeline import make_batch_pipeline
    from pipelines.local_run import StepFailed, outputs_dir, run_pipeline, steps_stopped_on_signal

    parser = argparse.ArgumentParser(prog="submit.py predict", description=predict_main.__doc__)
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or a bundle directory")
    parser.add_argument("--data", required=True, help="table to score: a path, glob or s3:// URI (Parquet, CSV, JSONL)")
    parser.add_argument("--output", default="", help="where the Parquet goes (a path or s3:// URI; default: the run's "
                                                     "predictions artifact)")
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="rows scored at a time (bounds the memory)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    home = platform_home()
    os.environ.update(local_service_env(home))
    absolute = {k: str(Path(v).resolve()) if v and "://" not in v and not v.startswith("models:/") else v
                for k, v in (("model", args.model), ("data", args.data), ("output", args.output))}
    from pipelines.pipeline import ClusterConfig

    pipeline = make_batch_pipeline(absolute["model"], absolute["data"], absolute["output"], args.chunk_rows,
                                   ClusterConfig.local())
    try:
        with steps_stopped_on_signal():
            run_dir, _, seconds = run_pipeline(pipeline, home, "batch-predict", False, args.verbose)
    except StepFailed as failed:
        print(f"\nstep {failed.step} failed: {failed.reason}\nfull log: {failed.log}", file=sys.stderr)
        return 1
    result = json.loads(step_output(outputs_dir(run_dir), "batch-predict"))
    where = result["output"]
    print(f"scored {result['rows']} rows with {args.model} (version {result['model_version']}) in {seconds:.1f} s")
    print(f"predictions: {where}")
    if result["metrics"]:
        print("metrics:     " + "  ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items()))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:
        return predict_main(argv[1:])
    if argv[:1] == ["status"]:
        return status_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe YAML/JSON (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, e.g. --set train.epochs=20 (repeatable)")
    parser.add_argument("--host", help="KFP endpoint; without it the pipeline runs locally with kfp.local")
    parser.add_argument("--experiment", help="KFP experiment name (default: the recipe's experiment)")
    parser.add_argument("--run-name")
    parser.add_argument("--pipeline-root", help="with --host: artifact root (default: KFP's, e.g. "
                                                "minio://mlpipeline/v2/artifacts; KFP names its S3 store minio:// "
                                                "whether SeaweedFS or MinIO serves it)")
    parser.add_argument("--namespace", help="with --host on multi-user Kubeflow: your profile namespace (the run "
                                            "lands there and the model is served there)")
    parser.add_argument("--wait", action="store_true", help="with --host: follow the run, printing each step's "
                                                             "state, until it ends; exit 1 unless it succeeded")
    parser.add_argument("--wait-timeout", type=float, default=6 * 3600, metavar="SECONDS")
    parser.add_argument("--poll-interval", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--token-path", help="with --host: file holding a bearer token (default: "
                                             "KF_PIPELINES_SA_TOKEN_PATH); or set KF_PIPELINES_TOKEN to the token, "
                                             "or KF_PIPELINES_COOKIE to a session cookie (name=value)")
    from pipelines.compile import add_cluster_args

    add_cluster_args(parser.add_argument_group("with --host: step images, train placement, resources, retries"))
    parser.add_argument("--verbose", action="store_true",
                        help="print every step's full output and library warnings (default: one line per step)")
    parser.add_argument("--no-cache", dest="caching", action="store_false",
                        help="run every step again instead of reusing the outputs of finished identical steps")
    parser.add_argument("--runner", choices=["subprocess", "container"], default="subprocess",
                        help="without --host: steps as processes here (default), or each step in its own image "
                             "with podman (`make images` first; see pipelines/container_runner.py)")
    args = parser.parse_args(argv)
    if args.host:
        return host_main(args)
    try:
        recipe = Recipe.from_file(args.recipe, args.overrides)
        check(recipe)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipelines.local_run import StepFailed

    print(f"recipe {recipe.name}: {recipe.task}, model {recipe.model.name}, data {redact_uri(recipe.data.uri)}")
    try:
        summary = run_local(recipe, args.caching, args.verbose, args.runner)
    except StepFailed as failed:
        print(f"\nstep {failed.step} failed: {failed.reason}", file=sys.stderr)
        print(f"full log: {failed.log}", file=sys.stderr)
        return 1
    print_summary(recipe, summary)
    return 0


def host_main(args) -> int:
    """``submit.py --host``: the recipe as a cluster runs it (served by KServe in the run's
    namespace unless the recipe or --set says otherwise, data in the object store)."""
    from components.storage import ObjectStoreError
    from pipelines.compile import cluster_config

    try:
        recipe = Recipe.from_file(args.recipe, ["deploy.target=kserve", *args.overrides])  # --set still wins
        check(recipe)
        client, run_id = submit_remote(recipe, args.host, args.experiment, args.run_name, args.pipeline_root,
                                       args.caching, cluster_config(args), args.namespace, args.token_path)
    except ObjectStoreError as exc:
        print(f"error: the data is on this machine and must be uploaded first, but {exc}", file=sys.stderr)
        return 2
    except PlatformError as exc:  # a recipe, data or submission problem, in one sentence
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"submitted: {args.host.rstrip('/')}/#/runs/details/{run_id}")
    if not args.wait:
        return 0
    from pipelines.remote_runs import follow

    return 0 if follow(client, run_id, args.wait_timeout, args.poll_interval) == "SUCCEEDED" else 1


def status_main(argv: list[str]) -> int:
    """``submit.py status RUN_ID --host H``: the run's state and each step's."""
    from pipelines.remote_runs import status_lines

    parser = argparse.ArgumentParser(prog="submit.py status", description=status_main.__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--host", required=True)
    parser.add_argument("--namespace")
    parser.add_argument("--token-path")
    args = parser.parse_args(argv)
    try:
        print("\n".join(status_lines(kfp_client(args.host, args.namespace, args.token_path), args.run_id)))
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def print_summary(recipe: Recipe, summary: dict) -> None:
    reg = summary["registration"]
    print("\n" + "=" * 72)
    print(f"recipe {recipe.name}: pipeline finished in {summary['seconds']} s")
    print(f"outputs:     {summary['outputs']}  (step logs in {summary['logs']})")
    print(f"from cache:  {', '.join(summary['cached']) or 'nothing (every step ran)'}")
    metrics = reg.get("metrics", {})
    shown = [k for k in metrics if "." not in k and not k.startswith(("f1_", "precision_", "recall_"))][:8]
    print("test:        " + "  ".join(f"{k} {metrics[k]:.4g}" for k in shown))
    rules = "   ".join(f"{r['rule'].split()[0]} {r['value']:.4g} {' '.join(r['rule'].split()[1:])} "
                       f"{'ok' if r['passed'] else 'FAILED'}" for r in reg.get("gate_rules", []))
    print(f"gate:        {summary['gate']}" + (f"  ({rules})" if rules else "  (no rules)"))
    if summary["backtest"] and f"{reg.get('primary_metric')}_mean" in summary["backtest"]:
        m, bt = reg["primary_metric"], summary["backtest"]
        print(f"backtest:    {m} {bt[m + '_mean']:.4g} ± {bt[m + '_std']:.4g} over {recipe.split.folds} folds")
    if summary.get("tuned"):
        best = {**summary["tuned"].get("model", {}), **summary["tuned"].get("train", {})}
        print("tuned:       " + "  ".join(f"{k} {json.dumps(v)}" for k, v in best.items()))
    before = reg.get("champion_before")
    metric = reg.get("primary_metric", "")
    champion = ("registered before: the same bundle, recipe and evaluation" if reg.get("registered_before")
                else f"champion before: version {before['version']}, {metric} {before[metric]:.4g}" if before
                else "first version")
    print(f"registered:  {summary['registered']}  ({champion}; MLflow {summary['tracking_uri']})")
    if "served_url" in summary:
        print(f"served at:   {summary['served_url']}  (port {summary['served_port']} serves version "
              f"{summary['served_version']}, the champion)")
        answer = json.dumps(summary["sample_answer"])
        print(f"sample answer: {answer if len(answer) <= 300 else answer[:299] + '…'}")
        print(f"try it:\n  {summary['curl']}")
    elif summary["gate"] != "passed":
        print("not served: the gate did not pass (see the evaluate step's report)")
    else:
        print("not served: the new version is the challenger; the champion keeps serving")


if __name__ == "__main__":
    raise SystemExit(main())
