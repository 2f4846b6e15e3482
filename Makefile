# The two quick-start commands (README): `make demo` and `make test`. Each sets up what it needs.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
APT_PKGS = espeak-ng fortunes irstlm
ARGS    ?=
PYTEST   = $(BIN)/python -m pytest -q -p no:cacheprovider
# The extras the lock resolves: everything the test suite imports (dev), beam search (lm), ONNX (export).
LOCK_EXTRAS = --extra dev --extra lm --extra export
UV_VERSION  = 0.13.9

.PHONY: demo test test-fast setup lock system-deps clean

# Debian packages for the demo corpus (espeak-ng speaks real sentences from fortunes) and for
# building its n-gram LM (irstlm: python -m bljust.build_lm).
system-deps:
	@if ! command -v espeak-ng >/dev/null || [ ! -d /usr/share/games/fortunes ] || [ ! -x /usr/lib/irstlm/bin/build-lm.sh ]; then \
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
	$(PYTEST) --durations=15 tests

# The edit-test loop: unit tests only, nothing that trains (tests marked `train` are left out).
test-fast: setup
	$(PYTEST) -m "not train" tests

clean:
	rm -rf runs outputs multirun .pytest_cache
