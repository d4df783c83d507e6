"""Report the registered version a server holds in V2 model metadata (``GET /v2/models/<name>``).

KServe 0.21 leaves the optional ``versions`` field of the Open Inference Protocol's model metadata
out. deploy starts a server with ``--model_version=<v>`` and waits until the process it started
answers with that version, so an older server still holding the port cannot pass for the new one.
"""
from __future__ import annotations


def report_version(version: str) -> None:
    from kserve.protocol.dataplane import DataPlane

    original = DataPlane.model_metadata
    if getattr(original, "_reports_version", False):
        return

    async def model_metadata(self, model_name: str):
        return {**await original(self, model_name), "versions": [str(version)]}

    model_metadata._reports_version = True
    DataPlane.model_metadata = model_metadata
