"""Text generation: the textgen family (requests and their generation parameters, the corpus) and the
byte-level GPT-2 adapter (fit, perplexity, greedy generation that survives save/load, served answers)."""
import asyncio

import pandas as pd
import pytest

from components.errors import DataError, InvalidInputError, RequestTooLarge
from components.recipe import Recipe, RecipeError, TrainSpec
from components.tasks import family, family_for
from components.tasks.textgen import GenerationRequest
from tests.conftest import DATA, ROOT

RECIPE = ROOT / "pipelines" / "recipes" / "debian-gpt2.yaml"
META = type("Meta", (), {"features": [{"name": "text", "kind": "text"}]})()


class Inp:
    def __init__(self, name, datatype, data, parameters=None):
        self.name, self.datatype, self.data, self.parameters = name, datatype, data, parameters


class Req:
    def __init__(self, inputs, parameters=None):
        self.inputs, self.parameters = inputs, parameters


def test_the_recipe_selects_the_textgen_family_and_its_metrics():
    from components.check import check

    recipe = Recipe.from_file(RECIPE)
    check(recipe)
    assert family_for(recipe).name == "textgen" and recipe.primary_metric == "perplexity"
    assert family_for(recipe).stacks_rows is False
    with pytest.raises(RecipeError, match="generation reports no metric 'accuracy'"):
        check(Recipe.from_file(RECIPE, ["evaluate.gate=['accuracy >= 0.5']"]))
    with pytest.raises(RecipeError, match="textgen recipes have task 'generation'"):
        Recipe.from_file(RECIPE, ["task=classification"])
    with pytest.raises(RecipeError, match="textgen data splits with method 'random', not 'group'"):
        Recipe.from_file(RECIPE, ["split.method=group", "split.group_column=text"])
    from components.steps.evaluate import LOWER_IS_BETTER

    assert {"perplexity", "loss"} <= LOWER_IS_BETTER


def test_v1_instances_are_prompts_with_checked_parameters():
    fam = family("textgen")
    got = fam.v1_records(META, ["a game", {"prompt": "a font", "max_new_tokens": 5, "temperature": 0,
                                           "top_k": 0, "top_p": 0.9, "seed": 3}])
    assert got == [GenerationRequest("a game"),
                   GenerationRequest("a font", max_new_tokens=5, temperature=0.0, top_k=0, top_p=0.9, seed=3)]
    assert fam.model_inputs(META, None, got) == got


@pytest.mark.parametrize("instance,match", [
    ({"prompt": "x", "max_new_tokens": 0}, r"instance 0: max_new_tokens is 0; expected an integer from 1 to 256"),
    ({"prompt": "x", "max_new_tokens": 1000}, r"max_new_tokens is 1000; expected an integer from 1 to 256"),
    ({"prompt": "x", "max_new_tokens": 2.5}, r"max_new_tokens is 2.5 \(float\); expected an integer"),
    ({"prompt": "x", "temperature": "hot"}, r"temperature is 'hot' \(str\); expected a number from 0"),
    ({"prompt": "x", "temperature": -1}, r"temperature is -1; expected a number from 0 \(greedy\) to 10"),
    ({"prompt": "x", "top_k": True}, r"top_k is True \(bool\); expected an integer >= 0"),
    ({"prompt": "x", "top_p": 0}, r"top_p is 0; expected a number in \(0, 1\]"),
    ({"prompt": "x", "top_p": 1.5}, r"top_p is 1.5; expected a number in \(0, 1\]"),
    ({"prompt": "x", "beams": 4}, r"unknown field\(s\) \['beams'\]; expected prompt and optionally max_new_tokens"),
    ({"prompt": "  "}, r"prompt is empty; expected a non-empty string"),
    ({"text": "x"}, r"unknown field\(s\) \['text'\]"),
    (7, r"instance 0 is int; expected a prompt string"),
])
def test_bad_generation_requests_are_400s_naming_what_is_wrong(instance, match):
    with pytest.raises(InvalidInputError, match=match):
        family("textgen").v1_records(META, [instance])


def test_v2_reads_one_bytes_prompt_input_and_the_request_parameters():
    fam = family("textgen")
    got = fam.v2_request_records(META, Req([Inp("prompt", "BYTES", [b"a game", "a font"])],
                                           {"max_new_tokens": 4, "temperature": 0.0, "binary_data_size": 3}))
    assert got == [GenerationRequest("a game", 4, 0.0), GenerationRequest("a font", 4, 0.0)]
    # the input's own parameters win over the request's
    got = fam.v2_request_records(META, Req([Inp("prompt", "BYTES", ["x"], {"top_k": 5})], {"top_k": 9}))
    assert got[0].top_k == 5
    with pytest.raises(InvalidInputError, match="top_p is 2; expected a number in"):
        fam.v2_request_records(META, Req([Inp("prompt", "BYTES", ["x"])], {"top_p": 2}))
    with pytest.raises(InvalidInputError, match="expected one BYTES input of shape \\[n\\] holding prompts"):
        fam.v2_request_records(META, Req([Inp("prompt", "FP32", [1.0])]))
    with pytest.raises(RequestTooLarge, match="17 prompts in one request; at most 16"):
        fam.bound(["x"] * 17)


def test_the_corpus_is_a_text_column_or_text_lines(tmp_path):
    fam = family("textgen")
    (tmp_path / "corpus.txt").write_text("first line\n\n  \nsecond line\nfirst line\nthird\n")
    recipe = Recipe.from_file(RECIPE, [f"data.uri={tmp_path / 'corpus.txt'}"])
    raw, info = fam.read(recipe)
    assert raw["text"].tolist() == ["first line", "second line", "first line", "third"] and info["data_hash"]
    df, schema = fam.clean(raw, recipe, {})
    assert df["text"].tolist() == ["first line", "second line", "third"]
    assert schema["rows"] == {"empty_dropped": 0, "duplicates_dropped": 1} and schema["classes"] is None
    with pytest.raises(DataError, match="text column 'body' not found"):
        fam.clean(raw, Recipe.from_file(RECIPE, ["textgen.text_column=body"]), {})
    csv, _ = fam.read(Recipe.from_file(RECIPE))
    assert len(fam.clean(csv, Recipe.from_file(RECIPE), {})[0]) > 400
    example = fam.input_example(META, ["Unicode Sinhala font by Lanka", {"prompt": "a b"}])
    assert example.to_dict("list") == {"prompt": ["Unicode Sinhala font", "a b"]}


@pytest.mark.slow
def test_gpt2_tiny_round_trip_perplexity_and_served_answers(tmp_path):
    from kserve import InferInput, InferRequest

    from components.bundle import Bundle, BundleMeta, load_bundle
    from components.models import build_adapter, load_adapter
    from serving.predictor import BundlePredictor

    texts = pd.read_csv(DATA / "text" / "debian_packages.csv")["text"].tolist()
    spec = TrainSpec(epochs=1, batch_size=16, learning_rate=3e-3)
    adapter = build_adapter("hf:gpt2-tiny", "generation", None, {"block_size": 32}, "textgen", train=spec)
    states = []
    adapter.fit(texts[:50], texts[:50], texts[50:60], texts[50:60], spec, states.append)
    assert len(states) == 1 and states[0]["val_loss"] > 0 and adapter.history_ == states
    scores = adapter.language_metrics(texts[60:70])
    assert 1 < scores["perplexity"] < 257 and scores["perplexity"] == pytest.approx(2.718281828 ** scores["loss"])
    greedy = {"prompt": "a font", "max_new_tokens": 12, "temperature": 0.0}
    out = adapter.predict_raw([greedy])
    assert out[0]["generated_text"].startswith("a font") and 0 <= out[0]["tokens"] <= 12
    adapter.save(tmp_path / "m")
    again = load_adapter("hf:gpt2-tiny", tmp_path / "m")
    assert again.predict_raw([greedy]) == out, "greedy generation is the same after reload"
    assert again.language_metrics(texts[60:70])["loss"] == pytest.approx(scores["loss"], rel=1e-5)
    with pytest.raises(RecipeError, match="block_size 512 of hf:gpt2-tiny must be from 2 to the model's n_positions"):
        build_adapter("hf:gpt2-tiny", "generation", None, {"block_size": 512}, "textgen")

    # The bundle and the predictor: V1 and V2 answers with generated text, token counts and timings.
    meta = BundleMeta(task="generation", family="textgen", target="text", model_name="hf:gpt2-tiny",
                      framework="transformers", params=adapter.get_params(),
                      features=[{"name": "text", "kind": "text"}], textgen={"text_column": "text", "block_size": 32})
    Bundle(meta, None, adapter).save(tmp_path / "bundle", input_example=texts[60:62])
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.predict([greedy]) == out
    assert list(bundle.predict_frame(pd.DataFrame({"prompt": ["a"]})).columns) == ["generated_text", "tokens"]
    predictor = BundlePredictor("gpt", str(tmp_path / "bundle"))
    predictor.load()

    async def ask(payload):
        request = predictor.preprocess(payload)
        return predictor.postprocess(await predictor.predict(request))

    v1 = asyncio.run(ask({"instances": [greedy, "a game"]}))
    assert v1["predictions"][0] == out[0] and set(v1["predictions"][1]) == {"generated_text", "tokens"}
    assert set(v1["timings_ms"]) == {"preprocess", "inference", "postprocess"}
    v2_request = InferRequest("gpt", [InferInput("prompt", [1], "BYTES", ["a font"])],
                              parameters={"max_new_tokens": 12, "temperature": 0.0})
    v2 = asyncio.run(ask(v2_request))
    outputs = {o.name: o for o in v2.outputs}
    assert outputs["generated_text"].data == [out[0]["generated_text"]] and outputs["tokens"].data == [out[0]["tokens"]]
    assert "inference_ms" in v2.parameters
    assert [o["name"] for o in predictor.get_output_types()] == ["generated_text", "tokens"]
