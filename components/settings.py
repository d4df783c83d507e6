"""Where local state lives and how services are reached; read from the environment only.

On a cluster these variables come from the step's ConfigMap/Secret; locally ``submit.py``
fills them with embedded defaults under ``PLATFORM_HOME``.
"""
from __future__ import annotations

import os
from pathlib import Path


def platform_home() -> Path:
    return Path(os.environ.get("PLATFORM_HOME", Path.cwd() / ".platform")).resolve()


def local_service_env(home: Path) -> dict[str, str]:
    """Embedded defaults: MLflow on a sqlite file with a local artifact directory."""
    return {
        "PLATFORM_HOME": str(home),
        "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"),
        "PLATFORM_ARTIFACT_ROOT": os.environ.get("PLATFORM_ARTIFACT_ROOT", str(home / "mlartifacts")),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # progress bars garble step logs
    }


def redact_uri(uri: str) -> str:
    """A URI fit for a log: user and password (``https://user:pass@host``) replaced by ***."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/")[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def check_model_source(uri: str, what: str) -> str:
    """Weights and pickles are code: load them only from the configured registry or object store.

    Allowed: ``models:/…`` and ``mlflow-artifacts:/…`` (the configured MLflow), a local path (a
    volume the platform mounted, e.g. KServe's /mnt/models), and ``s3://`` / ``minio://`` URIs in a
    bucket named by ``PLATFORM_MODEL_BUCKETS`` (comma-separated) or by MLflow's artifact destination.
    """
    scheme, sep, rest = uri.partition("://")
    if uri.startswith(("models:/", "mlflow-artifacts:/")) or not sep or scheme == "file":
        return uri
    buckets = {b.strip() for b in os.environ.get("PLATFORM_MODEL_BUCKETS", "").split(",") if b.strip()}
    destination = os.environ.get("PLATFORM_MLFLOW_ARTIFACTS_DESTINATION", "")
    if destination.startswith("s3://"):
        buckets.add(destination[5:].split("/")[0])
    if scheme in ("s3", "minio") and rest.split("/")[0] in buckets:
        return uri
    allowed = ", ".join(["models:/<name>@<alias>", "a local path"] + [f"s3://{b}/…" for b in sorted(buckets)])
    raise PermissionError(f"{what}: refusing to load a model from {uri!r}; models are loaded only from the "
                          f"configured registry or object store ({allowed}); add a bucket to PLATFORM_MODEL_BUCKETS "
                          "to allow it")
