# Lookout: `make demo` runs the main job on the embedded stack, `make test` runs the tests.
# Both set up what is missing (venv, Python packages, Kafka jars, Prometheus) and are quick
# when nothing changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lookout-installed

.PHONY: setup demo test test-unit test-integration bench bench-gpu lint clean stack-down

setup: $(STAMP) kafka-jars prometheus

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstalls only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,embedded]'
	$(PY) -m pip install --quiet --no-deps 'aisfx==0.1.2'
	touch $(STAMP)

kafka-jars: $(STAMP)
	@$(VENV)/bin/lookout stack install

# Debian tools the tests use as an operator would: Prometheus + promtool, redis-cli, kcat,
# and headless Chromium with its WebDriver for the console tests (tests/integration/
# test_console.py). A freshly installed Debian Prometheus starts as a service: stopped
# again at once.
DEBIAN_TOOLS := prometheus:prometheus redis-cli:redis-tools kcat:kcat chromium:chromium \
	chromedriver:chromium-driver

prometheus:
	@for pair in $(DEBIAN_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ]; then \
	      echo "installing $$pkg (Debian package)"; \
	      (apt-get install -y -qq $$pkg >/dev/null 2>&1 || \
	       (apt-get update -qq >/dev/null && apt-get install -y -qq $$pkg >/dev/null)) && \
	      (systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true; \
	       pkill -x prometheus-node-exporter >/dev/null 2>&1 || true; \
	       pkill -x prometheus >/dev/null 2>&1 || true); \
	    else echo "$$cmd not installed and not root: the tests that use it will be skipped"; fi; \
	  fi; \
	done

demo: setup
	$(VENV)/bin/lookout demo

test: setup
	$(VENV)/bin/ruff check streams encoders tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

# Vectors per variant of `lookout bench index` (its own Redis servers; 200k takes tens of
# minutes on a small box: `make bench INDEX_BENCH_N=20000` for a quick look).
INDEX_BENCH_N ?= 200000

# One JSON with every figure, the ratios, the machine and the date: docs/deploy.md quotes it.
bench: setup
	@mkdir -p .bench
	$(VENV)/bin/lookout stack up
	$(PY) -m benchmarks.matching > .bench/matching.part.json
	$(VENV)/bin/lookout bench index --n $(INDEX_BENCH_N) --json .bench/index.part.json
	$(VENV)/bin/lookout bench all --add matching=.bench/matching.part.json \
	  --add index=.bench/index.part.json --json .bench/bench.json
	rm -f .bench/matching.part.json .bench/index.part.json

# On a machine with a CUDA GPU: the GPU tests (`pytest -m gpu`), then JPEG decoding on the
# GPU, the encoders at each batch size, float32/float16/bfloat16 and torch.compile off/on,
# and matching, in one JSON (benchmarks/gpu.py). Without CUDA it refuses in one line;
# `$(PY) -m benchmarks.gpu --device cpu ...` is the dry run of the same code.
bench-gpu: $(STAMP)
	@mkdir -p .bench
	$(PY) -m benchmarks.gpu --json .bench/gpu.json

lint: $(STAMP)
	$(VENV)/bin/ruff check streams encoders tests benchmarks
	$(VENV)/bin/lint-imports

stack-down:
	-$(VENV)/bin/lookout stack down

clean: stack-down
	rm -rf .lookout .pytest_cache
