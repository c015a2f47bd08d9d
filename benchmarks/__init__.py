"""Benchmarks of miniagents against hand-written asyncio (tasks and queues, no framework).

Run them all with ``python -m benchmarks`` (see ``python -m benchmarks --help`` and ``benchmarks/README.md``).
Every measurement runs in a fresh child process (``python -m benchmarks._child``), so its peak RSS belongs to that
one workload. Each workload checks its own result (counts, order, content) and raises `BenchmarkError` if it is
wrong. The benchmarks are kept apart from the test suite; ``tests/test_benchmarks_smoke.py`` only runs them small.
"""

from __future__ import annotations

__all__ = ["BenchmarkError"]


class BenchmarkError(RuntimeError):
    """A workload produced a wrong result (a fast wrong answer must not count)."""
