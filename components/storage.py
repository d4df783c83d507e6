"""Where data and artifacts live: local paths and globs, and s3:// or minio:// object-store URIs
(and, for data only, a Redis key: redis:// in components/redis_source.py).

Any other ``scheme://`` URI is refused by name; an object-store URI is never read as a local path.

The object store is reached with the MinIO client; its endpoint and credentials come from the
environment only (on a cluster, a Kubernetes Secret): ``S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``
/ ``MLFLOW_S3_ENDPOINT_URL``), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``; ``S3_VERIFY_TLS=false``
accepts a self-signed certificate.
"""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlparse

from .errors import DataError, PlatformError
from .files import atomic_path  # noqa: F401  (re-exported: steps write through storage)

log = logging.getLogger(__name__)
REMOTE_SCHEMES = ("s3", "minio")
REDIS_SCHEMES = ("redis", "rediss")  # a Redis key as table data: components/redis_source.py
DATA_SCHEMES = (*REMOTE_SCHEMES, *REDIS_SCHEMES)
T = TypeVar("T")


class ObjectStoreError(PlatformError, ConnectionError):
    """The object store is not configured or cannot be reached."""


STORE_ENV = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def uri_scheme(uri: str) -> str:
    """``s3`` for ``s3://b/k``; '' for a local path (``C:\\x`` and ``a:b.csv`` included)."""
    text = str(uri)
    scheme = urlparse(text).scheme
    return scheme.lower() if len(scheme) > 1 and text[len(scheme):].startswith("://") else ""


def is_remote(uri: str) -> bool:
    return uri_scheme(uri) in REMOTE_SCHEMES


def is_redis(uri: str) -> bool:
    return uri_scheme(uri) in REDIS_SCHEMES


def scheme_problem(uri: str) -> str | None:
    """Why a data URI's scheme is refused: not a local path or glob, an object-store or a Redis URI."""
    scheme = uri_scheme(uri)
    if scheme and scheme not in DATA_SCHEMES:
        return (f"the {scheme}:// scheme is not supported; expected a local path or glob, "
                "s3://bucket/key, minio://bucket/key or redis://host:port/db?key=KEY")
    return None


def check_scheme(uri: str) -> None:
    """A data URI is a local path or glob, an object-store or a Redis URI; anything else is named and refused."""
    if problem := scheme_problem(uri):
        raise DataError(f"{uri}: {problem}")


def resolve_data_uri(uri: str, base: str | os.PathLike) -> str:
    """The URI as a step with another working directory must see it: a relative local path joined to
    ``base``; an absolute path or any ``scheme://`` URI unchanged (never turned into a local path)."""
    if uri_scheme(uri) or Path(uri).is_absolute():
        return uri
    return str(Path(base) / uri)


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme not in REMOTE_SCHEMES or not parsed.netloc:
        raise DataError(f"{uri!r} is not an object-store URI; expected s3://bucket/key or minio://bucket/key")
    return parsed.netloc, parsed.path.lstrip("/")


def object_store():
    """A MinIO client for the configured endpoint; a clear error when none is configured."""
    from minio import Minio

    endpoint = next((os.environ[k] for k in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
                     if os.environ.get(k)), None)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (endpoint and key and secret):
        missing = [name for name, value in zip(STORE_ENV, (endpoint, key, secret)) if not value]
        raise ObjectStoreError("no object store is configured: set S3_ENDPOINT_URL (e.g. http://minio:9000), "
                               f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (unset: {', '.join(missing)})")
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    http_client = None
    if os.environ.get("S3_VERIFY_TLS", "true").lower() == "false":
        import urllib3

        http_client = urllib3.PoolManager(cert_reqs="CERT_NONE")
    return Minio(parsed.netloc, access_key=key, secret_key=secret, secure=parsed.scheme == "https",
                 region=os.environ.get("AWS_DEFAULT_REGION"), http_client=http_client)


def with_retries(action: Callable[[], T], what: str, attempts: int = 4, base_delay: float = 0.5) -> T:
    """Bounded retries with exponential backoff for an unreachable store, then one clear error."""
    from urllib3.exceptions import HTTPError as Urllib3Error

    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (Urllib3Error, OSError) as exc:
            if attempt == attempts:
                raise ObjectStoreError(f"object store unreachable while {what} after {attempts} attempts: "
                                       f"{type(exc).__name__}: {exc}") from None
            delay = base_delay * 2 ** (attempt - 1)
            log.warning("object store error while %s (%s); retry %d/%d in %.1fs", what, type(exc).__name__,
                        attempt, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _fetch_remote(uri: str) -> list[Path]:
    """Download what a remote URI names (one object, a prefix, or a glob on keys) to the local cache."""
    from minio.error import S3Error

    from .settings import platform_home

    bucket, key = split_uri(uri)
    try:
        client = object_store()
    except ObjectStoreError as exc:
        raise ObjectStoreError(f"cannot read {uri}: {exc}") from None
    pattern = key if any(ch in key for ch in "*?[") else None
    prefix = key.split("*")[0].split("?")[0].split("[")[0] if pattern else key
    try:
        objects = with_retries(lambda: [o.object_name for o in client.list_objects(bucket, prefix=prefix, recursive=True)
                                        if not o.is_dir], f"listing {uri}")
    except S3Error as exc:
        raise DataError(f"{uri}: {exc.code} ({exc.message})") from None
    names = sorted(n for n in objects if (fnmatch.fnmatch(n, pattern) if pattern else n == key or n.startswith(key.rstrip("/") + "/")))
    if not names:
        raise DataError(f"nothing found at {uri}; expected an object, a prefix or a glob that names at least one")
    cache = platform_home() / "cache" / bucket
    local = []
    for name in names:
        target = cache / name
        with atomic_path(target) as tmp:
            with_retries(lambda: client.fget_object(bucket, name, str(tmp)), f"downloading s3://{bucket}/{name}")
        local.append(target)
    log.info("downloaded %d object(s) from %s", len(local), uri)
    return local


def upload(local: str | os.PathLike, uri: str) -> str:
    """Upload a file, or a directory's files under the URI as a prefix; returns the URI."""
    bucket, key = split_uri(uri)
    client = object_store()
    if not with_retries(lambda: client.bucket_exists(bucket), f"checking bucket {bucket}"):
        with_retries(lambda: client.make_bucket(bucket), f"creating bucket {bucket}")
    local = Path(local)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for path in files:
        name = key if local.is_file() else f"{key.rstrip('/')}/{path.relative_to(local).as_posix()}"
        with_retries(lambda: client.fput_object(bucket, name, str(path)), f"uploading {path}")
    return uri


def expand(uri: str) -> list[Path]:
    """The files a data URI names: one path, a directory's files, or a glob, sorted; remote ones downloaded."""
    check_scheme(uri)
    if is_remote(uri):
        return _fetch_remote(uri)
    if is_redis(uri):  # a key's records, written to the cache as files
        from .redis_source import fetch

        return fetch(uri)
    if any(ch in uri for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(uri, recursive=True) if Path(p).is_file())
        if not paths:
            raise DataError(f"no file matches {uri!r}; expected a glob that names at least one file")
        return paths
    path = Path(uri)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not paths:
            raise DataError(f"directory {uri} holds no files")
        return paths
    if not path.exists():
        raise DataError(f"data file {uri} does not exist; expected a path, a directory or a glob")
    return [path]


def content_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
