#!/usr/bin/env bash
# Checks Python >= 3.11 and Java 17 (for Spark); with --python prints the interpreter to use.
set -euo pipefail
python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    python=$(command -v "$candidate"); break
  fi
done
if [ -z "$python" ]; then
  echo "error: Python 3.11 is required (Glue 5.1 parity): install python3.11 and retry" >&2; exit 1
fi
if [ "${1:-}" = "--python" ]; then echo "$python"; exit 0; fi
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  echo "error: Java 17 is required by Spark: install it (e.g. apt-get install openjdk-17-jre-headless) and retry" >&2; exit 1
fi
