"""Options every PyTorch model gets: determinism, checkpoints, fine-tuning, class imbalance."""
import numpy as np
import pandas as pd
import pytest
import torch

from components.bundle import load_bundle
from components.models import build_adapter
from components.recipe import RecipeError, TrainSpec
from tests.conftest import make_recipe, run_steps


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    return X, (X[:, 0] + 0.5 * X[:, 1] > 1.0).astype(int)  # ~20 % positives


def fit(spec, **params):
    X, y = data()
    return build_adapter("mlp", "classification", 2, {"hidden_sizes": [16], **params}).fit(X, y, X, y, spec, None)


def test_same_seed_same_model():
    spec = TrainSpec(epochs=3, batch_size=32, seed=5, deterministic=True)
    a, b = fit(spec), fit(spec)
    for pa, pb in zip(a.net_.parameters(), b.net_.parameters()):
        assert torch.equal(pa, pb)
    c = fit(spec.model_copy(update={"seed": 6}))
    assert not torch.equal(next(a.net_.parameters()), next(c.net_.parameters()))


def test_best_epoch_checkpoint_is_written(tmp_path):
    ckpt = tmp_path / "ckpt" / "best.pt"
    adapter = fit(TrainSpec(epochs=4, batch_size=32, checkpoint_path=str(ckpt)))
    saved = torch.load(ckpt, weights_only=True)
    best = min(adapter.history_, key=lambda h: h["val_loss"])
    assert saved["epoch"] == best["epoch"] and saved["val_loss"] == pytest.approx(best["val_loss"])
    for name, value in adapter.net_.state_dict().items():
        assert torch.equal(saved["state_dict"][name].cpu(), value), "restored weights are the checkpoint's"


def lr_trace(steps_per_epoch=4, **options):
    """The learning rate of every batch of a TrainSpec's schedule (the plateau scheduler is not stepped)."""
    from components.models.torch_training import make_schedulers

    spec = TrainSpec(learning_rate=0.1, **options)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=spec.learning_rate)
    per_batch, plateau = make_schedulers(opt, spec, steps_per_epoch)
    trace = []
    for _ in range(spec.epochs * steps_per_epoch):
        trace.append(opt.param_groups[0]["lr"])
        opt.step()
        if per_batch is not None:
            per_batch.step()
    return trace, plateau


def test_cosine_schedule_with_linear_warmup():
    trace, plateau = lr_trace(epochs=5, scheduler="cosine", warmup_epochs=2)
    assert plateau is None
    assert trace[0] == pytest.approx(0.001) and trace[8] == pytest.approx(0.1), "warm-up: 1/100 → lr over 8 batches"
    assert all(a < b for a, b in zip(trace[:8], trace[1:9])), "rising during the warm-up"
    assert all(a > b for a, b in zip(trace[8:], trace[9:])), "falling after it"
    assert trace[8 + 6] == pytest.approx(0.05), "half-way through the 12 cosine batches: half the rate"
    assert trace[-1] < 0.002
    trace, _ = lr_trace(epochs=5, scheduler="cosine")
    assert trace[0] == 0.1 and trace[10] == pytest.approx(0.05) and trace[-1] < 0.001


def test_none_and_plateau_are_unchanged_without_warmup_and_hold_after_it():
    assert lr_trace(epochs=3, scheduler="none") == ([0.1] * 12, None)
    trace, plateau = lr_trace(epochs=3, scheduler="plateau")
    assert trace == [0.1] * 12 and isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)
    trace, _ = lr_trace(epochs=3, scheduler="none", warmup_epochs=1)
    assert trace[0] == pytest.approx(0.001) and trace[4:] == [0.1] * 8


def test_plateau_reductions_after_warmup_hold_and_warmup_must_fit_the_epochs():
    from components.models.torch_training import make_schedulers

    spec = TrainSpec(epochs=6, learning_rate=0.1, scheduler="plateau", warmup_epochs=1, early_stopping_patience=3)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=spec.learning_rate)
    per_batch, plateau = make_schedulers(opt, spec, steps_per_epoch=2)
    for epoch in range(1, 7):
        for _ in range(2):
            opt.step()
            per_batch.step()
        plateau.step(1.0)  # never improves: halved after patience 2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(RecipeError, match=r"train: warmup_epochs \(5\) must be less than epochs \(5\)"):
        make_recipe(train={"epochs": 5, "warmup_epochs": 5})
    with pytest.raises(RecipeError, match=r"train\.scheduler: Input should be 'plateau', 'none' or 'cosine'"):
        make_recipe(train={"scheduler": "linear"})


def test_cosine_schedule_trains_through_the_loop():
    model = fit(TrainSpec(epochs=4, batch_size=50, learning_rate=0.01, scheduler="cosine", warmup_epochs=1))
    lrs = [h["lr"] for h in model.history_]  # the rate after each epoch's last batch
    assert lrs[0] == pytest.approx(0.01) and lrs[1] < lrs[0] and lrs[-1] < 1e-4, lrs
    assert model.history_[-1]["val_loss"] < model.history_[0]["val_loss"]


def test_pos_weight_global_and_soft_f1_raise_recall():
    """Each option on its own moves the decision towards the rare positives (a model whose options
    did nothing would equal the plain one, and fail here)."""
    X, y = data()

    def recall(**options):
        model = fit(TrainSpec(epochs=15, batch_size=32, learning_rate=0.003, **options))
        return ((model.predict_raw(X)[:, 1] > 0.5) & (y == 1)).sum() / y.sum()

    plain = recall()
    assert plain < 0.6, "the plain model misses many of the ~20 % positives (else nothing can be shown)"
    assert recall(pos_weight="global") > plain + 0.3
    assert recall(loss="bce_soft_f1", soft_f1_alpha=0.5) > plain + 0.3
    assert recall(pos_weight="global", loss="bce_soft_f1", soft_f1_alpha=0.5) > plain + 0.3


def test_pos_weight_global_is_negatives_over_positives():
    from components.models.torch_training import make_loss

    y = np.array([0, 0, 0, 1])
    loss = make_loss("classification", 1, y, TrainSpec(pos_weight="global"), "cpu")
    assert loss.pos_weight.item() == pytest.approx(3.0)
    assert make_loss("classification", 1, y, TrainSpec(pos_weight=2.5), "cpu").pos_weight.item() == 2.5
    assert make_loss("classification", 1, y, TrainSpec(), "cpu").pos_weight is None


def test_fine_tune_from_a_bundle_and_refuse_mismatched_weights(tmp_path):
    recipe = make_recipe(train={"epochs": 6})
    first = run_steps(recipe, tmp_path / "a")
    tuned = make_recipe(train={"epochs": 1, "init_from": str(first["model"]), "learning_rate": 1e-6})
    p = run_steps(tuned, tmp_path / "b")
    a, b = load_bundle(first["model"]), load_bundle(p["model"])
    for pa, pb in zip(a.adapter.net_.parameters(), b.adapter.net_.parameters()):
        assert torch.allclose(pa, pb, atol=1e-3), "a tiny learning rate keeps the loaded weights"
    wrong = make_recipe(train={"epochs": 1, "init_from": str(first["model"])}, model={"params": {"hidden_sizes": [7]}})
    with pytest.raises(ValueError, match="do not fit this network"):
        run_steps(wrong, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="no weights at"):
        run_steps(make_recipe(train={"epochs": 1, "init_from": str(tmp_path / "nothing.pt")}), tmp_path / "d")


def test_ft_transformer_tokens_numeric_and_categorical(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "green", "blue"], n)})
    df["y"] = df["x"] * 2 + df["colour"].map({"red": 3.0, "green": 0.0, "blue": -3.0}) + rng.normal(0, 0.1, n)
    df.to_csv(tmp_path / "t.csv", index=False)
    recipe = make_recipe(data={"uri": str(tmp_path / "t.csv"), "target": "y", "sample_rows": None},
                         model={"name": "ft_transformer", "params": {"d_token": 16, "n_blocks": 1, "n_heads": 2}},
                         train={"epochs": 30, "learning_rate": 0.003, "batch_size": 32})
    p = run_steps(recipe, tmp_path / "out")
    bundle = load_bundle(p["model"])
    assert bundle.adapter.cat_cardinalities_ == [4], "3 colours + unknown"
    assert "cat_cardinalities" not in bundle.meta.params, "data facts are not model params"
    rows = pd.DataFrame({"x": [0.0, 0.0, 0.0], "colour": ["red", "blue", "purple"]})
    pred = bundle.predict(rows)
    assert pred[0] - pred[1] > 3, "the colour token carries its effect"
    assert np.isfinite(pred[2]), "an unseen category maps to the unknown token"
    from components.tasks.tabular import coerce_features

    reference = bundle.transform.transform(coerce_features(rows, bundle.meta.features))
    np.testing.assert_array_equal(bundle.features(rows), reference.astype(np.float32))


@pytest.mark.parametrize("name,params", [
    ("mlp", {"hidden_sizes": [16], "num_embeddings": "periodic", "d_embedding": 4, "n_frequencies": 6}),
    ("ft_transformer", {"d_token": 16, "n_blocks": 1, "n_heads": 2, "num_embeddings": "periodic", "n_frequencies": 6}),
])
def test_periodic_embeddings_train_and_serve_through_the_bundle(tmp_path, name, params):
    """MLP-PLR / FT-Transformer-PLR: the option trains, rides in the bundle and predicts from raw records
    (what evaluate and the model server call); the embedding's weights are in the saved network."""
    p = run_steps(make_recipe(model={"name": name, "params": params}, train={"epochs": 3}), tmp_path)
    bundle = load_bundle(p["model"])
    assert bundle.meta.params["num_embeddings"] == "periodic"
    assert any("frequencies" in key for key in bundle.adapter.net_.state_dict())
    rows = pd.read_parquet(p["test.parquet"]).head(5).drop(columns="MedHouseVal")
    pred = bundle.predict(rows)
    assert pred.shape == (5,) and np.isfinite(pred).all()
    np.testing.assert_allclose(load_bundle(p["model"]).predict(rows), pred, rtol=1e-6)


@pytest.mark.parametrize("name,params", [("mlp", {"hidden_sizes": [8]}),
                                         ("ft_transformer", {"d_token": 16, "n_blocks": 1, "n_heads": 2})])
def test_bundles_from_before_numeric_embeddings_still_load(tmp_path, name, params):
    """A config.json written before num_embeddings existed (no such keys) loads as the plain model."""
    import json

    from components.models import load_adapter

    X, y = data()
    adapter = build_adapter(name, "regression", None, params).fit(X, y.astype(np.float32), X, y, TrainSpec(epochs=1),
                                                                 None)
    adapter.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["params"] = params  # what an older version wrote: only the params it knew
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    np.testing.assert_allclose(load_adapter(name, tmp_path / "m").predict_raw(X), adapter.predict_raw(X), rtol=1e-6)


def test_ft_transformer_residual_dropout_acts_in_training_only():
    """residual_dropout (Gorishniy et al. 2021's tuned option; 0 by default, as before) drops units of each
    block's attention and feed-forward outputs while training; evaluation is deterministic and the weights are
    the same as without it, so bundles from before load unchanged (the test above)."""
    from components.models.torch_nets import FTTransformer

    kwargs = dict(n_num=4, cat_cardinalities=[], n_out=1, d_token=16, n_blocks=2, n_heads=2, attention_dropout=0.0,
                  ffn_dropout=0.0, ffn_factor=4 / 3)
    torch.manual_seed(0)
    plain = FTTransformer(**kwargs)
    dropped = FTTransformer(**kwargs, residual_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(8, 4)
    plain.train(), dropped.train()
    assert torch.equal(plain(x), plain(x)), "no residual dropout: nothing random without the other dropouts"
    assert not torch.equal(dropped(x), dropped(x))
    assert torch.equal(dropped.eval()(x), plain.eval()(x))
    with pytest.raises(Exception, match="residual_dropout"):
        build_adapter("ft_transformer", "regression", None, {"residual_dropout": 1.0})


def test_an_ensemble_is_its_members_averaged_and_each_member_is_the_network_its_seed_gives(tmp_path):
    """train.ensemble: 3 trains the networks seeds 5, 6 and 7 would give alone (same weights, bit for bit),
    each with its own checkpoint, and predicts the mean of their class probabilities."""
    ckpt = tmp_path / "best.pt"
    spec = TrainSpec(epochs=3, batch_size=32, seed=5, deterministic=True, ensemble=3, checkpoint_path=str(ckpt))
    ensemble = fit(spec)
    assert len(ensemble.net_) == 3 and ensemble.members_ == 3
    X, _ = data()
    alone = [fit(TrainSpec(epochs=3, batch_size=32, seed=5 + k, deterministic=True)) for k in range(3)]
    for member, single in zip(ensemble.net_, alone):
        for pa, pb in zip(member.parameters(), single.net_.parameters()):
            assert torch.equal(pa, pb)
    probs = ensemble.predict_raw(X)
    np.testing.assert_allclose(probs, np.mean([a.predict_raw(X) for a in alone], axis=0), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert [(h["member"], h["epoch"]) for h in ensemble.history_] == [(m, e) for m in (1, 2, 3) for e in (1, 2, 3)]
    for k in (1, 2, 3):
        saved = torch.load(tmp_path / f"best.member{k}.pt", weights_only=True)
        for name, value in ensemble.net_[k - 1].state_dict().items():
            assert torch.equal(saved["state_dict"][name], value), f"member {k}'s checkpoint holds its best weights"
    assert not ckpt.exists(), "an ensemble writes one checkpoint per member, none under the plain name"


def test_an_ensemble_bundle_trains_through_the_steps_and_predicts_the_same_after_loading(tmp_path):
    """Through train and evaluate: the epoch log names each member, the train metrics name the best member,
    the learning curve draws each member, and the bundle (one model.pt) reloads to the same predictions."""
    import json
    import logging

    recipe = make_recipe(train={"epochs": 2, "ensemble": 2})
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("components.steps.train").addHandler(handler)
    logging.getLogger("components.steps.train").setLevel(logging.INFO)
    try:
        p = run_steps(recipe, tmp_path)
    finally:
        logging.getLogger("components.steps.train").removeHandler(handler)
    lines = [r.getMessage() for r in records]
    assert any(line.startswith("member 2/2  epoch 2/2  train_loss=") for line in lines), lines
    bundle = load_bundle(p["model"])
    assert bundle.adapter.members_ == 2 and bundle.meta.train_options["ensemble"] == 2
    assert bundle.meta.train_metrics["ensemble_members"] == 2 and bundle.meta.train_metrics["epochs_run"] == 4
    assert bundle.meta.train_metrics["best_member"] in (1, 2)
    val = pd.read_parquet(p["val.parquet"])
    val_mse = np.mean((bundle.predict(val.drop(columns="MedHouseVal")) - val["MedHouseVal"].to_numpy()) ** 2)
    assert bundle.meta.train_metrics["ensemble_val_loss"] == pytest.approx(val_mse / bundle.meta.target_std ** 2,
                                                                           rel=1e-4), "the averaged prediction's loss"
    from components.bundle import PAYLOAD

    history = json.loads((p["model"] / PAYLOAD / "history.json").read_text())
    assert {h["member"] for h in history} == {1, 2}
    rows = pd.read_parquet(p["test.parquet"]).head(7).drop(columns="MedHouseVal")
    pred = bundle.predict(rows)
    members = [m(torch.from_numpy(bundle.features(rows))).squeeze(-1).detach().numpy() for m in bundle.adapter.net_]
    expected = np.mean(members, axis=0) * bundle.meta.target_std + bundle.meta.target_mean
    np.testing.assert_allclose(pred, expected, rtol=1e-5)
    np.testing.assert_allclose(load_bundle(p["model"]).predict(rows), pred, rtol=1e-6)


def test_models_with_their_own_trainer_refuse_an_ensemble():
    with pytest.raises(RecipeError, match=r"train.ensemble: the 'ensemble' option of hist_gradient_boosting must be "
                                          r"left at its default 1"):
        build_adapter("hist_gradient_boosting", "regression", train=TrainSpec(ensemble=3))
    build_adapter("lstm", "regression", family="timeseries", train=TrainSpec(ensemble=3))  # any torch loop takes it
    with pytest.raises(ValueError, match="ensemble"):
        TrainSpec(ensemble=0)


def test_fine_tuning_an_ensemble_starts_each_member_from_its_own_weights(tmp_path):
    """The next run after an ensemble: fine-tuning it takes the same number of members, member k from member
    k's weights; another count is refused naming both; one network's weights start every member."""
    recipe = make_recipe(train={"epochs": 2, "ensemble": 2})
    first = run_steps(recipe, tmp_path / "a")
    tuned = run_steps(make_recipe(train={"epochs": 1, "ensemble": 2, "init_from": str(first["model"]),
                                         "learning_rate": 1e-6}), tmp_path / "b")
    a, b = load_bundle(first["model"]).adapter.net_, load_bundle(tuned["model"]).adapter.net_
    for k in (0, 1):
        for pa, pb in zip(a[k].parameters(), b[k].parameters()):
            assert torch.allclose(pa, pb, atol=1e-3), f"member {k} starts from member {k}'s weights"
    with pytest.raises(ValueError, match=r"holds an ensemble of 2 networks; fine-tuning it takes train.ensemble: 2 "
                                         r"\(one member from each\), this recipe has 3"):
        run_steps(make_recipe(train={"epochs": 1, "ensemble": 3, "init_from": str(first["model"])}), tmp_path / "c")
    with pytest.raises(ValueError, match="this recipe has 1"):
        run_steps(make_recipe(train={"epochs": 1, "init_from": str(first["model"])}), tmp_path / "d")
    single = run_steps(make_recipe(train={"epochs": 1}), tmp_path / "e")
    both = run_steps(make_recipe(train={"epochs": 1, "ensemble": 2, "init_from": str(single["model"]),
                                        "learning_rate": 1e-6}), tmp_path / "f")
    one, pair = load_bundle(single["model"]).adapter.net_, load_bundle(both["model"]).adapter.net_
    for member in pair:
        for pa, pb in zip(one.parameters(), member.parameters()):
            assert torch.allclose(pa, pb, atol=1e-3), "one network's weights start every member"


def test_the_local_progress_bar_counts_every_members_epochs(tmp_path):
    """The train step's log lines drive submit's progress bar: an ensemble's members fill one bar of
    members x epochs instead of restarting it for each member."""
    import io

    from pipelines.local_run import Console

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    console = Console(tmp_path, Terminal())
    console.task, console.log = "train-model", io.StringIO()
    console.write("INFO member 1/3  epoch 4/10  train_loss=0.5\n")
    assert (console.bar.total, console.bar.n) == (30, 4)
    console.write("INFO member 2/3  epoch 1/10  train_loss=0.5\n")
    assert console.bar.n == 11
    plain = Console(tmp_path / "plain", Terminal())
    plain.task, plain.log = "train-model", io.StringIO()
    plain.write("INFO epoch 3/8  train_loss=0.5\n")
    assert (plain.bar.total, plain.bar.n) == (8, 3)
