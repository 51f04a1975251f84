#!/usr/bin/env bash
# Imports the generated MWAA DAG through DagBag on Airflow 2 (MWAA's 2.10 / 2.11 line) in a
# throw-away venv, and checks it has the same tasks and edges as under the project's Airflow 3.
# Not part of `make test`: it installs Airflow 2 from PyPI into a temporary folder (uv: ~20 s).
#
# Usage: scripts/check_dag_airflow2.sh [AIRFLOW_VERSION]      (default 2.10.5; e.g. 2.11.0)
#        AMAZON_PROVIDER=9.0.0 scripts/check_dag_airflow2.sh  (pin the provider; default: newest that fits)
#        DAG_FILE=path/to/dag.py scripts/check_dag_airflow2.sh (check that file instead of a fresh export)
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-2.10.5}"
uv="$(command -v uv || echo "$HOME/.local/bin/uv")"
[ -x "$uv" ] || { echo "error: uv is needed (python3 -m pip install --user uv)" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "error: .venv is missing: run 'make setup' first" >&2; exit 1; }
python="$(scripts/check_prerequisites.sh --python)"
work="$(mktemp -d "${TMPDIR:-/tmp}/check-airflow2.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ -n "${DAG_FILE:-}" ]; then
  mkdir -p "$work/dags" && cp "$DAG_FILE" "$work/dags/"
else
  .venv/bin/python -c 'import sys; from pathlib import Path; from airflow_export import export_bundle; export_bundle(Path(sys.argv[1]))' "$work/bundle"
  mkdir -p "$work/dags" && cp "$work/bundle/dags/"*.py "$work/dags/"
fi

# The task graph as Airflow sees it: {dag_id: {task_id: [downstream ids]}}, import errors fail.
read -r -d '' probe <<'PY' || true
import json, sys
try:
    from airflow.models.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
except TypeError:
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
if bag.import_errors:
    sys.exit("import errors: " + json.dumps({k: v[-2000:] for k, v in bag.import_errors.items()}, indent=2))
print(json.dumps({d: {t.task_id: sorted(t.downstream_task_ids) for t in bag.dags[d].tasks} for d in sorted(bag.dags)}, sort_keys=True))
PY

started=$SECONDS
echo "installing apache-airflow==$version with the Amazon provider into $work/venv ..."
"$uv" venv --quiet --python "$python" "$work/venv"
"$uv" pip install --quiet --python "$work/venv/bin/python" "apache-airflow==$version" \
  "apache-airflow-providers-amazon${AMAZON_PROVIDER:+==$AMAZON_PROVIDER}"
provider="$("$work/venv/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow-providers-amazon"))')"
echo "installed in $((SECONDS - started)) s (apache-airflow-providers-amazon $provider)"

run_probe() {  # $1: python of the Airflow to use
  env -u AIRFLOW__CORE__DAGS_FOLDER AIRFLOW_HOME="$work/home-$(basename "$(dirname "$(dirname "$1")")")" \
    AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__UNIT_TEST_MODE=True \
    "$1" -W ignore -c "$probe" "$work/dags" 2>"$work/probe.err" | tail -n 1
}
airflow2="$(run_probe "$work/venv/bin/python")" || { cat "$work/probe.err" >&2; exit 1; }
airflow3="$(run_probe "$PWD/.venv/bin/python")" || { cat "$work/probe.err" >&2; exit 1; }
if [ "$airflow2" != "$airflow3" ]; then
  echo "FAIL: the task graph differs between Airflow $version and the project's Airflow 3" >&2
  echo "  Airflow $version: $airflow2" >&2
  echo "  Airflow 3:      $airflow3" >&2
  exit 1
fi
echo "OK: the DAG imports on Airflow $version (amazon provider $provider) with the same tasks and edges as on Airflow 3"
echo "    $airflow2"
echo "total $((SECONDS - started)) s"
