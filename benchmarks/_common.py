"""Helpers shared by the workload modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks import BenchmarkError

END = object()
"""End-of-stream marker for the plain-asyncio queues."""


def check(condition: bool, message: str) -> None:
    """Raise `BenchmarkError` unless ``condition`` holds (unlike ``assert``, this survives ``python -O``)."""
    if not condition:
        raise BenchmarkError(message)


def check_sequence(actual: Sequence[Any], expected: Sequence[Any], what: str) -> None:
    """Check count, order and content, and name the first difference."""
    if len(actual) != len(expected):
        raise BenchmarkError(f"{what}: expected {len(expected)} items, got {len(actual)}")
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        if got != want:
            raise BenchmarkError(f"{what}: item {index} is {got!r}, expected {want!r}")
