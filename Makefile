# Lookout: `make demo` runs the main job on the embedded stack, `make test` runs the tests.
# Both set up what is missing (venv, Python packages, Kafka jars, Prometheus) and are quick
# when nothing changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lookout-installed

.PHONY: setup demo test test-unit test-integration bench lint clean stack-down

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

prometheus:
	@if ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing prometheus (Debian package)"; \
	    (apt-get install -y -qq prometheus >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq prometheus >/dev/null)) && \
	    (systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true; \
	     pkill -x prometheus-node-exporter >/dev/null 2>&1 || true; \
	     pkill -x prometheus >/dev/null 2>&1 || true); \
	  else echo "prometheus not installed and not root: the Prometheus test will be skipped"; fi; \
	fi

demo: setup
	$(VENV)/bin/lookout demo

test: setup
	$(VENV)/bin/ruff check streams encoders tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

bench: setup
	@mkdir -p .bench
	$(VENV)/bin/lookout stack up
	$(VENV)/bin/lookout bench encoders --json .bench/encoders.json
	$(VENV)/bin/lookout bench pipeline --json .bench/pipeline.json
	$(PY) -m benchmarks.matching | tee .bench/matching.json

lint: $(STAMP)
	$(VENV)/bin/ruff check streams encoders tests benchmarks
	$(VENV)/bin/lint-imports

stack-down:
	-$(VENV)/bin/lookout stack down

clean: stack-down
	rm -rf .lookout .pytest_cache
