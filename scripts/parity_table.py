"""Print the faces matrix of ``make parity`` as the markdown table of the README's "Reliability" section.

    CHAOS=1 .venv/bin/python -m pytest tests/reliability/test_faces.py   # writes build/parity/results.jsonl
    .venv/bin/python scripts/parity_table.py [--details]

Each line of the results file is one scenario: a face (Glue as the DAG drives it, or Dagster), the task or step,
the write that failed (its index and operation), before or after the server acted; then what was left stuck,
what the settled audit found, whether the end state equals a clean run's, and metrics counted above it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "build" / "parity" / "results.jsonl"
COLUMNS = (
    "face",
    "task / step",
    "write points",
    "faults",
    "stuck files",
    "audit violations",
    "lost or double counted",
    "end state = clean",
    "metrics over clean",
)


def rows(outcomes: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per (face, task), in the order met, and a total."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome["face"], outcome["task"]), []).append(outcome)
    table = [_row(face, task, group) for (face, task), group in groups.items()]
    total = _row("**total**", "", outcomes)
    total[2] = sum(row[2] for row in table)  # write points are counted per task
    return [*table, total]


def _row(face: str, task: str, group: list[dict[str, Any]]) -> list[Any]:
    lost = sum(1 for o in group for v in o["violations"] if "lost" in v or "twice" in v or "KPI" in v)
    return [
        face,
        task,
        len({o["write"] for o in group}),
        sum(o["fired"] for o in group),
        sum(len(o["stuck"]) for o in group),
        sum(len(o["violations"]) for o in group),
        lost,
        f"{sum(1 for o in group if not o['differences'])}/{len(group)}",
        sum(1 for o in group if o["overcounted"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--details", action="store_true", help="one line per scenario after the table")
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"no results at {args.results}: run `make parity` first", file=sys.stderr)
        return 1
    outcomes = [json.loads(line) for line in args.results.read_text(encoding="utf-8").splitlines() if line.strip()]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(COLUMNS) - 2))
    for row in rows(outcomes):
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    if args.details:
        for o in outcomes:
            print(
                f"{o['face']} {o['task']} write {o['write']} {o['operation']} {o['when']}: stuck {o['stuck']}, "
                f"violations {o['violations']}, differences {len(o['differences'])}, over {o['overcounted']}"
            )
    bad = [o for o in outcomes if o["stuck"] or o["violations"] or o["differences"] or o["overcounted"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
