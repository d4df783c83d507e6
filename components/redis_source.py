"""Table data from a Redis key: ``redis://[[user]:password@]host[:port][/db]?key=KEY[&field=FIELD]``.

What the key holds decides how it is read (``rediss://`` is the same over TLS):

- a **list**: each element one JSON object, one row (``RPUSH houses '{"rooms": 3, "price": 2.1}'``);
- a **stream**: each entry (``XRANGE``, oldest first) one row. An entry whose only field is ``json``
  or ``data`` holds its row as a JSON object (typed values); otherwise its fields are the
  columns (Redis keeps them as text; preprocess turns all-number columns into numbers). Entry IDs are
  not a column;
- a **hash**: each field holds CSV text (a header and rows), all fields read in field-name order as
  parts of one table (or as channels for a time-series recipe); ``field=NAME`` reads that one only.

The password comes from the URI or, better (a URI ends up in the recipe and the run's parameters),
from ``REDIS_PASSWORD`` (``REDIS_USERNAME`` for an ACL user). The records are written to the local
cache (``$PLATFORM_HOME/cache/redis/…``) as the files the table reader already reads (JSON Lines,
CSV), so the load step, its checks and its data hash treat them like any file. The data fingerprint
that decides whether load re-runs is the hash of those files, i.e. of the key's content as read: exact
for every key type, independent of how Redis encodes the value internally (DUMP is not: a hash's
field order and a value's encoding change with its history), and equal to the ``data_hash`` load
records. It costs one read of the key when the pipeline is built; load reads the whole key anyway.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlparse

from .errors import DataError
from .settings import platform_home, redact_uri
from .files import atomic_path

log = logging.getLogger(__name__)
CHUNK = 5000  # elements per LRANGE / XRANGE call
JSON_FIELDS = ("json", "data")  # a stream entry with only this field carries its row as JSON
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
EXPECTED = "expected a list of JSON records, a stream or a hash of CSV text"


class _Source:
    """The parts of a Redis data URI, and a connection made from them."""

    def __init__(self, uri: str):
        parsed = urlparse(uri)
        query = parse_qs(parsed.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"key", "field"})
        keys = query.get("key", [])
        if not parsed.hostname or len(keys) != 1 or not keys[0] or unknown:
            why = (f"unknown parameter(s) {unknown}" if unknown else "no host" if not parsed.hostname
                   else "no key=" if not keys or not keys[0] else "key= given more than once")
            raise DataError(f"{redact_uri(uri)}: {why}; expected redis://[[user]:password@]host[:port][/db]?key=KEY"
                            "[&field=FIELD]")
        self.key, self.field = keys[0], (query.get("field") or [None])[0]
        self.host = parsed.hostname
        try:
            self.port = parsed.port or 6379
            db = parsed.path.strip("/") or "0"
            self.db = int(db)
        except ValueError:
            raise DataError(f"{redact_uri(uri)}: the port and the database (the path, e.g. /0) must be "
                            "numbers") from None
        self.tls = parsed.scheme.lower() == "rediss"
        self.username = unquote(parsed.username) if parsed.username else os.environ.get("REDIS_USERNAME") or None
        self.password = (unquote(parsed.password) if parsed.password is not None
                         else os.environ.get("REDIS_PASSWORD") or None)

    @property
    def where(self) -> str:
        return f"Redis key {self.key!r} (db {self.db} at {self.host}:{self.port})"

    def client(self):
        import redis

        return redis.Redis(host=self.host, port=self.port, db=self.db, username=self.username,
                           password=self.password, ssl=self.tls, socket_connect_timeout=10, socket_timeout=60)


def fetch(uri: str) -> list[Path]:
    """The key's records as local files (one JSON Lines file, or one CSV file per hash field), sorted."""
    import redis

    src = _Source(uri)
    client = src.client()  # connects on the first command
    try:
        kind = client.type(src.key).decode()
        if kind == "none":
            raise DataError(f"{src.where} does not exist; {EXPECTED}")
        readers = {"list": _read_list, "stream": _read_stream, "hash": _read_hash}
        if kind not in readers:
            raise DataError(f"{src.where} is a {kind}; {EXPECTED}")
        if src.field is not None and kind != "hash":
            raise DataError(f"{src.where}: field= names a hash field, but the key is a {kind}")
        files = readers[kind](client, src)
    except redis.ResponseError as exc:  # a refused password is an AuthenticationError or a NOAUTH answer
        if not str(exc).startswith(("NOAUTH", "WRONGPASS")):
            raise DataError(f"{src.where}: Redis answered {exc}") from None
        raise _auth_error(src, exc) from None
    except redis.AuthenticationError as exc:
        raise _auth_error(src, exc) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise DataError(f"cannot reach Redis at {src.host}:{src.port} to read key {src.key!r}: "
                        f"{type(exc).__name__}: {exc}") from None
    finally:
        client.close()
    log.info("read %s into %d file(s)", src.where, len(files))
    return files


def _auth_error(src: _Source, exc: Exception) -> DataError:
    said = ("refused the password given" if src.password else "wants a password and none was given")
    return DataError(f"Redis at {src.host}:{src.port} {said} ({exc}); expected it in the URI "
                     "(redis://:PASSWORD@host) or in REDIS_PASSWORD (with REDIS_USERNAME for an ACL user)")


def _cache_dir(src: _Source) -> Path:
    return platform_home() / "cache" / "redis" / f"{src.host}_{src.port}" / str(src.db) / quote(src.key, safe="")


def _write_lines(src: _Source, name: str, lines: list[str]) -> list[Path]:
    target = _cache_dir(src) / name
    with atomic_path(target) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return [target]


def _text(value: bytes, src: _Source, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{src.where}: {what} is not UTF-8 text ({exc})") from None


def _json_row(text: str, src: _Source, what: str) -> str:
    """One record, re-serialized on one line; a clear error when it is not a JSON object."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{src.where}: {what} is not valid JSON ({exc}); expected one JSON object per row") from None
    if not isinstance(row, dict):
        raise DataError(f"{src.where}: {what} is a JSON {type(row).__name__}, not an object; expected one JSON "
                        "object (column: value) per row")
    return json.dumps(row, ensure_ascii=False)


def _read_list(client, src: _Source) -> list[Path]:
    lines: list[str] = []
    while chunk := client.lrange(src.key, len(lines), len(lines) + CHUNK - 1):
        for value in chunk:
            what = f"element {len(lines)}"
            lines.append(_json_row(_text(value, src, what), src, what))
        if len(chunk) < CHUNK:
            break
    if not lines:
        raise DataError(f"{src.where} is an empty list; expected at least one JSON record")
    return _write_lines(src, "records.jsonl", lines)


def _read_stream(client, src: _Source) -> list[Path]:
    lines: list[str] = []
    start = "-"
    while entries := client.xrange(src.key, min=start, count=CHUNK):
        for entry_id, fields in entries:
            what = f"entry {entry_id.decode()}"
            values = {_text(k, src, f"{what}: a field name"): v for k, v in fields.items()}
            if len(values) == 1 and next(iter(values)) in JSON_FIELDS:
                name, value = next(iter(values.items()))
                lines.append(_json_row(_text(value, src, what), src, f"{what} (field {name!r})"))
            else:
                lines.append(json.dumps({k: _text(v, src, f"{what}: field {k!r}") for k, v in values.items()},
                                        ensure_ascii=False))
        if len(entries) < CHUNK:
            break
        start = "(" + entries[-1][0].decode()  # exclusive: after the last entry read
    if not lines:
        raise DataError(f"{src.where} is an empty stream; expected at least one entry")
    return _write_lines(src, "entries.jsonl", lines)


def _read_hash(client, src: _Source) -> list[Path]:
    if src.field is not None:
        value = client.hget(src.key, src.field)
        if value is None:
            fields = sorted(_text(f, src, "a field name") for f in client.hkeys(src.key))
            raise DataError(f"{src.where} has no field {src.field!r}; its fields are {fields[:20]}")
        parts = {src.field: value}
    else:
        parts = {_text(k, src, "a field name"): v for k, v in client.hgetall(src.key).items()}
    target = _cache_dir(src) / "fields"
    names = {}
    for field, value in sorted(parts.items()):
        if not value.strip():
            raise DataError(f"{src.where}: field {field!r} is empty; expected CSV text (a header and rows)")
        name = quote(field, safe="")
        names[field] = name if name.lower().endswith(CSV_SUFFIXES) else f"{name}.csv"
    with atomic_path(target) as tmp:  # the whole set at once: a field deleted in Redis leaves no file behind
        tmp.mkdir()
        for field, name in names.items():
            (tmp / name).write_bytes(parts[field])
    return [target / names[field] for field in sorted(names)]
