"""Ultralytics switched to offline use before its first import; shared by the YOLO adapter and by
evaluate's detection metrics (Ultralytics' AP), which need no adapter."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

_CONFIGURED = False


def ultralytics_offline() -> None:
    """Everything Ultralytics would fetch or switch on by itself, switched off before its import:
    hub sync, pip auto-install, the Arial font download, and its own MLflow callback."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    from ..settings import platform_home

    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or platform_home() / "ultralytics")
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update({"YOLO_CONFIG_DIR": str(config_dir), "YOLO_AUTOINSTALL": "0",
                       "YOLO_VERBOSE": os.environ.get("YOLO_VERBOSE", "False"), "MLFLOW_DISABLE_TELEMETRY": "true"})
    os.environ.setdefault("YOLO_OFFLINE", "1")  # YOLO_OFFLINE=0 lets `pretrained: true` download <name>.pt
    if not (font_dir / "Arial.ttf").exists():  # plots label with Arial; matplotlib's DejaVu Sans stands in
        import matplotlib

        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font_dir / "Arial.ttf")
    from ultralytics import settings

    settings.update({"sync": False, "mlflow": False, "clearml": False, "comet": False, "dvc": False,
                     "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False,
                     "openvino_msg": False, "runs_dir": str(config_dir / "runs"),
                     "weights_dir": str(config_dir / "weights"), "datasets_dir": str(config_dir / "datasets")})
    _CONFIGURED = True


def ap_per_class(*args, **kwargs):
    """``ultralytics.utils.metrics.ap_per_class``, with Ultralytics configured offline first."""
    ultralytics_offline()
    from ultralytics.utils.metrics import ap_per_class as ap

    return ap(*args, **kwargs)
