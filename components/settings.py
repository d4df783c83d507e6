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
