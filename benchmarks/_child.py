"""Child-process entry: run one measurement of one workload and print its result as JSON (the last line).

Usage: ``python -m benchmarks._child '{"module": ..., "function": ..., "params": {...}, "warmup": {...}}'``.
A small warm-up run (its own event loop) comes first, so one-time costs (first validations, lazy imports) are not
measured. ``maxrss_mb`` is the peak RSS of this process, ``baseline_rss_mb`` the peak before the measured run
(after the imports and the warm-up) and ``rss_growth_mb`` the difference.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import resource
import sys
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def run(spec: dict[str, Any]) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.{spec['module']}")
    function = getattr(module, spec["function"])
    if spec.get("warmup") is not None:
        asyncio.run(function(**spec["warmup"]))
        gc.collect()
    baseline = _peak_rss_mb()
    result = dict(asyncio.run(function(**spec["params"])))
    result["maxrss_mb"] = _peak_rss_mb()
    result["baseline_rss_mb"] = baseline
    result["rss_growth_mb"] = result["maxrss_mb"] - baseline
    return result


def main() -> None:
    print(json.dumps(run(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
