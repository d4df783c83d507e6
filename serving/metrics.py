"""The platform's own Prometheus metrics, served beside KServe's on ``/metrics``.

KServe already exports per-model predict latency; these add what an operator asks about on a
bad day: requests by status code, end-to-end latency, micro-batch sizes and errors by kind.
"""
from __future__ import annotations


from prometheus_client import Counter, Histogram

REQUESTS = Counter("kfp_ml_requests", "Inference requests answered, by model, protocol and HTTP status code",
                   ["model", "protocol", "code"])
LATENCY = Histogram("kfp_ml_request_seconds", "Inference request latency, end to end inside the server",
                    ["model", "protocol"],
                    buckets=(.001, .0025, .005, .01, .02, .03, .05, .075, .1, .25, .5, 1, 2.5, 5, 10))
BATCH_REQUESTS = Histogram("kfp_ml_batch_requests", "Requests joined into one model call", ["model"],
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128))
BATCH_ROWS = Histogram("kfp_ml_batch_rows", "Rows in one model call", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
ERRORS = Counter("kfp_ml_prediction_errors", "Failed predictions by kind (invalid_input, model_error, timeout)",
                 ["model", "kind"])
UNSEEN = Counter("kfp_ml_unseen_categories", "Categorical values the model never saw in training, by model and column "
                 "(answered as unknown and flagged in the response)", ["model", "column"])
