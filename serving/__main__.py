"""Start a KServe ModelServer for one bundle (locally, or as the cluster's predictor container)."""
from __future__ import annotations

import argparse
import logging
import os

import kserve
from kserve import model_server

from .predictor import BundlePredictor


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], prog="python -m serving")
    parser.add_argument("--model_dir", default=os.environ.get("MODEL_DIR", "/mnt/models"),
                        help="Bundle directory (KServe's storage initializer puts storageUri at /mnt/models).")
    args, _ = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    model = BundlePredictor(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=args.workers).start([model])


if __name__ == "__main__":
    main()
