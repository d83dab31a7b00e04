# i2v: two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export XDG_RUNTIME_DIR ?= /tmp/i2v-runtime-$(shell id -u)

.PHONY: install demo test serve lint format bench clean check-deploy openapi browser screenshots console-vendor

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[local,mcp,dev,tracing]"
	@mkdir -p $(XDG_RUNTIME_DIR) && chmod 700 $(XDG_RUNTIME_DIR)
	touch $@

install: $(VENV)/.installed  ## create .venv and install i2v with every extra

demo: install  ## start the local stack, make videos of examples/ through the HTTP API, download them
	$(PY) -m client demo

test: install lint check-deploy  ## lint, type-check, check the deployment package and run the whole test suite
	$(PY) -m pytest -q

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

check-deploy: install node_modules/.installed  ## offline: Lambda layers, `osls package`, cfn-lint, size budget
	$(PY) -m infra.check_deploy

openapi: install  ## regenerate openapi.json (a test fails while it is stale)
	$(PY) -m infra.openapi

serve: install  ## run the local stack in the foreground on :8000
	$(PY) -m client serve

lint: install  ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

browser:  ## install Debian's chromium and chromium-driver (the console's browser tests; skipped without them)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && echo "chromium and chromedriver are installed" \
	  || { sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	       $$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends chromium chromium-driver; }

screenshots: install browser  ## re-take the console screenshots in docs/screenshots/ (shown in the README)
	I2V_SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest -q tests/test_console.py tests/test_console_team.py

SUPABASE_JS_VERSION := 2.109.0
console-vendor:  ## refresh console/vendor/supabase.js from the npm registry (@supabase/supabase-js, pinned)
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent @supabase/supabase-js@$(SUPABASE_JS_VERSION) >/dev/null \
	  && tar xzf supabase-supabase-js-$(SUPABASE_JS_VERSION).tgz \
	  && cp package/dist/umd/supabase.js $(CURDIR)/console/vendor/supabase.js \
	  && cp package/LICENSE $(CURDIR)/console/vendor/supabase.LICENSE && rm -rf $$tmp \
	  && echo "console/vendor/supabase.js is @supabase/supabase-js $(SUPABASE_JS_VERSION)"

bench: install  ## run the benchmarks; JSON results go to bench/results/
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .i2v downloads .mypy_cache .ruff_cache .pytest_cache build .serverless node_modules
