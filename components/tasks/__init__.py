"""Task families: how a kind of data is read, cleaned, split, fed to a model and taken from a
request (the interface is ``base.Family``). Steps, the bundle and the server call
``family_for(recipe)`` / ``family(meta.family)`` and never ask which family they hold.

A new family is one module defining a ``Family`` subclass as ``FAMILY``, plus one row here: its
name, the recipe section whose presence selects it (None: the default), and its module. Modules
are imported on first use, so a step imports only the family it runs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Family

# name → (recipe section that selects it, module)
FAMILIES: dict[str, tuple[str | None, str]] = {
    "tabular": (None, "tabular"),
    "timeseries": ("timeseries", "timeseries"),
    "image": ("image", "images"),
    "text": ("text", "text"),
    "textgen": ("textgen", "textgen"),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"no task family {name!r}; the families are {sorted(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{FAMILIES[name][1]}").FAMILY


def family_name(sections_present) -> str:
    """The family a recipe with these sections belongs to (at most one family section per recipe)."""
    return next((name for name, (section, _) in FAMILIES.items() if section and section in sections_present),
                next(name for name, (section, _) in FAMILIES.items() if section is None))


def family_for(recipe) -> Family:
    return family(recipe.family)


def family_sections() -> list[str]:
    return [section for section, _ in FAMILIES.values() if section]
