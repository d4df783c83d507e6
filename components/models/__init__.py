"""Model catalog and adapters: ``build_adapter(name, task, ...)`` is the one factory."""
from .registry import Adapter, CatalogEntry, build_adapter, get_entry, list_models, load_adapter, register_adapter

__all__ = ["Adapter", "CatalogEntry", "build_adapter", "get_entry", "list_models", "load_adapter",
           "register_adapter"]
