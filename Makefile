PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo cluster-demo test soak fuzz mutate bench lint clean install-airflow test-airflow airflow-demo

install: $(STAMP)

# PyICU (look-alike names, docs/security.md) builds against the system ICU: on Debian it needs
# libicu-dev, pkg-config and a C++ compiler, installed here when missing and running as root.
define icu_build_deps
	@(command -v pkg-config >/dev/null && pkg-config --exists icu-uc) || [ "$$(id -u)" -ne 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libicu-dev pkg-config g++)
endef

$(STAMP): pyproject.toml
	$(icu_build_deps)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m flows.demo

# Three models on two process workers: Prefect and the registry server on PostgreSQL, S3 on moto,
# one approval in the Prefect UI (headless Debian Chromium); prints the story and its measurements.
cluster-demo: install
	@command -v chromium >/dev/null || [ "$$(id -u)" -ne 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/python -m flows.cluster.demo

# Two workers on CI's two cores; each file stays on one worker (its module fixtures are shared).
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# Airflow 3 in an environment of its own: Airflow pins FastAPI below the range Prefect needs, so
# it holds govflow without Prefect (the DAGs never import it). See docs/airflow.md.
AF_VENV := .venv-airflow
AF_BIN := $(AF_VENV)/bin
AF_STAMP := $(AF_VENV)/.installed

install-airflow: $(AF_STAMP)

$(AF_STAMP): pyproject.toml
	$(icu_build_deps)
	test -x $(AF_BIN)/python || $(PY) -m venv $(AF_VENV)
	$(AF_BIN)/python -m pip install --quiet --upgrade pip
	$(AF_BIN)/python govflow/airflow/requirements.py > $(AF_VENV)/requirements.txt
	$(AF_BIN)/python -m pip install --quiet -r $(AF_VENV)/requirements.txt
	$(AF_BIN)/python -m pip install --quiet --no-deps -e .
	touch $(AF_STAMP)

# A real Airflow (api-server, scheduler, dag-processor) on loopback, answered through its REST API,
# and the DAG stages themselves in the environment without Prefect.
test-airflow: install-airflow
	GOVFLOW_AIRFLOW_TESTS=1 $(AF_BIN)/python -m pytest tests/airflow tests/flows/test_airflow_stages.py --confcutdir=tests/airflow -p no:cacheprovider --timeout=900

airflow-demo: install-airflow
	$(AF_BIN)/python -m govflow.airflow.demo

# Long profiles: the crash matrix with 100 kills per backend, the fuzzers with 10,000 examples.
soak: install
	GOVFLOW_SOAK_KILLS=100 $(BIN)/python -m pytest tests/reliability -k crash --timeout=0 -s

fuzz: install
	GOVFLOW_FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest tests/reliability -k fuzz --timeout=0 -s

mutate: install
	$(BIN)/python -m pip install --quiet -e '.[dev,mutate]'
	$(BIN)/python -m bench.mutate

# Every suite in one run (registry, audit, artifacts, checks, serving, server, load), written to
# docs/benchmarks.md; the load run lasts GOVFLOW_LOAD_SECONDS (default 60). Not part of `make test`.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	GOVFLOW_LOAD_SECONDS=$${GOVFLOW_LOAD_SECONDS:-60} $(BIN)/python -m bench

lint: install
	$(BIN)/ruff check registry checks flows deployments govflow tests bench

clean:
	rm -rf $(VENV) $(AF_VENV) .govflow
