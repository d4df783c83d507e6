"""``python -m components.models list [--task T] [--tag T] [--framework F]``: print the catalog."""
from __future__ import annotations

import argparse

from .registry import list_models


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.models")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print the model catalog as a table")
    ls.add_argument("--task")
    ls.add_argument("--tag")
    ls.add_argument("--framework")
    ls.add_argument("--family", choices=["tabular", "timeseries", "image", "text"])
    args = parser.parse_args(argv)
    rows = [(e.name, e.framework, e.family, ",".join(e.tasks), _fmt(e.params_m, "{:g}M"), _fmt(e.input_size),
             _fmt(e.batch_size), _fmt(e.learning_rate, "{:g}"), ",".join(e.tags), e.description)
            for e in list_models(args.task, args.tag, args.framework, args.family)]
    if not rows:
        print("no model matches these filters")
        return 1
    header = ("name", "framework", "family", "tasks", "params", "input", "batch", "lr", "tags", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _fmt(value, pattern: str = "{}") -> str:
    return "-" if value is None else pattern.format(value)


if __name__ == "__main__":
    raise SystemExit(main())
