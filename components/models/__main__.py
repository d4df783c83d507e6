"""``python -m components.models list [--task T] [--tag T] [--framework F]``: print the catalog;
``show NAME``: one model's parameters with types, defaults and allowed ranges."""
from __future__ import annotations

import argparse

from ..tasks import FAMILIES
from .registry import list_models


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.models")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print the model catalog as a table")
    ls.add_argument("--task")
    ls.add_argument("--tag")
    ls.add_argument("--framework")
    ls.add_argument("--family", choices=sorted(FAMILIES))
    show = sub.add_parser("show", help="print one model's parameters: type, default, allowed values")
    show.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "show":
        return _show(args.name)
    rows = [(e.name, e.framework, e.family, ",".join(e.tasks), _fmt(e.params_m, "{:g}M"), _fmt(e.input_size),
             _fmt(e.batch_size), _fmt(e.learning_rate, "{:g}"), ",".join(e.tags), e.description,
             _defaults(e) if e.family in ("tabular", "timeseries") else "")
            for e in list_models(args.task, args.tag, args.framework, args.family)]
    if not rows:
        print("no model matches these filters")
        return 1
    header = ("name", "framework", "family", "tasks", "params", "input", "batch", "lr", "tags", "description",
              "model.params (defaults; show NAME for types and ranges)")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def parameters(entry) -> list[tuple[str, str, str, str]]:
    """(name, type, default, allowed values) of a catalog entry's model.params: from the adapter's
    pydantic ``Params`` where it has one, else from the scikit-learn estimator's own constraints."""
    schema = getattr(entry.builder, "Params", None)
    if schema is not None:
        rows = []
        for name, field in schema.model_fields.items():
            default = entry.defaults.get(name, field.get_default(call_default_factory=True))
            shown = "(required)" if field.is_required() and name not in entry.defaults else repr(default)
            rows.append((name, _type_name(field.annotation), shown, _allowed(field)))
        return rows
    make = getattr(entry.builder, "_make", None)
    if make is None:
        return []
    est = entry.builder(task=entry.tasks[0])._make()
    defaults = {**est.get_params(), **entry.defaults}
    constraints = getattr(est, "_parameter_constraints", {})
    return [(name, type(defaults[name]).__name__ if defaults[name] is not None else "", repr(defaults[name]),
             "; ".join(str(c) for c in constraints.get(name, [])))
            for name in sorted(defaults)]


def _type_name(annotation) -> str:
    import typing

    if typing.get_origin(annotation) is typing.Literal:
        return "str"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _allowed(field) -> str:
    import typing

    parts = []
    if typing.get_origin(field.annotation) is typing.Literal:
        parts.append("one of " + ", ".join(map(repr, typing.get_args(field.annotation))))
    for meta in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "length >="),
                           ("max_length", "length <=")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{sign} {getattr(meta, attr)}")
    return ", ".join(parts) or "any"


def _defaults(entry) -> str:
    try:
        return ", ".join(f"{n}={d}" for n, _, d, _ in parameters(entry) if entry.defaults.get(n) is not None
                         or getattr(entry.builder, "Params", None) is not None) or "-"
    except Exception:  # a builder that cannot be made here (a missing framework): the list still prints
        return "-"


def _show(name: str) -> int:
    from .registry import get_entry
    from ..errors import RecipeError

    try:
        entry = get_entry(name)
    except RecipeError as exc:
        print(f"error: {exc}")
        return 2
    print(f"{entry.name}: {entry.description} ({entry.framework}, {entry.family}; tasks {', '.join(entry.tasks)})")
    rows = parameters(entry)
    if not rows:
        print("no model.params")
        return 0
    header = ("parameter", "type", "default", "allowed")
    widths = [min(60, max(len(str(r[i])) for r in [header, *rows])) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _fmt(value, pattern: str = "{}") -> str:
    return "-" if value is None else pattern.format(value)


if __name__ == "__main__":
    raise SystemExit(main())
