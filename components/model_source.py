"""Where a model may come from, and proof that it is the registered one.

Weights and pickles are code. A model is loaded only from the configured registry or object store
(``check_model_source``), and a registered version is loaded only when its files hash to the digest
register recorded on it (``fetch_registered`` / ``verify_bundle``): a bundle swapped in the object
store after registration is refused before anything in it is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

DIGEST_TAG = "bundle_sha256"              # on the registered version: the digest of its file manifest
MANIFEST_ARTIFACT = "bundle_manifest.json"  # on the run: every file's SHA-256, to name what changed
GENERATED = {"registered_model_meta"}      # MLflow writes it into a download; not part of the bundle


class BundleIntegrityError(PermissionError):
    """A bundle whose files are not the ones registered."""


# --- where from -------------------------------------------------------------------------------

def _allowed_buckets() -> set[str]:
    buckets = {b.strip() for b in os.environ.get("PLATFORM_MODEL_BUCKETS", "").split(",") if b.strip()}
    destination = os.environ.get("PLATFORM_MLFLOW_ARTIFACTS_DESTINATION", "")
    if destination.startswith(("s3://", "minio://")):
        buckets.add(urlsplit(destination).netloc)
    return buckets


def _tracking_authority() -> str:
    return urlsplit(os.environ.get("MLFLOW_TRACKING_URI", "")).netloc.lower()


def _safe_key(path: str) -> bool:
    """No traversal however it is spelled: '..' or '.' segments, backslashes, encoded dots or slashes."""
    decoded = unquote(path)
    if "\\" in decoded or "\x00" in decoded or any(s in decoded.lower() for s in ("%2e", "%2f", "%5c")):
        return False
    inner = decoded.strip("/")
    return not any(s in (".", "..") for s in inner.split("/")) and posixpath.normpath("/" + inner) == "/" + inner


def check_model_source(uri: str, what: str) -> str:
    """The URI if it names the configured registry, object store or a local path; else PermissionError.

    Allowed: ``models:/…`` and ``mlflow-artifacts:/…`` without an authority or with the configured
    tracking server's; ``s3://`` / ``minio://`` in a bucket named by ``PLATFORM_MODEL_BUCKETS`` or by
    MLflow's artifact destination, with a key free of traversal; a local path (a volume the platform
    mounted, e.g. KServe's /mnt/models), which must lie under ``PLATFORM_MODEL_ROOTS`` once symlinks
    are resolved when that is set.
    """
    parts = urlsplit(uri)
    scheme, authority = parts.scheme.lower(), parts.netloc.lower()
    if scheme in ("", "file") and authority in ("", "localhost"):
        if _local_path_allowed(unquote(parts.path) if scheme == "file" else uri):
            return uri
    elif scheme in ("models", "mlflow-artifacts"):
        if authority in ("", _tracking_authority()) and _safe_key(parts.path):
            return uri
    elif scheme in ("s3", "minio"):
        if authority in _allowed_buckets() and parts.path.strip("/") and _safe_key(parts.path):
            return uri
    raise PermissionError(f"{what}: refusing to load a model from {uri!r}; models are loaded only from the "
                          f"configured registry or object store ({_allowed_list()}); add a bucket to "
                          "PLATFORM_MODEL_BUCKETS to allow it")


def _local_path_allowed(path: str) -> bool:
    roots = [Path(r).resolve() for r in os.environ.get("PLATFORM_MODEL_ROOTS", "").split(":") if r]
    if not roots:
        return True  # a local run: the user's own files
    resolved = Path(path).resolve()  # follows symlinks: a link out of the root is outside it
    return any(resolved == root or root in resolved.parents for root in roots)


def _allowed_list() -> str:
    tracking = _tracking_authority()
    items = ["models:/<name>@<alias>" + (f" (or models://{tracking}/…)" if tracking else ""),
             "a local path" + (f" under {os.environ['PLATFORM_MODEL_ROOTS']}" if os.environ.get("PLATFORM_MODEL_ROOTS")
                               else "")]
    return ", ".join(items + [f"s3://{b}/…" for b in sorted(_allowed_buckets())])


# --- what it is ------------------------------------------------------------------------------

def file_manifest(directory: str | Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file of a bundle directory."""
    root = Path(directory)
    manifest = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in GENERATED):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        manifest[path.relative_to(root).as_posix()] = digest.hexdigest()
    return manifest


def manifest_digest(manifest: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verify_bundle(directory: str | Path, expected: str, what: str, manifest: dict[str, str] | None = None) -> None:
    """Refuse a bundle whose files do not hash to ``expected``; name the files that differ when the
    registered manifest is at hand."""
    found = file_manifest(directory)
    if manifest_digest(found) == expected:
        return
    detail = ""
    if manifest and manifest_digest(manifest) == expected:
        changed = sorted(p for p in set(found) | set(manifest) if found.get(p) != manifest.get(p))
        detail = f"; files that differ from the registered ones: {changed[:5]}"
    raise BundleIntegrityError(f"{what}: the model files in {directory} are not the registered ones (SHA-256 of "
                               f"their manifest is {manifest_digest(found)[:16]}…, registered "
                               f"{expected[:16]}…){detail}; refusing to load them")


def fetch_registered(uri: str, what: str, dest: str | Path | None = None) -> tuple[Path, str, str]:
    """Download ``models:/name@alias`` or ``models:/name/version`` and check it against the digest
    register recorded; returns (directory, name, version). The alias is pinned to one version first."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    check_model_source(uri, what)
    name, sep, ref = urlsplit(uri).path.strip("/").partition("@")
    client = MlflowClient()
    if sep:
        version = str(client.get_model_version_by_alias(name, ref).version)
    else:
        name, _, version = name.rpartition("/")
    registered = client.get_model_version(name, version)
    target = Path(dest) if dest else Path(tempfile.mkdtemp(prefix="model-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(target)))
    expected = registered.tags.get(DIGEST_TAG)
    if expected:
        verify_bundle(local, expected, what, _registered_manifest(client, registered.run_id))
    elif os.environ.get("PLATFORM_REQUIRE_DIGEST", "").lower() in ("1", "true"):
        raise BundleIntegrityError(f"{what}: {name} version {version} has no {DIGEST_TAG} tag (registered before "
                                   "digests were recorded) and PLATFORM_REQUIRE_DIGEST is set; re-register it")
    else:
        log.warning("%s: %s version %s carries no %s tag (registered before digests were recorded); "
                    "loading it unverified", what, name, version, DIGEST_TAG)
    return local, name, version


def _registered_manifest(client, run_id: str) -> dict[str, str] | None:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(Path(client.download_artifacts(run_id, MANIFEST_ARTIFACT, tmp)).read_text())
    except Exception:  # the manifest only names files; the digest decides
        return None
