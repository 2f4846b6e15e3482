# The two quick-start commands (README): `make demo` and `make test`. Each sets up what it needs.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
APT_PKGS = espeak-ng fortunes irstlm flite wordnet-base
ARGS    ?=
PYTEST   = $(BIN)/python -m pytest -q -p no:cacheprovider
# pytest-xdist workers, one per core (tests/conftest.py gives each one intra-op thread); TEST_JOBS=0
# runs the suite in one process. Tests are dealt out one by one (xdist's default): keeping a
# file on one worker (--dist loadscope) builds its module fixtures once but was slower overall
# (13.1 against 12.3 min on 2 cores), as test_train.py alone then holds one worker for 7 minutes.
TEST_JOBS ?= 2
XDIST     = $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS))
# The extras the lock resolves: everything the test suite imports (dev), beam search (lm), ONNX (export).
LOCK_EXTRAS = --extra dev --extra lm --extra export
UV_VERSION  = 0.13.9

.PHONY: demo test test-fast gpu-check setup lock system-deps clean

# Debian packages for the demo corpus (espeak-ng speaks real sentences from fortunes), for
# building its n-gram LM (irstlm: python -m bljust.build_lm) and for the telephone target domain
# of the adaptation study (flite speaks WordNet's sentences: bljust/data/target_corpus.py).
system-deps:
	@if ! command -v espeak-ng >/dev/null || [ ! -d /usr/share/games/fortunes ] || [ ! -x /usr/lib/irstlm/bin/build-lm.sh ] \
	     || ! command -v flite >/dev/null || [ ! -f /usr/share/wordnet/data.noun ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PKGS); \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Exactly the locked set (requirements.lock), then the package itself without resolving anything
# again; redone whenever the lock or pyproject changes. The editable install reads conf/ from the
# checkout.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: system-deps $(VENV)/.installed

# Re-resolve requirements.lock from pyproject.toml's ranges: after changing a dependency there,
# or with UPGRADE=1 to move every package to its newest allowed release. Then run `make test` on a
# fresh clone before committing the new lock.
lock: | $(BIN)/python
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_EXTRAS) --universal --python-version 3.11 \
	  $(if $(UPGRADE),--upgrade) -o requirements.lock

# The whole demo: corpus, the five methods at one equal budget, dev/test scores, the comparison
# (runs/demo_all/report.md and report.html).
demo: setup
	$(BIN)/python -m bljust.demo $(ARGS)

# The full suite, as CI runs it.
test: setup
	$(PYTEST) $(XDIST) --durations=15 tests

# The edit-test loop: unit tests only, nothing that trains (tests marked `train` are left out).
test-fast: setup
	$(PYTEST) $(XDIST) -m "not train" tests

# On a machine with a CUDA GPU, in under 5 minutes: the tests marked `cuda` (bf16 autocast, the
# fused AdamW's sync-free skip, max_allocated_mb), then the bf16 MFU of model=large on a small
# demo corpus of its own (docs/benchmarks.md records the figures).
GPU_CHECK_DATA = train.num_buckets=2 recipe.demo.train_minutes=10 recipe.demo.unlabelled_minutes=2 recipe.demo.dev_minutes=0.5 \
  recipe.demo.test_minutes=0.5 recipe.demo.workers=8 recipe.corpus_dir=data/gpu_check/corpus \
  recipe.data_dir=data/gpu_check/prepared
gpu-check: setup
	@$(BIN)/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: no CUDA GPU here')"
	timeout 300 sh -c '$(PYTEST) -m cuda tests/test_cuda.py && \
	  $(BIN)/python tools/bench_mfu.py --precision bf16 --rounds 10 model=large train.max_duration=200 $(GPU_CHECK_DATA)'

clean:
	rm -rf runs outputs multirun .pytest_cache
