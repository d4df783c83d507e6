"""Hugging Face causal language models (GPT-2 from its config) for the text-generation task.

Offline by construction: the net is built from a small GPT-2 config with random weights, and texts
are tokenised as UTF-8 bytes (ids 0-255, 256 marks a text's start and end and pads), so there is no
tokenizer file to fetch and any text round-trips exactly. Training runs through
``transformers.Trainer`` (``hf_models.train_with_trainer``, as the classifiers do): each text is one
sequence ``<s> bytes <s>`` cut at ``block_size`` tokens. ``predict_raw`` continues prompts with
``model.generate`` (temperature 0: greedy, deterministic); ``language_metrics`` scores texts
(mean token negative log-likelihood and its exp, the perplexity).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from .hf_models import train_with_trainer
from .params import Params
from .registry import TRAINER_OPTIONS, Adapter, register_adapter

BOUNDARY = 256  # start/end of a text, and padding
VOCAB = 257
# How a prompt is continued unless the request says otherwise (the textgen family's request defaults).
GENERATION_DEFAULTS: dict[str, Any] = {"max_new_tokens": 20, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
                                       "seed": None}


class CausalParams(Params):
    hub_id: str
    config: dict = {}       # GPT-2 config overrides (n_layer, n_embd, n_head, n_positions, ...)
    block_size: int = 64    # tokens per training sequence (the recipe's textgen.block_size)


def encode(text: str, limit: int) -> list[int]:
    """``<s> bytes <s>`` cut at ``limit`` tokens."""
    return ([BOUNDARY, *text.encode("utf-8"), BOUNDARY])[:limit]


def decode(ids) -> str:
    return bytes(int(i) for i in ids if int(i) < BOUNDARY).decode("utf-8", errors="replace")


def _collate(samples: list[dict]) -> dict:
    """Right-padded ids, attention mask, and labels that ignore the padding (-100)."""
    import torch

    width = max(len(s["input_ids"]) for s in samples)
    ids = torch.full((len(samples), width), BOUNDARY, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, s in enumerate(samples):
        ids[row, :len(s["input_ids"])] = torch.as_tensor(s["input_ids"])
        mask[row, :len(s["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def _settings(item) -> tuple[str, dict[str, Any]]:
    """A prompt string, a mapping or a request object (``prompt`` + generation fields) → prompt, settings."""
    if isinstance(item, str):
        return item, dict(GENERATION_DEFAULTS)
    get = item.get if isinstance(item, dict) else lambda k, d=None: getattr(item, k, d)
    return get("prompt"), {k: d if get(k) is None else get(k) for k, d in GENERATION_DEFAULTS.items()}


class HFCausalLM(Adapter):
    """A GPT-2 language model built from its config, on UTF-8 bytes."""
    array_inputs = False
    Params = CausalParams
    train_options = TRAINER_OPTIONS | {"grad_clip"}

    def check_params(self) -> None:
        super().check_params()
        positions = self._config()["n_positions"]
        if not 1 < self.params.get("block_size", 64) <= positions:
            raise RecipeError(f"model.params: block_size {self.params.get('block_size')} of {self.owner} must be "
                              f"from 2 to the model's n_positions ({positions})")

    def _config(self) -> dict[str, Any]:
        return {"n_positions": 256, **self.params.get("config", {}), "vocab_size": VOCAB,
                "bos_token_id": BOUNDARY, "eos_token_id": BOUNDARY, "pad_token_id": BOUNDARY}

    def build_net(self, directory: str | None = None):
        from transformers import AutoConfig, AutoModelForCausalLM

        if directory:
            return AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
        config = {k: v for k, v in self._config().items() if k != "model_type"}
        return AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", **config))

    # --- fit / predict ---------------------------------------------------------------------
    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        from .torch_training import seed_everything

        seed_everything(spec.seed, spec.deterministic)
        self.net_ = self.build_net()
        block = self.params.get("block_size", 64)
        train_set = [{"input_ids": encode(t, block)} for t in X]
        val_set = [{"input_ids": encode(t, block)} for t in X_val]
        self.history_ = train_with_trainer(self.net_, train_set, val_set, _collate, spec, callback)

    def _predict(self, X) -> list[dict[str, Any]]:
        """Per prompt ``{"generated_text": prompt + continuation, "tokens": new tokens}``."""
        return [self._generate(*_settings(item)) for item in X]

    def _generate(self, prompt: str, s: dict[str, Any]) -> dict[str, Any]:
        import torch

        positions = self.net_.config.n_positions
        new = min(int(s["max_new_tokens"]), positions - 1)
        ids = encode(prompt, len(prompt.encode("utf-8")) + 1)[-(positions - new):]  # <s> prompt, its tail if long
        device = next(self.net_.parameters()).device
        inputs = torch.as_tensor([ids], device=device)
        sample = float(s["temperature"]) > 0
        options = {"do_sample": True, "temperature": float(s["temperature"]), "top_k": int(s["top_k"]),
                   "top_p": float(s["top_p"])} if sample else {"do_sample": False}
        if sample and s.get("seed") is not None:
            torch.manual_seed(int(s["seed"]))
        with torch.inference_mode():
            out = self.net_.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=new,
                                     pad_token_id=BOUNDARY, eos_token_id=BOUNDARY, **options)
        continuation = out[0, len(ids):].tolist()
        if BOUNDARY in continuation:  # the model ended the text
            continuation = continuation[:continuation.index(BOUNDARY)]
        return {"generated_text": prompt + decode(continuation), "tokens": len(continuation)}

    def language_metrics(self, texts: list[str], batch_size: int = 32) -> dict[str, float]:
        """Mean negative log-likelihood per predicted token over the texts, and its exp (perplexity)."""
        import torch

        self._check_fitted()
        limit = self.net_.config.n_positions
        device = next(self.net_.parameters()).device
        total, count = 0.0, 0
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = {k: v.to(device) for k, v in
                         _collate([{"input_ids": encode(t, limit)} for t in texts[start:start + batch_size]]).items()}
                logits = self.net_(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                targets = batch["labels"][:, 1:]
                nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                        targets.reshape(-1), ignore_index=-100, reduction="sum")
                total, count = total + float(nll), count + int((targets != -100).sum())
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}

    # --- weights -------------------------------------------------------------------------
    def _save_weights(self, directory: Path) -> None:
        self.net_.save_pretrained(directory / "hf")

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        self.net_ = self.build_net(str(directory / "hf")).eval()


GPT2_TINY = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 256}

register_adapter("hf:gpt2-tiny", framework="transformers", tasks=("generation",), family="textgen",
                 description="GPT-2 (2 layers, 64 wide) from its config, on UTF-8 bytes: offline text generation",
                 defaults={"hub_id": "gpt2", "config": GPT2_TINY}, tags=("transformer", "fast", "small"),
                 params_m=0.12, input_size=256, batch_size=32, learning_rate=1e-3)(HFCausalLM)
