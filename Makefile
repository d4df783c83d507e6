# The two commands a newcomer needs:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torchvision (timm, Ultralytics) needs a torch built with it: 2.14.1 + 0.29.1 (CUDA builds that also run
# on a CPU). On another CUDA version, set TORCH="torch==<version> torchvision==<version>".
TORCH  ?= torch==2.14.1 torchvision==0.29.1
RECIPE ?= pipelines/recipes/california-housing.yaml

.PHONY: setup run test test-heavy test-fast bench compile models stop clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: setup           ## the default recipe through the whole DAG locally, ending with a served model
	$(BIN)/python pipelines/submit.py --recipe $(RECIPE)

test: setup          ## unit, integration (real local services) and end-to-end tests (~12 min on 2 cores)
	$(BIN)/python -m pytest -q --durations=15 -m "not heavy"

test-heavy: setup    ## whole-DAG checks of minutes: every image/text family, each recipe field, each data trait (CI)
	$(BIN)/python -m pytest -q --durations=10 -m heavy

test-fast: setup     ## unit tests only, without the ones marked slow (under a minute)
	$(BIN)/python -m pytest -q tests/unit -m "not slow"

bench: setup         ## benchmarks (figures in README): training loop, windowing, serving load, California RMSE and time to quality
	$(BIN)/python tests/benchmarks/bench_tabular_training.py
	$(BIN)/python tests/benchmarks/bench_windowing.py
	$(BIN)/python tests/benchmarks/bench_ts_train.py
	$(BIN)/python tests/benchmarks/bench_serving.py
	$(BIN)/python tests/benchmarks/bench_transform.py
	$(BIN)/python tests/benchmarks/bench_california.py
	$(BIN)/python tests/benchmarks/bench_time_to_quality.py
	$(BIN)/python tests/benchmarks/bench_batch_predict.py
	$(BIN)/python tests/benchmarks/bench_threads.py
	$(BIN)/python tests/benchmarks/bench_dag.py

compile: setup       ## pipelines/compiled/pipeline.yaml for the KFP UI
	$(BIN)/python pipelines/compile.py --recipe $(RECIPE)

models: setup        ## the model catalog
	$(BIN)/python -m components.models list

stop:                ## stop local model servers (and, with podman, the container runner's containers)
	$(BIN)/python -c "import json,pathlib;from components.steps.deploy import stop_local_server as s;[s(p.stem) for p in pathlib.Path('.platform/serving').glob('*.json')]"
	if command -v podman >/dev/null; then $(BIN)/python pipelines/container_runner.py stop; fi

clean: stop
	rm -rf .platform pipelines/compiled

# ---- container images (podman; scripts/podman-setup.sh installs and configures it when missing) ----
.PHONY: images test-images

images:              ## every step image (data, train, registry, deploy, serving) with podman; see scripts/build-images.sh
	scripts/build-images.sh

test-images: setup images   ## each step in its image as uid 1000 read-only, the DAG with --runner container, the serving image
	PLATFORM_IMAGE_TESTS=1 $(BIN)/python -m pytest -q tests/images --durations=10
