"""Report the registered version a server holds in V2 model metadata (``GET /v2/models/<name>``).

KServe 0.21 leaves the optional ``versions`` field of the Open Inference Protocol's model metadata
out. deploy starts a server with ``--model_version=<v>`` (or swaps a new version in, ``reload.py``)
and waits until the server answers with that version, so an older server still holding the port
cannot pass for the new one. The version is read from the model serving now, so a swap shows.
"""
from __future__ import annotations


def report_version() -> None:
    from kserve.protocol.dataplane import DataPlane

    original = DataPlane.model_metadata
    if getattr(original, "_reports_version", False):
        return

    async def model_metadata(self, model_name: str):
        version = getattr(self.model_registry.get_model(model_name), "version", "")
        return {**await original(self, model_name), **({"versions": [str(version)]} if version else {})}

    model_metadata._reports_version = True
    DataPlane.model_metadata = model_metadata
