# The two quick-start commands (README): `make demo` and `make test`. Each sets up what it needs.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
APT_PKGS = espeak-ng fortunes
ARGS    ?=

.PHONY: demo test setup system-deps clean

# Debian packages for the demo corpus (espeak-ng speaks real sentences from fortunes).
system-deps:
	@if ! command -v espeak-ng >/dev/null || [ ! -d /usr/share/games/fortunes ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PKGS); \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable install: the Hydra configs under conf/ are read from the checkout.
setup: system-deps $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"

# The whole demo: corpus, the five methods at one equal budget, dev/test scores, the comparison
# (runs/demo_all/report.md and report.html).
demo: setup
	$(BIN)/python -m bljust.demo $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 tests

clean:
	rm -rf runs outputs multirun .pytest_cache
