"""Start a KServe ModelServer for one bundle (locally, or as the cluster's predictor container)."""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import warnings

import kserve
from kserve import model_server

from components.errors import RequestTooLarge
from components.tasks import images

from .direct_v1 import DirectV1
from .guard import RequestGuard, header_timeout_protocol
from .predictor import BundlePredictor, PredictionTimeout
from .reload import BundleRepository, freeze_loaded_objects


def _install_error_handlers() -> None:
    """Malformed bodies → 400, slow predictions → 504. FastAPI's default 422 echoes the input, and a
    body like ``Infinity`` cannot be echoed as JSON, which turns a bad request into a 500. Answer 400
    with where and what instead, never the input."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.model_server import app

    async def handler(request, exc: RequestValidationError):
        detail = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()]
        return JSONResponse(status_code=400, content={"error": "malformed request body", "detail": detail[:10]})

    app.add_exception_handler(RequestValidationError, handler)

    async def timeout(request, exc: PredictionTimeout):
        return JSONResponse(status_code=504, content={"error": str(exc)})

    app.add_exception_handler(PredictionTimeout, timeout)

    async def too_large(request, exc: RequestTooLarge):
        return JSONResponse(status_code=413, content={"error": str(exc)})

    app.add_exception_handler(RequestTooLarge, too_large)


def _quiet_per_request_logs(level: str, access_log: bool) -> None:
    """No per-request lines unless asked. uvicorn's access line costs about 7% of the server's CPU on
    one-row requests, and /metrics already counts every request by status code and times it
    (``kfp_ml_requests``, ``kfp_ml_request_seconds``); failed requests are logged with their error
    anyway. ``--log_requests`` turns the lines on (as gunicorn's ``--access-logfile``, off by default too).
    KServe 0.21 answers V1 with FastAPI's ORJSONResponse, which FastAPI now flags as deprecated: a
    warning and its source line on every request. KServe's timing middleware logs each request's wall
    and CPU time, which /metrics already has: kept for --log_level DEBUG."""
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    if not access_log:  # no handler and no propagation: uvicorn then skips formatting the line at all
        logging.getLogger("uvicorn.access").propagate = False
    if level != "DEBUG":
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)


def _return_large_buffers_to_the_os() -> None:
    """glibc raises its mmap threshold after the first large free (up to 32 MiB), so freed image and body
    buffers then stay in the heap and the RSS only grows. A fixed 4 MiB threshold (``mallopt``, which also
    disables that adjustment) gives every large buffer back when it is freed. No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class _ModelServer(kserve.ModelServer):
    """kserve.ModelServer with the uvicorn settings KServe 0.21 does not expose: the address to listen on
    (it hard-codes 0.0.0.0) and a protocol class that closes connections whose headers never complete;
    and KServe's per-request timing lines only where they are shown (--log_level DEBUG)."""

    def __init__(self, host: str, header_timeout_s: float, request_timings: bool, **kwargs):
        super().__init__(**kwargs)
        self.host, self.header_timeout_s, self.request_timings = host, header_timeout_s, request_timings

    async def _serve(self):
        rest = self._rest_server
        if not self.request_timings and not rest.access_log_format:
            # KServe's only middleware then is its TimingMiddleware, which logs each request's times to
            # kserve.trace (silenced below DEBUG, see _quiet_per_request_logs) after naming the route
            # with a second routing pass: a tenth of a one-row request's time for lines nobody sees.
            rest._add_middlewares = lambda app: None
        config = rest.config  # built in start(); uvicorn reads it when it starts serving
        config.host = self.host
        config.http = header_timeout_protocol(self.header_timeout_s)
        await super()._serve()


def _local_model_dir(model_dir: str) -> str:
    """A storage URI (outside KServe, which mounts it at /mnt/models) is fetched once, if allowed; a
    registered version (models:/) only if its files hash to the digest the registry holds for it.
    Any other bundle is checked against --expected_digest by the predictor, before it is unpickled."""
    import tempfile

    from components.model_source import check_model_source, fetch_registered

    check_model_source(model_dir, "--model_dir")
    remote = model_dir.startswith(("models:/", "mlflow-artifacts:/")) or ("://" in model_dir and
                                                                        not model_dir.startswith("file://"))
    if not remote:
        return model_dir.removeprefix("file://")
    download = tempfile.mkdtemp(prefix="model-")
    atexit.register(shutil.rmtree, download, True)  # the server's copy, for its life
    if model_dir.startswith("models:/"):
        return str(fetch_registered(model_dir, "--model_dir", download)[0])
    if model_dir.startswith("mlflow-artifacts:/"):
        import mlflow.artifacts

        return mlflow.artifacts.download_artifacts(artifact_uri=model_dir, dst_path=download)
    from kserve_storage import Storage

    return Storage.download(model_dir, download)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], prog="python -m serving")
    parser.add_argument("--model_dir", default=os.environ.get("MODEL_DIR", "/mnt/models"),
                        help="Bundle directory (KServe's storage initializer puts storageUri at /mnt/models).")
    parser.add_argument("--max_batch_rows", type=int, default=256, help="Micro-batching: rows per model call.")
    parser.add_argument("--max_batch_wait_ms", type=float, default=0.0,
                        help="Micro-batching: how long a request that finds the model idle waits for others "
                             "(0: none; requests arriving during a model call form the next batch anyway).")
    parser.add_argument("--request_timeout_s", type=float, default=float(os.environ.get("REQUEST_TIMEOUT_S", 30)),
                        help="A prediction not answered within this many seconds gets 504.")
    parser.add_argument("--max_request_bytes", type=int, default=int(os.environ.get("MAX_REQUEST_BYTES", 16 << 20)),
                        help="Larger request bodies are refused with 413 (chunked ones as the bytes stream in).")
    parser.add_argument("--host", default=os.environ.get("SERVING_HOST", "127.0.0.1"),
                        help="Address to listen on. 127.0.0.1 (this machine only) unless asked: the serving image "
                             "passes 0.0.0.0. The server has no authentication of its own.")
    parser.add_argument("--header_timeout_s", type=float, default=float(os.environ.get("HEADER_TIMEOUT_S", 10)),
                        help="A connection whose request headers are not complete within this many seconds is "
                             "closed (408).")
    parser.add_argument("--body_timeout_s", type=float, default=float(os.environ.get("BODY_TIMEOUT_S", 30)),
                        help="A request body not received within this many seconds gets 408.")
    parser.add_argument("--max_images", type=int, default=int(os.environ.get("MAX_IMAGES", 64)),
                        help="Images per request (more: 413).")
    parser.add_argument("--max_image_pixels", type=int, default=int(os.environ.get("MAX_IMAGE_PIXELS", 4096 * 4096)),
                        help="Width x height of one image, read from its header before decoding (more: 413).")
    parser.add_argument("--max_request_pixels", type=int, default=int(os.environ.get("MAX_REQUEST_PIXELS", 4096 * 4096)),
                        help="Pixels of all images in one request (more: 413).")
    parser.add_argument("--log_level", default=os.environ.get("LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log_requests", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("LOG_REQUESTS", "").lower() in ("1", "true", "yes"),
                        help="One log line per HTTP request (default off: /metrics counts and times every request).")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("SERVING_THREADS", 0)) or None,
                        help="CPU threads for the model (default: CPU affinity and cgroup quota, less busy cores)")
    parser.add_argument("--expected_digest", default=os.environ.get("MODEL_DIGEST", ""),
                        help="SHA-256 of the bundle's file manifest (the registered version's bundle_sha256 tag); "
                             "the server refuses to load other files. Deploy passes it.")
    parser.add_argument("--model_version", default=os.environ.get("MODEL_VERSION", ""),
                        help="The registered version served; reported in V2 model metadata (`versions`).")
    parser.add_argument("--reload_file", default=os.environ.get("RELOAD_FILE", ""),
                        help="JSON naming a new bundle (model_dir, version, digest): POST "
                             "/v2/repository/models/<name>/load swaps it in without a restart. Deploy passes it.")
    args, _ = parser.parse_known_args()
    if args.workers != 1:
        parser.error("--workers must be 1 (the listen address and header timeout apply to one process); "
                     "scale with replicas instead")
    from .version import report_version

    report_version()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _quiet_per_request_logs(args.log_level, args.log_requests)
    if not args.expected_digest and not args.model_dir.startswith("models:/"):
        logging.getLogger(__name__).warning("--model_dir %s is loaded without a registered digest to check its "
                                            "files against; pass --expected_digest", args.model_dir)
    def predictor(model_dir: str, version: str, digest: str) -> BundlePredictor:
        return BundlePredictor(args.model_name, model_dir, args.max_batch_rows, args.max_batch_wait_ms,
                               args.request_timeout_s, expected_digest=digest, version=version)

    model = predictor(_local_model_dir(args.model_dir), args.model_version, args.expected_digest)
    from components import threads

    model.load()
    threads.configure(args.threads)
    _install_error_handlers()
    images.configure(args.max_images, args.max_image_pixels, args.max_request_pixels)
    _return_large_buffers_to_the_os()
    repository = BundleRepository(args.reload_file, predictor) if args.reload_file else kserve.ModelRepository()
    model_server.app.add_middleware(DirectV1, repository=repository)  # added first: inside the guard
    model_server.app.add_middleware(RequestGuard, max_bytes=args.max_request_bytes, models={args.model_name},
                                    body_timeout_s=args.body_timeout_s)
    freeze_loaded_objects()
    _ModelServer(args.host, args.header_timeout_s, request_timings=args.log_level == "DEBUG", http_port=args.http_port,
                 enable_grpc=False, workers=args.workers, registered_models=repository).start([model])


if __name__ == "__main__":
    main()
