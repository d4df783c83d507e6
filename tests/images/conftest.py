"""Tests of the built step images (`make test-images`): slow, need podman and `make images`.

Collected only with PLATFORM_IMAGE_TESTS=1, so the default `pytest` run (tests/) leaves them out."""
import os

collect_ignore_glob = [] if os.environ.get("PLATFORM_IMAGE_TESTS") == "1" else ["test_*.py"]
