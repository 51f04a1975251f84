# One entry point for newcomers: every target builds .venv from uv.lock first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup test demo dev bench chaos parity export check-airflow2 clean

setup: $(STAMP)

$(STAMP): pyproject.toml uv.lock scripts/check_prerequisites.sh
	@scripts/check_prerequisites.sh
	@test -x "$(UV)" || { echo "installing uv (python3 -m pip install --user uv)"; python3 -m pip install --quiet --user uv; }
	"$(UV)" sync --frozen --compile-bytecode --python "$$(scripts/check_prerequisites.sh --python)"
	$(BIN)/python -m compileall -q music_assets airflow_export lambda_trigger glue_scripts 2>/dev/null || true
	@touch $(STAMP)

test: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/music-pipeline demo

dev: setup
	$(BIN)/music-pipeline dev

export: setup
	$(BIN)/music-pipeline export --out build/mwaa

bench: setup
	$(BIN)/python -m bench.run $(if $(ROWS),--rows $(ROWS),)

chaos: setup
	$(BIN)/python -m pytest tests/reliability --chaos

# Both faces (Glue as the DAG drives it, Dagster) with a fault at every write of every step: prints the table.
parity: setup
	CHAOS=1 $(BIN)/python -m pytest tests/reliability/test_faces.py
	$(BIN)/python scripts/parity_table.py

check-airflow2: setup
	scripts/check_dag_airflow2.sh

clean:
	rm -rf $(VENV) build .stack .dagster_home
