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
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

DIGEST_TAG = "bundle_sha256"           # on the registered version: the digest of its file manifest
MANIFEST_FILE = "bundle_manifest.json"   # beside the bundle in the logged model: every file's SHA-256
# Not part of what is hashed: the manifest itself, and the marker MLflow writes into a models:/ download.
UNHASHED = {MANIFEST_FILE, "registered_model_meta"}


class BundleIntegrityError(PermissionError):
    """A bundle whose files are not the ones registered."""


# --- where from -------------------------------------------------------------------------------

def _allowed_buckets() -> set[str]:
    buckets = {b.strip() for b in os.environ.get("PLATFORM_MODEL_BUCKETS", "").split(",") if b.strip()}
    destination = os.environ.get("PLATFORM_MLFLOW_ARTIFACTS_DESTINATION", "")
    if destination.startswith(("s3://", "minio://")):
        buckets.add(urlsplit(destination).netloc)
    return buckets - {""}


def _tracking_authority() -> str:
    """host[:port] of the configured tracking server; its user and password are never compared or shown."""
    return urlsplit(os.environ.get("MLFLOW_TRACKING_URI", "")).netloc.rpartition("@")[2].lower()


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
    elif parts.query or parts.fragment:
        pass  # "?" and "#" mean something else to each client: nothing to gain, something to hide
    elif scheme in ("models", "mlflow-artifacts"):
        if authority in ("", _tracking_authority()) and _safe_key(parts.path):
            return uri
    elif scheme in ("s3", "minio"):  # the authority is the bucket, never a host
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
             "mlflow-artifacts:/…" + (f" (or mlflow-artifacts://{tracking}/…)" if tracking else ""),
             "a local path" + (f" under {os.environ['PLATFORM_MODEL_ROOTS']}" if os.environ.get("PLATFORM_MODEL_ROOTS")
                               else "")]
    return ", ".join(items + [f"s3://{b}/…" for b in sorted(_allowed_buckets())])


# --- what it is ------------------------------------------------------------------------------

def file_manifest(directory: str | Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file of a bundle directory (the manifest itself and MLflow's
    download marker excluded). A symlink that leads out of the directory is refused, not followed."""
    root = Path(directory).resolve()
    manifest = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            _refuse_escape(Path(folder) / name, root)
        for name in files:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if relative not in UNHASHED:
                manifest[relative] = _sha256(path)
    return dict(sorted(manifest.items()))


def _refuse_escape(path: Path, root: Path) -> None:
    if path.is_symlink() and root not in path.resolve().parents:
        raise BundleIntegrityError(f"{path} is a symlink to {path.resolve()}, outside the bundle {root}; "
                                   "refusing to load it")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(manifest: dict[str, str]) -> str:
    """The one value the registry keeps (version tags are short): SHA-256 of the canonical manifest."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(manifest: dict[str, str], directory: str | Path) -> Path:
    """The full manifest as a file, logged beside the bundle so a refusal can name the changed file."""
    path = Path(directory) / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return path


def verify_bundle(directory: str | Path, expected: str, what: str) -> None:
    """Refuse a bundle whose files do not hash to ``expected`` (the registry's digest), naming the first
    file that differs. The manifest file inside the bundle only helps name it: it is trusted only when
    it hashes to ``expected`` itself."""
    found = file_manifest(directory)
    if manifest_digest(found) == expected:
        return
    registered = _manifest_in(directory)
    detail = (_first_difference(found, registered) if manifest_digest(registered) == expected
              else f"its {MANIFEST_FILE} does not match the registered digest either")
    raise BundleIntegrityError(f"{what}: the model files in {directory} are not the registered ones: {detail} "
                               f"(SHA-256 of their manifest {manifest_digest(found)[:16]}…, registered "
                               f"{expected[:16]}…); refusing to load them")


def _manifest_in(directory: str | Path) -> dict[str, str]:
    try:
        return json.loads((Path(directory) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _first_difference(found: dict[str, str], registered: dict[str, str]) -> str:
    for path in sorted(set(found) | set(registered)):
        if path not in found:
            return f"{path} is missing"
        if path not in registered:
            return f"{path} was not registered"
        if found[path] != registered[path]:
            return f"{path} was changed"
    return "no file differs"  # unreachable when the digests differ


def fetch_registered(uri: str, what: str, dest: str | Path) -> tuple[Path, str, str]:
    """Download ``models:/name@alias`` or ``models:/name/version`` into ``dest`` (the caller's to remove)
    and check it against the digest register recorded; returns (directory, name, version). The alias
    is pinned to one version first, and the digest is read from the registry, never from the download."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    check_model_source(uri, what)
    name, version = _registered_version(MlflowClient(), uri)
    expected = registered_digest(name, version, what)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dest)))
    if expected:
        verify_bundle(local, expected, what)
    return local, name, version


def _registered_version(client, uri: str) -> tuple[str, str]:
    name, sep, ref = urlsplit(uri).path.strip("/").partition("@")
    if sep:
        return name, str(client.get_model_version_by_alias(name, ref).version)
    name, _, version = name.rpartition("/")
    if not (name and version.isdigit()):
        raise ValueError(f"{uri!r} names no registered version; expected models:/<name>@<alias> or "
                         "models:/<name>/<version>")
    return name, version


def registered_digest(name: str, version: str, what: str) -> str:
    """The version's digest tag. A version registered before digests were recorded is refused unless
    PLATFORM_ALLOW_UNVERIFIED_VERSIONS=true (then "" and a warning): re-register it instead."""
    from mlflow import MlflowClient

    expected = MlflowClient().get_model_version(name, version).tags.get(DIGEST_TAG, "")
    if expected:
        return expected
    if os.environ.get("PLATFORM_ALLOW_UNVERIFIED_VERSIONS", "").lower() not in ("1", "true"):
        raise BundleIntegrityError(f"{what}: {name} version {version} has no {DIGEST_TAG} tag (registered before "
                                   "bundle digests were recorded), so its files cannot be checked; re-register it, "
                                   "or set PLATFORM_ALLOW_UNVERIFIED_VERSIONS=true to load it unchecked")
    log.warning("%s: %s version %s carries no %s tag; loading it unverified (PLATFORM_ALLOW_UNVERIFIED_VERSIONS)",
                what, name, version, DIGEST_TAG)
    return ""
