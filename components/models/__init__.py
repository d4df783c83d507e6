"""Model catalog and adapters: ``build_adapter(name, task, ...)`` is the one factory.

Importing the package registers the built-in adapters (as timm's package init imports its model
files); ``registry`` imports none of them. No framework is imported here: torch, timm,
transformers and Ultralytics load only when a model of theirs is built or fit.
"""
from .registry import (Adapter, CatalogEntry, build_adapter, code_is_pinned, get_entry, list_models,  # noqa: I001
                       load_adapter, register_adapter)
from . import external, ft_transformer, hf_causal, hf_models, mlp, sequence, sklearn_models, timm_models, yolo  # noqa: F401,E402
from .ultralytics_env import ap_per_class  # noqa: E402  (evaluate's detection AP; no adapter needed)

__all__ = ["Adapter", "CatalogEntry", "ap_per_class", "build_adapter", "code_is_pinned", "get_entry", "list_models",
           "load_adapter", "register_adapter"]
