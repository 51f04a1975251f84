"""Independent I/O calls (S3 transfers, DynamoDB requests) run a few at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def in_parallel(action: Callable[[_Item], _Result], items: Sequence[_Item], *, workers: int) -> list[_Result]:
    """``action`` on every item, up to ``workers`` at a time; the results in the items' order.

    The first failure is raised once every started call has ended.
    """
    if len(items) <= 1:
        return [action(item) for item in items]
    with ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="io") as pool:
        futures = [pool.submit(action, item) for item in items]
        return [future.result() for future in futures]
