"""Run the workloads in child processes, interleaving miniagents and plain asyncio, and print the results table."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import BenchmarkError

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measurement:
    """One workload configuration, measured as ``ours`` and as ``plain`` asyncio."""

    name: str
    module: str
    ours: str
    plain: str
    params: dict[str, Any]
    warmup: dict[str, Any] | None
    results: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"ours": [], "asyncio": []})

    def median(self, side: str, key: str) -> float:
        return statistics.median(result[key] for result in self.results[side])


@dataclass
class Row:
    """A line of the results table."""

    label: str
    unit: str
    ours: float
    plain: float | None
    ratio_text: str
    target: str
    ok: bool | None


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; a wrong result (or any failure) raises `BenchmarkError`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks._child", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchmarkError(
            f"{spec['module']}.{spec['function']}({spec['params']}) failed with exit code {completed.returncode}:\n"
            f"{completed.stderr.strip()}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def build_measurements(args: argparse.Namespace) -> list[Measurement]:
    only = {name.strip().upper() for name in args.only.split(",")} if args.only else None
    measurements: list[Measurement] = []

    def add(key: str, *items: Measurement) -> None:
        if only is None or key in only:
            measurements.extend(items)

    add("W1", Measurement("W1", "w1_round_trips", "ours", "plain", {"n": args.w1_n}, {"n": 50}))
    add(
        "W2",
        *[Measurement(f"W2 N={n}", "w2_fan_out", "ours", "plain", {"n": n}, {"n": 50}) for n in args.w2_n],
    )
    w3_measurements = []
    for forward in (False, True):
        kind = "forward" if forward else "new"
        w3_measurements.append(
            Measurement(
                f"W3 {kind} throughput",
                "w3_token_relay",
                "ours_throughput",
                "plain_throughput",
                {"tokens": args.w3_tokens, "relays": args.w3_relays, "forward": forward},
                {"tokens": 200, "relays": args.w3_relays, "forward": forward},
            )
        )
    for forward in (False, True):
        kind = "forward" if forward else "new"
        w3_measurements.append(
            Measurement(
                f"W3 {kind} first token",
                "w3_token_relay",
                "ours_first_token",
                "plain_first_token",
                {"relays": args.w3_relays, "sleep": args.w3_sleep, "forward": forward},
                {"relays": args.w3_relays, "sleep": 0.01, "forward": forward},
            )
        )
    add("W3", *w3_measurements)
    add(
        "W4",
        Measurement(
            "W4",
            "w4_parallel_llm",
            "ours",
            "plain",
            {"n": args.w4_n, "latency": args.w4_latency, "token_interval": args.w4_token_interval},
            {"n": 10, "latency": 0.01, "token_interval": args.w4_token_interval},
        ),
    )
    add(
        "W5",
        Measurement("W5", "w5_tool_round_trip", "ours", "plain", {"n": args.w5_n}, {"n": 50}),
        Measurement("W5 answer", "w5_tool_round_trip", "ours_answer", "plain_answer", {"n": args.w5_n}, {"n": 50}),
    )
    add(
        "W6",
        Measurement("W6", "w6_cancellation", "ours", "plain", {"n": args.w6_n}, {"n": 20}),
        Measurement("W6 last token", "w6_cancellation", "ours_last_token", "plain_last_token", {"n": 50}, {"n": 2}),
    )
    return measurements


def run_all(measurements: list[Measurement], repetitions: int, timeout: float, progress: bool) -> None:
    """Interleave: every repetition measures every workload both ways, alternating which side goes first."""
    for repetition in range(repetitions):
        for measurement in measurements:
            sides = [("ours", measurement.ours), ("asyncio", measurement.plain)]
            if repetition % 2:
                sides.reverse()
            for side, function in sides:
                spec = {
                    "module": measurement.module,
                    "function": function,
                    "params": measurement.params,
                    "warmup": measurement.warmup,
                }
                result = run_child(spec, timeout)
                measurement.results[side].append(result)
                if progress:
                    shown = {k: round(v, 3) for k, v in result.items() if isinstance(v, float)}
                    label = f"rep {repetition + 1}/{repetitions} {measurement.name:<24} {side:<8}"
                    print(f"  {label} {shown}", file=sys.stderr)


def _ratio_row(
    label: str,
    unit: str,
    measurement: Measurement,
    key: str,
    target: str,
    ok: Callable[[float, float, float], bool] | None,
) -> Row:
    ours = measurement.median("ours", key)
    plain = measurement.median("asyncio", key)
    ratio = ours / plain if plain else float("inf")
    return Row(label, unit, ours, plain, f"{ratio:.2f}x", target, None if ok is None else ok(ours, plain, ratio))


def build_rows(measurements: list[Measurement]) -> list[Row]:
    by_name = {measurement.name: measurement for measurement in measurements}
    rows: list[Row] = []
    if "W1" in by_name:
        m = by_name["W1"]
        rows.append(
            _ratio_row(
                f"W1 round trips, N={m.params['n']}", "µs/call", m, "us_per_call", "≤ 4x", lambda o, p, r: r <= 4
            )
        )
    w2 = [m for name, m in by_name.items() if name.startswith("W2 ")]
    for m in w2:
        n = m.params["n"]
        rows.append(
            _ratio_row(f"W2 fan-out, N={n}", "µs/sub-agent", m, "us_per_sub_agent", "≤ 4x", lambda o, p, r: r <= 4)
        )
        rows.append(_ratio_row(f"W2 fan-out, N={n}", "peak RSS MB", m, "maxrss_mb", "", None))
        rows.append(_ratio_row(f"W2 fan-out, N={n}", "RSS growth MB", m, "rss_growth_mb", "", None))
    if len(w2) >= 2:
        small, large = min(w2, key=lambda m: m.params["n"]), max(w2, key=lambda m: m.params["n"])
        ours = large.median("ours", "us_per_sub_agent") / small.median("ours", "us_per_sub_agent")
        plain = large.median("asyncio", "us_per_sub_agent") / small.median("asyncio", "us_per_sub_agent")
        rows.append(
            Row(
                f"W2 cost/sub-agent N={large.params['n']} vs N={small.params['n']}",
                "ratio",
                ours,
                plain,
                "",
                "ours ≤ 1.3",
                ours <= 1.3,
            )
        )
    for kind in ("new", "forward"):
        m = by_name.get(f"W3 {kind} throughput")
        if m is not None:
            what = "new message per relay" if kind == "new" else "promises forwarded"
            rows.append(
                _ratio_row(
                    f"W3 relay T={m.params['tokens']} K={m.params['relays']}, {what}",
                    "tokens/s",
                    m,
                    "tokens_per_s",
                    "≥ 0.5x",
                    lambda o, p, r: r >= 0.5,
                )
            )
    for kind in ("new", "forward"):
        m = by_name.get(f"W3 {kind} first token")
        if m is not None:
            what = "new message per relay" if kind == "new" else "promises forwarded"
            rows.append(
                _ratio_row(
                    f"W3 first token K={m.params['relays']}, {what}",
                    "ms from inquiry",
                    m,
                    "ttft_ms",
                    "ours < 2 ms",
                    lambda o, p, r: o < 2,
                )
            )
            rows.append(
                _ratio_row(
                    f"W3 first token K={m.params['relays']}, {what}", "ms from emission", m, "emit_to_end_ms", "", None
                )
            )
    if "W4" in by_name:
        m = by_name["W4"]
        rows.append(
            _ratio_row(
                f"W4 parallel LLM calls, N={m.params['n']}", "wall ms", m, "wall_ms", "≤ 1.3x", lambda o, p, r: r <= 1.3
            )
        )
        rows.append(_ratio_row(f"W4 parallel LLM calls, N={m.params['n']}", "peak RSS MB", m, "maxrss_mb", "", None))
        rows.append(
            _ratio_row(f"W4 parallel LLM calls, N={m.params['n']}", "RSS growth MB", m, "rss_growth_mb", "", None)
        )
    if "W5" in by_name:
        m = by_name["W5"]
        rows.append(
            _ratio_row(f"W5 tool round trip, N={m.params['n']}", "µs/round trip", m, "us_per_round_trip", "", None)
        )
        ours = m.median("ours", "us_per_round_trip") - m.median("asyncio", "us_per_round_trip")
        rows.append(
            Row("W5 framework overhead per tool call", "µs (ours - asyncio)", ours, None, "", "< 200 µs", ours < 200)
        )
        answer = by_name.get("W5 answer")
        if answer is not None:
            rows.append(
                _ratio_row(
                    f"W5 answer without tools, N={answer.params['n']}",
                    "µs/inquiry",
                    answer,
                    "us_per_round_trip",
                    "",
                    None,
                )
            )
            extra = ours + answer.median("asyncio", "us_per_round_trip") - answer.median("ours", "us_per_round_trip")
            rows.append(
                Row("W5 overhead of the tool call alone", "µs (minus no-tool answer)", extra, None, "", "", None)
            )
    if "W6" in by_name:
        m = by_name["W6"]
        rows.append(
            _ratio_row(
                f"W6 cancel a tree of N={m.params['n']} running calls", "ms until every task is done", m,
                "ms_to_cancel", "< 100 ms", lambda ours, plain, ratio: ours < 100,
            )
        )  # fmt: skip
        last = by_name.get("W6 last token")
        if last is not None:
            worst = max(run["tokens_after_cancel"] for run in last.results["ours"])
            rows.append(
                Row("W6 tokens yielded after cancel()", "worst of 50 x reps", worst, None, "", "≤ 1", worst <= 1)
            )
    return rows


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def format_table(rows: list[Row]) -> str:
    header = ["workload", "metric", "miniagents", "asyncio", "ours/asyncio", "target", "ok"]
    lines = [header]
    for row in rows:
        ok = "" if row.ok is None else ("yes" if row.ok else "NO")
        lines.append([row.label, row.unit, _number(row.ours), _number(row.plain), row.ratio_text, row.target, ok])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + " |" for line in lines
    ]
    out.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(out)


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="miniagents vs plain asyncio: W1 round trips, W2 fan-out, W3 token relay, W4 parallel LLM calls, "
        "W5 tool round trips, W6 cancellation.",
    )
    parser.add_argument("-r", "--repetitions", type=int, default=5, help="measurements per side (median; default 5)")
    parser.add_argument("--only", default="", help="comma-separated workloads to run, e.g. W1,W3")
    parser.add_argument("--w1-n", type=int, default=5000, help="W1 sequential calls (default 5000)")
    parser.add_argument("--w2-n", type=_int_list, default=[2000, 20000], help="W2 sub-agents (default 2000,20000)")
    parser.add_argument("--w3-tokens", type=int, default=20000, help="W3 tokens T (default 20000)")
    parser.add_argument("--w3-relays", type=int, default=5, help="W3 relay agents K (default 5)")
    parser.add_argument("--w3-sleep", type=float, default=0.5, help="W3 first-token: the source's sleep (0.5 s)")
    parser.add_argument("--w4-n", type=int, default=1000, help="W4 parallel agents (default 1000)")
    parser.add_argument("--w4-latency", type=float, default=0.1, help="W4 sleep before the first token (0.1 s)")
    parser.add_argument("--w4-token-interval", type=float, default=0.001, help="W4 token interval (0.001 s)")
    parser.add_argument("--w5-n", type=int, default=3000, help="W5 sequential tool round trips (default 3000)")
    parser.add_argument("--w6-n", type=int, default=1000, help="W6 running agent calls cancelled (default 1000)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per child process (default 600)")
    parser.add_argument("--json", type=Path, help="also write all raw results to this file")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if a target is missed")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-measurement progress on stderr")
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    measurements = build_measurements(args)
    started = time.perf_counter()
    run_all(measurements, args.repetitions, args.timeout, progress=not args.quiet)
    rows = build_rows(measurements)
    print(
        f"miniagents vs plain asyncio: medians of {args.repetitions} runs each, interleaved, one process per run "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.perf_counter() - started:.0f} s)"
    )
    print(format_table(rows), flush=True)
    if args.json is not None:
        args.json.write_text(
            json.dumps({m.name: {"params": m.params, "results": m.results} for m in measurements}, indent=2)
        )
    missed = [row for row in rows if row.ok is False]
    if missed:
        print("targets missed: " + "; ".join(f"{row.label} ({row.unit})" for row in missed))
    return 1 if missed and args.strict else 0
