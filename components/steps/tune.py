"""tune: search hyper-parameters with Optuna before train; train then fits the final model with the best values.

The study samples with a seeded TPE sampler and prunes with a median pruner on the validation loss,
which every adapter reports per epoch through its ``on_epoch`` callback (``trial.report`` /
``trial.should_prune``). The recipe's own values are enqueued as trial 0, so every study also
measures the starting point it is meant to beat. The search space is the model's catalog ranges
with the recipe's ``tune.space`` over them (``components/models/tunable.py``).

The study lives in a database that outlives the step: ``PLATFORM_TUNING_STORAGE`` (an RDB URL: a
cluster's trial workers share it), else ``<PLATFORM_HOME>/tuning/studies.db`` (sqlite). Its name is
the recipe's tune view and the train/val content, so a stopped study resumes: finished trials count
toward ``tune.trials``, and a trial a killed step left running is marked failed. Every trial is an
MLflow run nested under one "tune" run per study, with its values, its per-epoch validation loss
and the metric.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from .. import threads
from ..bundle import read_json
from ..errors import RecipeError
from ..models import build_adapter, code_is_pinned, get_entry
from ..models.tunable import Dimension, current_values, search_space, trial_values, with_values
from ..recipe import Recipe
from ..settings import platform_home, redact_uri
from ..storage import atomic_path, content_hash
from ..tasks import family_for
from .evaluate import LOWER_IS_BETTER, classification_metrics, regression_metrics
from .train import data_facts, encode_target, target_scaling

log = logging.getLogger(__name__)
STUDY_TAG = "platform.tune_study"


def direction_of(metric: str, given: str | None) -> str:
    """The study's direction: the metric's own; a contradicting ``tune.direction`` is refused."""
    natural = "minimize" if metric == "val_loss" or metric in LOWER_IS_BETTER else "maximize"
    if given not in (None, natural):
        better = "lower" if natural == "minimize" else "higher"
        raise RecipeError(f"tune.direction: {given!r} would search for the worst {metric}, which is better when "
                          f"{better}; leave direction unset or give {natural!r}")
    return natural


def storage_url() -> str:
    if os.environ.get("PLATFORM_TUNING_STORAGE"):
        return os.environ["PLATFORM_TUNING_STORAGE"]
    path = platform_home() / "tuning" / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def study_name(recipe: Recipe, train_path: str, val_path: str) -> str:
    """What the study searches: the data, the model, the space and what it is scored on. The budget
    (trials, timeout, workers) is left out, so ``--set tune.trials=40`` continues the same study."""
    options = family_for(recipe).options(recipe)
    identity = {"task": recipe.task, "data": recipe.data.model_dump(mode="json"),
                "preprocess": recipe.preprocess.model_dump(mode="json"),
                "model": recipe.model.model_dump(mode="json"),
                "train": recipe.train.model_dump(mode="json", exclude={"ensemble"}),  # trials fit one network
                "options": options.model_dump(mode="json") if options is not None else None,
                "tune": recipe.tune.model_dump(mode="json", exclude={"trials", "timeout_s", "workers"}),
                "content": content_hash([Path(train_path), Path(val_path)])}
    if not code_is_pinned(recipe.model.name, recipe.model.params):
        # code from a git branch that may move: the commit it names now (studies of pinned code keep their name)
        identity["source"] = get_entry(recipe.model.name).builder.source_version(recipe.model.params)
        log.warning("tuning %s at ref %r, now commit %s: pin model.params.ref to that commit so that every trial "
                    "worker and the train step after them use the same code", recipe.model.name,
                    recipe.model.params.get("ref", "HEAD"), identity["source"])
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return f"{recipe.name}-{digest}"


class TrialFitter:
    """Fits one model per trial on inputs prepared once (the feature transform is not searched)."""

    def __init__(self, recipe: Recipe, train_path: str, val_path: str, schema_path: str):
        schema = read_json(schema_path)
        train_df, val_df = pd.read_parquet(train_path), pd.read_parquet(val_path)
        self.recipe, self.family = recipe, family_for(recipe)
        self.n_classes = len(schema["classes"] or []) or None
        encoding = getattr(self._adapter(recipe), "categorical_encoding", "onehot")
        self.inputs = self.family.fit_inputs(recipe, schema, train_df, val_df, encoding)
        self.fit_params = data_facts(self.inputs, encoding)
        y = self.inputs.y_train
        self.meta = SimpleNamespace(task=recipe.task, classes=schema["classes"], **target_scaling(y, recipe.task))
        self.y_train, self.y_val = encode_target(y, self.meta), encode_target(self.inputs.y_val, self.meta)

    def _adapter(self, recipe: Recipe):
        return build_adapter(recipe.model.name, recipe.task, self.n_classes, recipe.model.params, recipe.family,
                             train=recipe.train, section=self.family.options(recipe))

    def fit(self, values: dict[str, dict[str, Any]], on_epoch):
        recipe = with_values(self.recipe, values)
        adapter = self._adapter(recipe)
        # Trials compare single networks (an ensemble's members would repeat each epoch for the pruner);
        # train fits the recipe's ensemble with the best values.
        single = recipe.train.model_copy(update={"ensemble": 1})
        adapter.fit(self.inputs.X_train, self.y_train, self.inputs.X_val, self.y_val, single, on_epoch,
                    **self.fit_params)
        return adapter

    def score(self, adapter, metric: str) -> float:
        if metric == "val_loss":
            return float(min(h["val_loss"] for h in adapter.history_))
        scores = adapter.predict_raw(self.inputs.X_val)
        if self.recipe.task == "regression":
            found = regression_metrics(self.y_val * self.meta.target_std + self.meta.target_mean,
                                       scores * self.meta.target_std + self.meta.target_mean)
        else:
            found = classification_metrics(self.y_val, scores, self.meta.classes)
        if metric not in found:
            raise RecipeError(f"tune.metric: {metric!r} cannot be computed on this validation split "
                              f"(it has {sorted(found)})")
        return float(found[metric])


class TrialRuns:
    """MLflow: one "tune" run per study (found again when the study resumes), a nested run per trial."""

    def __init__(self, recipe: Recipe, study: str, metric: str):
        from .register import _experiment_id, connect_tracking

        self.client, self.metric = connect_tracking(), metric
        self.experiment = _experiment_id(self.client, recipe.experiment)
        found = self.client.search_runs([self.experiment], f"tags.`{STUDY_TAG}` = '{study}'", max_results=1)
        if found:
            self.parent = found[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            self.parent = self.client.create_run(self.experiment, run_name="tune", tags={
                STUDY_TAG: study, "platform.model": recipe.model.name, "platform.metric": metric}).info.run_id

    def start(self, number: int, values: dict[str, dict[str, Any]]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment, run_name=f"trial-{number}", tags={
            "mlflow.parentRunId": self.parent, "platform.tune_trial": str(number)})
        params = [Param(f"{target}.{name}" if target == "train" else name, json.dumps(value))
                  for target, group in values.items() for name, value in group.items()]
        self.client.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    def epoch(self, run_id: str, state: dict[str, float]) -> None:
        self.client.log_metric(run_id, "val_loss", state["val_loss"], step=int(state["epoch"]))

    def end(self, run_id: str, outcome: str, value: float | None = None) -> None:
        if value is not None:
            self.client.log_metric(run_id, self.metric, value)
        self.client.set_tag(run_id, "platform.trial_state", outcome)
        self.client.set_terminated(run_id, "FINISHED" if outcome == "complete" else
                                   "KILLED" if outcome == "pruned" else "FAILED")

    def finish(self, best: dict[str, Any], metrics: dict[str, float]) -> None:
        for target, group in best["values"].items():
            for name, value in group.items():
                self.client.set_tag(self.parent, f"best.{name}", json.dumps(value))
        for name, value in metrics.items():
            self.client.log_metric(self.parent, name, value)
        self.client.set_terminated(self.parent, "FINISHED")


def tune(recipe: Recipe, train_path: str, val_path: str, schema_path: str, study_path: str | None = None,
         worker: int = 0) -> dict[str, Any]:
    """Run the study to ``tune.trials`` finished trials (or ``tune.timeout_s``); return the best values
    (``best``, and ``best_json`` for train), the study's ``metrics`` and its name. ``study_path``: a
    directory for study.json (every trial: number, state, values, value)."""
    import optuna
    from optuna.trial import TrialState

    spec = recipe.tune
    direction = direction_of(spec.metric, spec.direction)
    space = search_space(recipe, family_for(recipe).options(recipe))
    name, url = study_name(recipe, train_path, val_path), storage_url()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # heartbeats are "experimental" in optuna 4 and 5; they fail dead workers' trials
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)
    study = optuna.create_study(
        study_name=name, storage=storage, direction=direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=spec.seed + worker,
                                           n_startup_trials=max(3, min(10, spec.trials // 2))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=spec.prune_startup_trials,
                                           n_warmup_steps=spec.prune_warmup_epochs)
        if spec.prune else optuna.pruners.NopPruner())
    if spec.workers == 1:  # no other worker: a trial still running was left by a stopped step
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.warning("trial %d was left running by a stopped step; marked failed", stale.number)
            study.tell(stale.number, state=TrialState.FAIL)
    if not study.trials:
        study.enqueue_trial(current_values(recipe, space), user_attrs={"recipe_values": True}, skip_if_exists=True)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    done = len(study.get_trials(deepcopy=False, states=finished))
    log.info("study %s in %s: %s %s over %s; %d of %d trials finished", name, redact_uri(url), direction,
             spec.metric, sorted(space), done, spec.trials)

    fitter, runs = TrialFitter(recipe, train_path, val_path, schema_path), TrialRuns(recipe, name, spec.metric)
    threads.configure(recipe.train.threads)
    sign = 1.0 if direction == "minimize" else -1.0  # reported losses are better when lower for a minimizing study

    def objective(trial) -> float:
        values = trial_values(space, trial)
        trial.set_user_attr("values", values)
        run_id, started = runs.start(trial.number, values), time.perf_counter()

        def on_epoch(state: dict) -> None:
            runs.epoch(run_id, state)
            trial.report(sign * state["val_loss"], int(state["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {state['epoch']}: val_loss {state['val_loss']:.5g} trails the median")

        try:
            value = fitter.score(fitter.fit(values, on_epoch), spec.metric)
        except optuna.TrialPruned:
            log.info("trial %d pruned: %s", trial.number, _shown(values))
            runs.end(run_id, "pruned")
            raise
        except BaseException:
            runs.end(run_id, "failed")
            raise
        runs.end(run_id, "complete" if np.isfinite(value) else "failed", value if np.isfinite(value) else None)
        log.info("trial %d: %s %.5g in %.1f s  %s", trial.number, spec.metric, value, time.perf_counter() - started,
                 _shown(values))
        return value

    if done < spec.trials:
        study.optimize(objective, timeout=spec.timeout_s,
                       callbacks=[optuna.study.MaxTrialsCallback(spec.trials, states=finished)])
    return _result(study, space, spec.metric, direction, runs, study_path, url)


def _shown(values: dict[str, dict[str, Any]]) -> str:
    return "  ".join(f"{k}={json.dumps(v)}" for group in values.values() for k, v in group.items())


def _result(study, space: dict[str, Dimension], metric: str, direction: str, runs: TrialRuns,
            study_path: str | None, url: str) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == getattr(TrialState, state.upper()) for t in trials)
              for state in ("complete", "pruned", "fail")}
    if not counts["complete"]:
        raise RuntimeError(f"tune: no trial of study {study.study_name} completed ({counts['pruned']} pruned, "
                           f"{counts['fail']} failed); see the step's log")
    best = study.best_trial
    values = best.user_attrs["values"]
    metrics = {f"best_{metric}": float(best.value), "best_trial": float(best.number),
               "trials_complete": float(counts["complete"]), "trials_pruned": float(counts["pruned"]),
               "trials_failed": float(counts["fail"])}
    start = next((t for t in trials if t.user_attrs.get("recipe_values") and t.state == TrialState.COMPLETE), None)
    if start is not None:  # the recipe's own values, enqueued as trial 0
        metrics[f"recipe_{metric}"] = float(start.value)
    runs.finish({"values": values}, metrics)
    log.info("best trial %d: %s %.5g (%s)%s", best.number, metric, best.value, _shown(values),
             f"; the recipe's values gave {start.value:.5g}" if start is not None else "")
    if study_path:
        record = {"study": study.study_name, "storage": redact_uri(url), "metric": metric, "direction": direction,
                  "space": {n: d.range.model_dump() for n, d in space.items()}, "best_trial": best.number,
                  "trials": [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
                              "values": t.user_attrs.get("values"), "epochs": len(t.intermediate_values)}
                             for t in trials]}
        with atomic_path(study_path) as out:
            out.mkdir(parents=True, exist_ok=True)
            (out / "study.json").write_text(json.dumps(record, indent=1))
    return {"best": values, "best_json": json.dumps(values, sort_keys=True), "metrics": metrics,
            "study": study.study_name}
