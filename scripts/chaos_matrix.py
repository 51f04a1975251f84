"""Turn the reliability matrix's results into the markdown table of the README's "Reliability" section.

    .venv/bin/python -m pytest tests/reliability --chaos      # writes build/chaos/results.jsonl
    .venv/bin/python scripts/chaos_matrix.py                  # prints the table
    .venv/bin/python scripts/chaos_matrix.py --details        # plus one line per scenario

Each line of the results file is one scenario (a test) recorded by ``tests/reliability/conftest.py``:
its fault family, what it injected, how many inputs (files, keys, ids) it tried, the rows the audit and
the oracle found lost or counted twice, and whether every assertion held.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "build" / "chaos" / "results.jsonl"
FAMILY_ORDER = ["crash (SIGKILL)", "transient AWS errors", "races", "versions", "restarts", "hostile input", "memory"]


def load(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("session"):
            header = record
        else:
            rows.append(record)
    return header, rows


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def summary_table(rows: Iterable[dict[str, Any]]) -> str:
    families: OrderedDict[str, dict[str, Any]] = OrderedDict((name, _zero()) for name in FAMILY_ORDER)
    for row in rows:
        family = families.setdefault(row["category"], _zero())
        family["scenarios"] += 1
        family["survived"] += bool(row.get("survived"))
        family["faults"] += int(row.get("faults_injected", 0))
        family["inputs"] += int(row.get("inputs", 0))
        family["rows_in"] += int(row.get("rows_in", 0))
        family["lost"] += int(row.get("rows_lost", 0))
        family["double"] += int(row.get("double_counted", 0))
    lines = [
        "| fault family | scenarios | faults injected | survived | inputs tried | rows checked | rows lost "
        "| double-counted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = _zero()
    for name, family in families.items():
        if not family["scenarios"]:
            continue
        for key in total:
            total[key] += family[key]
        lines.append(_line(name, family))
    lines.append(_line("**total**", total, bold=True))
    return "\n".join(lines)


def _zero() -> dict[str, Any]:
    return {"scenarios": 0, "survived": 0, "faults": 0, "inputs": 0, "rows_in": 0, "lost": 0, "double": 0}


def _line(name: str, f: dict[str, Any], bold: bool = False) -> str:
    survived = f"{f['survived']}/{f['scenarios']}"
    cells = [
        f["scenarios"],
        f"{f['faults']:,}",
        survived,
        f"{f['inputs']:,}",
        f"{f['rows_in']:,}",
        f["lost"],
        f["double"],
    ]
    if bold:
        cells = [f"**{c}**" for c in cells]
    return "| " + " | ".join([name, *map(str, cells)]) + " |"


def details_table(rows: Iterable[dict[str, Any]]) -> str:
    lines = [
        "| family | scenario | faults | inputs | rows lost | double-counted | survived | s |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in sorted(
        rows, key=lambda r: (FAMILY_ORDER.index(r["category"]) if r["category"] in FAMILY_ORDER else 99, r["test"])
    ):
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in [
                    row["category"],
                    row["fault"],
                    row.get("faults_injected", 0),
                    row.get("inputs", 0),
                    row.get("rows_lost", 0),
                    row.get("double_counted", 0),
                    "yes" if row.get("survived") else "**NO**",
                    row.get("seconds", ""),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--details", action="store_true", help="add one line per scenario")
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"no results at {args.results}: run `make chaos` first", file=sys.stderr)
        return 2
    header, rows = load(args.results)
    if not rows:
        print(f"{args.results} holds no scenario", file=sys.stderr)
        return 2
    scope = "full matrix (`make chaos`)" if header.get("full_matrix") else "CI subset (`pytest tests/reliability`)"
    print(summary_table(rows))
    print(f"\n_{len(rows)} scenarios, {scope}._")
    if args.details:
        print()
        print(details_table(rows))
    failed = [r for r in rows if not r.get("survived") or r.get("rows_lost") or r.get("double_counted")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
