"""register: log the run and the bundle in MLflow, register a version, and assign its alias.

``champion`` goes to a version only when its gate passed and it is at least as good as the
current champion on the recipe's primary metric; otherwise the version becomes ``challenger``.
Registering twice for the same pipeline run returns the version made the first time, and so does
registering the same bundle with the same recipe and evaluation again (a rerun whose steps all came
from the cache): the registry gets a version per distinct model, not one per run.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from ..bundle import read_json, read_meta
from ..model_source import DIGEST_TAG, file_manifest, manifest_digest, write_manifest
from ..recipe import Recipe
from ..registry import make_champion
from .evaluate import LOWER_IS_BETTER

log = logging.getLogger(__name__)
EVALUATION_TAG = "evaluation_sha256"  # on the registered version: the digest of the evaluation it was registered with


def git_commit() -> str:
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    root = os.environ.get("PLATFORM_ARTIFACT_ROOT")
    return client.create_experiment(name, artifact_location=f"{root.rstrip('/')}/{name}" if root else None)


def connect_tracking():
    """An MlflowClient whose server answered, after bounded retries; else one clear error."""
    import mlflow
    from mlflow import MlflowClient

    # MLflow's own defaults retry for minutes; a step should fail fast and say why.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("AWS_MAX_ATTEMPTS", "4")  # direct S3 artifact uploads: bounded, with backoff
    client = MlflowClient()
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # connection refused, DNS, TLS, auth: all mean "cannot register"
        raise ConnectionError(f"MLflow tracking server {mlflow.get_tracking_uri()} is unreachable "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "check MLFLOW_TRACKING_URI and that the server is up") from None
    return client


def trained_params(recipe: Recipe, meta) -> dict[str, str]:
    """The run's params as the model was trained: the recipe with the model params and train options
    the bundle records, which are the tune step's where it ran (train applied them)."""
    from ..models.tunable import with_values

    values = {"model": meta.params or {}, "train": meta.train_options or {}}
    return with_values(recipe, values).flat_params() if any(values.values()) else recipe.flat_params()


def _is_better(metric: str, new: float, old: float) -> bool:
    return new <= old if metric in LOWER_IS_BETTER else new >= old


def register(recipe: Recipe, model_path: str, eval_dir: str, pipeline_run_id: str = "",
             schema_path: str | None = None, data_report_path: str | None = None) -> dict:
    import mlflow
    from mlflow.exceptions import MlflowException

    client, name = connect_tracking(), recipe.registry.model_name
    evaluation = read_json(Path(eval_dir) / "evaluation.json")
    metrics, verdict, metric = evaluation["metrics"], evaluation["verdict"], recipe.primary_metric
    if pipeline_run_id:
        existing = client.search_model_versions(f"name='{name}' and tag.pipeline_run_id='{pipeline_run_id}'")
        if existing:
            log.info("pipeline run %s already registered %s version %s", pipeline_run_id, name, existing[0].version)
            return _registered_before(client, name, existing[0], evaluation, metric)

    meta = read_meta(model_path)
    manifest = file_manifest(model_path)  # what serving and init_from will accept as this version
    lineage = {"pipeline_run_id": pipeline_run_id, "recipe_hash": recipe.hash(), DIGEST_TAG: manifest_digest(manifest),
               EVALUATION_TAG: hashlib.sha256((Path(eval_dir) / "evaluation.json").read_bytes()).hexdigest(),
               "data_hash": meta.lineage.get("data_hash", ""), "git_commit": git_commit(),
               "gate": verdict, "model": meta.model_name}
    same = client.search_model_versions(" and ".join(
        [f"name='{name}'", *(f"tag.{k}='{lineage[k]}'" for k in ("recipe_hash", DIGEST_TAG, EVALUATION_TAG))]))
    if same:
        first = min(same, key=lambda v: int(v.version))
        log.info("%s version %s holds this bundle, recipe and evaluation already (a rerun from the cache); "
                 "nothing registered", name, first.version)
        return _registered_before(client, name, first, evaluation, metric)
    experiment_id = _experiment_id(client, recipe.experiment)
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=f"{recipe.name}-{pipeline_run_id[:12] or 'manual'}", tags=lineage) as run:
        mlflow.log_params(trained_params(recipe, meta))
        mlflow.log_metrics({**metrics, **{f"train_{k}": v for k, v in meta.train_metrics.items()}})
        _log_training_record(recipe, Path(model_path), meta, schema_path, data_report_path)
        try:
            mlflow.log_artifacts(eval_dir, "evaluation")
            mlflow.log_dict(recipe.model_dump(mode="json", by_alias=True), "recipe.json")
            # The bundle is already a complete pyfunc model (signature, input example): upload it as
            # it is, so the registered version is byte for byte what evaluate scored.
            logged = mlflow.initialize_logged_model(name="model", source_run_id=run.info.run_id, tags=lineage,
                                                    experiment_id=experiment_id)
            client.log_model_artifacts(logged.model_id, str(model_path))
            with tempfile.TemporaryDirectory() as tmp:  # the full manifest rides with the files it names
                client.log_model_artifact(logged.model_id, str(write_manifest(manifest, tmp)))
        except Exception as exc:  # object store down, credentials refused, proxy error: the run ends FAILED
            raise ConnectionError(
                f"uploading to MLflow's artifact store ({run.info.artifact_uri}) failed after retries "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); no model version was registered, "
                "so re-running this step is safe") from None
        mlflow.finalize_logged_model(logged.model_id, "READY")
        registered = mlflow.register_model(f"models:/{logged.model_id}", name,
                                           tags={**lineage, f"metric.{metric}": str(metrics[metric])})
    version = str(registered.version)

    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champion = None
    best = None
    if champion is not None:
        best = float(champion.tags.get(f"metric.{metric}") or client.get_run(champion.run_id).data.metrics[metric])
    wins = champion is None or _is_better(metric, metrics[metric], best)
    alias = "champion" if verdict == "passed" and wins else "challenger"
    if alias == "champion":
        make_champion(client, name, version)  # remembers the champion before it, for rollback
    else:
        client.set_registered_model_alias(name, alias, version)
        client.set_model_version_tag(name, version, "alias", alias)
    log.info("registered %s version %s as %s (%s %.5g; champion before: %s)", name, version, alias, metric,
             metrics[metric], "none" if champion is None else f"v{champion.version} {metric} {best:.5g}")
    _log_model_card(client, run.info.run_id, Path(eval_dir), Path(model_path), version, alias, metric,
                    metrics[metric], None if champion is None else (str(champion.version), best))
    return {"model_name": name, "version": version, "alias": alias, "model_uri": f"models:/{name}/{version}",
            "run_id": run.info.run_id, "gate": verdict, "metrics": metrics, "gate_rules": evaluation.get("gate", []),
            "primary_metric": metric,
            "champion_before": None if champion is None else {"version": str(champion.version), metric: best}}


def _registered_before(client, name: str, v, evaluation: dict, metric: str) -> dict:
    """What register returns for a version registered before: its alias now, and this evaluation."""
    aliases = client.get_model_version(name, v.version).aliases
    alias = next((a for a in ("champion", "challenger") if a in aliases), aliases[0] if aliases else "")
    return {"model_name": name, "version": str(v.version), "alias": alias, "model_uri": f"models:/{name}/{v.version}",
            "run_id": v.run_id, "gate": evaluation["verdict"], "metrics": evaluation["metrics"],
            "gate_rules": evaluation.get("gate", []), "primary_metric": metric, "champion_before": None,
            "registered_before": True}


def _log_model_card(client, run_id: str, eval_dir: Path, model_path: Path, version: str, alias: str, metric: str,
                    value: float, champion: tuple[str, float] | None) -> None:
    """The model card evaluate wrote, completed with the comparison only the registry can make."""
    from ..bundle import PAYLOAD
    from ..model_card import to_html, with_champion

    if not (eval_dir / "model_card.md").is_file():
        return
    outcome = ("it is the first version, so it became champion" if champion is None else
               f"the champion before was version {champion[0]} with {metric} {champion[1]:.4g}; "
               f"this version has {metric} {value:.4g} and became **{alias}**")
    card = with_champion((eval_dir / "model_card.md").read_text(), f"Version {version}: {outcome}.")
    client.log_text(run_id, card, "model_card.md")
    client.log_text(run_id, to_html(card, {"learning_curve.png": model_path / PAYLOAD / "learning_curve.png"}),
                    "model_card.html")


def _log_training_record(recipe: Recipe, model_path: Path, meta, schema_path: str | None,
                         data_report_path: str | None) -> None:
    """What MLflow users look for on a run: curves per epoch, the dataset, the data report, a description."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    from ..bundle import PAYLOAD
    from ..settings import redact_uri

    history = model_path / PAYLOAD / "history.json"
    for state in read_json(history) if history.is_file() else []:
        member = f"_member{state['member']}" if "member" in state else ""  # an ensemble: one curve per network
        mlflow.log_metrics({f"{k}{member}": float(v) for k, v in state.items()
                            if k not in ("epoch", "member") and isinstance(v, (int, float))}, step=int(state["epoch"]))
    schema = read_json(schema_path) if schema_path else {}
    source = redact_uri(schema.get("source") or recipe.data.uri)
    try:
        dataset_source = resolve_dataset_source(source)
    except mlflow.exceptions.MlflowException:  # MLflow resolves files, s3:// and http(s):// only (not redis://)
        from mlflow.data.code_dataset_source import CodeDatasetSource

        dataset_source = CodeDatasetSource(tags={"uri": source})
    mlflow.log_input(MetaDataset(dataset_source, name=recipe.name,
                                 digest=meta.lineage.get("data_hash") or None), context="training")
    for path, name in ((schema_path, "data/schema.json"), (data_report_path, "data/report.md")):
        if path and Path(path).is_file():
            mlflow.log_text(Path(path).read_text(), name)
    mlflow.set_tags({
        "mlflow.source.name": f"recipe {recipe.name}", "mlflow.source.type": "JOB",
        "mlflow.note.content": f"Recipe **{recipe.name}**: {recipe.task} of `{meta.target}` with "
                               f"`{meta.model_name}` on `{source}`, trained by kfp-ml-platform.",
    })
