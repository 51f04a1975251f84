"""``python -m bench.cases <case> [--data PATH] [--rows N]``: run one case, print one BENCH_RESULT line."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bench.cases import CASES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cases", description=__doc__)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--data", type=Path, help="dataset folder (sized cases) or the 1 GB file")
    parser.add_argument("--rows", type=int, default=0, help="stream rows of the dataset (for rows/s)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    module_name, function_name, _ = CASES[args.case]
    function = getattr(importlib.import_module(module_name), function_name)
    function(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
