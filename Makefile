# infraprof developer tasks. Every target sets up what it needs (a local .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_TRACE ?= sample_traces/demo_host_stall.sqlite

.PHONY: venv tools tools-if-root demo test lint typecheck check bench clean docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Real Nsight Systems / Compute from Debian non-free (root, Debian 12).
tools:
	sh scripts/install-nsight.sh

# Best effort outside CI: install when root and missing, otherwise tests that need nsys skip.
tools-if-root:
	@if command -v nsys >/dev/null 2>&1; then nsys --version; \
	elif [ "$$(id -u)" = 0 ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then sh scripts/install-nsight.sh; \
	elif [ "$${CI:-}" = true ]; then echo "CI: nsys missing and cannot be installed" >&2; exit 1; \
	else echo "nsys not installed (run 'sudo make tools'); tests that need it will skip"; fi
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then sh scripts/install-chromium.sh; \
	elif [ "$${CI:-}" = true ]; then echo "CI: chromium missing and cannot be installed" >&2; exit 1; \
	else echo "chromium not installed (sudo sh scripts/install-chromium.sh); the HTML browser test will skip"; fi

demo: venv
	$(VENV)/bin/infraprof analyze $(DEMO_TRACE)

test: venv tools-if-root
	$(PY) -m pytest -q

# Regenerate docs/cli-reference.md from every command's --help (tests/test_docs.py checks it).
docs: venv
	$(PY) scripts/gen_cli_docs.py

lint: venv
	$(VENV)/bin/ruff check infraprof tests scripts
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy --strict infraprof

check: lint typecheck test

# Real-derived export of BENCH_KERNELS kernels (default 1 M) vs bare read and nsys stats;
# method and figures in docs/performance.md. BENCH_KERNELS=250000 make bench for a quick run.
bench: venv
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
