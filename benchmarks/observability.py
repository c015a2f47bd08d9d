"""What tracing and the live view cost: ``python benchmarks/observability.py`` (see benchmarks/README.md).

* **Tracing, W1**: W1's sequential round trips (an echo agent, N calls) with no observer, and with an
  `OpenTelemetryObserver` exporting every span to the SDK's `InMemorySpanExporter` (SimpleSpanProcessor). With
  ``--baseline-root DIR`` (an unpacked older tree, e.g. ``git archive <commit> | tar -x -C DIR``) W1 also runs
  on that tree, which shows what the observation seam costs when tracing is off. A third side makes the same
  spans without miniagents: no observer, the loop itself starts a span before each call and ends it after, with
  the same name, kind and attributes, kept by the same exporter. That is the floor any observer that makes one
  SDK span per call stands on.
* **View, paced**: 1,000 agent calls per second for a few seconds (a call is started every millisecond; each agent
  replies one short message), without and with a `ViewPublisher` sending to a ``miniagents view`` server in its own
  process. Reported: the run's wall time, its CPU time, and whether the server has every call when the run ends.
* **View, flat out**: N concurrent calls (W2-like fan-out) as fast as possible, without and with the publisher:
  µs per call.

Every measurement runs in a fresh interpreter (this file with ``--child``), the two sides
interleaved; the table shows medians (for tracing also the ratio within each repetition, whose sides ran back to
back). Run it from the repository root: ``python benchmarks/observability.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# --- workloads (run in the child) ----------------------------------------------------------------------------------


def _w1(
    n: int, tracing: bool, noop_observer: bool = False, keep_spans: bool = True, loop_spans: bool = False
) -> dict[str, Any]:
    from miniagents import InteractionContext, MiniAgents, miniagent

    observers: list[Any] = []
    exporter: Any = None
    loop_tracer: Any = None
    if noop_observer:
        from miniagents import RunObserver

        observers.append(RunObserver())
    if tracing:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.trace import SpanKind

        from miniagents.ext.tracing import OpenTelemetryObserver

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        if keep_spans:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:  # the same processor and exporter, but the spans are counted and dropped (as an OTLP export would)
            count = [0]

            class CountingExporter(InMemorySpanExporter):
                def export(self, spans: Any) -> Any:
                    count[0] += len(spans)
                    return super().export(())

                def get_finished_spans(self) -> Any:
                    return [None] * count[0]

                def clear(self) -> None:
                    count[0] = 0

            exporter = CountingExporter()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        if loop_spans:
            loop_tracer = provider.get_tracer("benchmark")
        else:
            observers.append(OpenTelemetryObserver(tracer_provider=provider))

    @miniagent
    async def echo_agent(ctx: InteractionContext) -> None:
        for message in await ctx.message_promises:
            ctx.reply(f"echo: {message.text}")

    async def main() -> float:
        start = time.perf_counter()
        async with MiniAgents(**({"observers": observers} if observers else {})):
            for i in range(n):
                span = None
                if loop_tracer is not None:  # the observer's span, made by hand: name, kind, attributes
                    span = loop_tracer.start_span(
                        f"invoke_agent {echo_agent.alias}",
                        kind=SpanKind.INTERNAL,
                        attributes={
                            "gen_ai.operation.name": "invoke_agent",
                            "gen_ai.agent.name": echo_agent.alias,
                            "miniagents.agent_call.id": str(i),
                        },
                    )
                replies = await echo_agent.inquire(f"msg {i}")
                if span is not None:
                    span.end()
                if replies[0].text != f"echo: msg {i}":
                    raise RuntimeError(f"wrong reply {replies!r}")
        return time.perf_counter() - start

    asyncio.run(main())  # warm-up
    if exporter is not None:
        exporter.clear()
    elapsed = asyncio.run(main())
    if exporter is not None and len(exporter.get_finished_spans()) != n:
        raise RuntimeError(f"{len(exporter.get_finished_spans())} spans for {n} calls")
    return {"us_per_call": elapsed / n * 1e6}


def _view(mode: str, n: int, rate: float, url: str | None) -> dict[str, Any]:
    from miniagents import InteractionContext, MiniAgents, miniagent

    observers: list[Any] = []
    publisher: Any = None
    if url is not None:
        from miniagents.ext.view import ViewPublisher

        publisher = ViewPublisher(url=url, run_name=f"benchmark {mode}")
        observers.append(publisher)

    @miniagent
    async def leaf_agent(ctx: InteractionContext, i: int) -> None:
        ctx.reply(f"reply {i}")

    async def main() -> tuple[float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        async with MiniAgents(observers=observers):
            replies = []
            if mode == "paced":
                interval = 1 / rate
                for i in range(n):
                    replies.append(leaf_agent.inquire(i=i))
                    delay = start + (i + 1) * interval - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif i % 50 == 0:
                        await asyncio.sleep(0)
            else:
                replies = [leaf_agent.inquire(i=i) for i in range(n)]
            for i, reply in enumerate(replies):
                if (await reply)[0].text != f"reply {i}":
                    raise RuntimeError("wrong reply")
        return time.perf_counter() - start, time.process_time() - cpu_start

    elapsed, cpu = asyncio.run(main())
    result: dict[str, Any] = {"seconds": elapsed, "cpu_seconds": cpu, "us_per_call": elapsed / n * 1e6}
    if url is not None:
        with urllib.request.urlopen(f"{url}/api/runs/{publisher.run_id}", timeout=10) as response:
            run = json.load(response)["run"]
        result["server_calls"] = run["calls"]
        result["server_running"] = run["running"]
    return result


# --- the parent ----------------------------------------------------------------------------------------------------


def _child(spec: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """One measurement in a fresh interpreter; the ``miniagents`` package comes from ``root``."""
    completed = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{completed.stderr.strip()}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """The child's entry: one measurement."""
    if spec["kind"] == "w1":
        return _w1(
            spec["n"], spec["tracing"], spec.get("noop", False), spec.get("keep_spans", True), spec.get("loop", False)
        )
    return _view(spec["mode"], spec["n"], spec.get("rate", 1000.0), spec.get("url"))


def _start_view_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "miniagents", "view", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the view server did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _page_lag(url: str, n: int, rate: float) -> float:
    """Run a paced workload while chromium shows the page; seconds from the run's end until the page has it all."""
    from playwright.sync_api import sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url)
            _child({"kind": "view", "mode": "paced", "n": n, "rate": rate, "url": url})
            ended = time.perf_counter()
            page.wait_for_function(
                f"() => window.miniagentsView.state.calls.size === {n} && "
                "(window.miniagentsView.state.counts.finished || 0) === "
                f"{n}",
                timeout=600_000,
            )
            return time.perf_counter() - ended
        finally:
            browser.close()


def _median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def _paired_ratios(sides: list[dict[str, Any]], bases: list[dict[str, Any]], key: str) -> list[float]:
    """The ratio of each repetition's two sides, which ran back to back (the host's drift moves both alike)."""
    return [side[key] / base[key] for side, base in zip(sides, bases, strict=True)]


def _describe_ratios(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.2f}x, {min(ratios):.2f}x-{max(ratios):.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/observability.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--repetitions", type=int, default=5)
    parser.add_argument("--w1-n", type=int, default=5000)
    parser.add_argument("--paced-n", type=int, default=3000, help="calls of the paced run (at --rate per second)")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--flat-n", type=int, default=5000)
    parser.add_argument("--baseline-root", type=Path, help="an older tree to run W1 on (tracing off)")
    parser.add_argument("--only", default="tracing,view")
    parser.add_argument(
        "--browser",
        action="store_true",
        help="also measure the page: /usr/bin/chromium (Playwright) shows a paced run; how long after the run's end "
        "the page has every call",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run(json.loads(args.child))))
        return 0
    only = set(args.only.split(","))
    rows: list[str] = []

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if "tracing" in only:
        sides: dict[str, list[dict[str, Any]]] = {
            "off": [],
            "noop": [],
            "on": [],
            "dropped": [],
            "sdk only": [],
            "baseline": [],
        }
        for repetition in range(args.repetitions):
            order = ["off", "noop", "on", "dropped", "sdk only"] + (["baseline"] if args.baseline_root else [])
            if repetition % 2:
                order.reverse()
            for side in order:
                root = args.baseline_root if side == "baseline" else ROOT
                spec = {
                    "kind": "w1",
                    "n": args.w1_n,
                    "tracing": side in ("on", "dropped", "sdk only"),
                    "noop": side == "noop",
                    "keep_spans": side != "dropped",
                    "loop": side == "sdk only",
                }
                result = _child(spec, root)
                sides[side].append(result)
                say(f"W1 {side}: {result['us_per_call']:.1f} µs/call")
        off, on = _median(sides["off"], "us_per_call"), _median(sides["on"], "us_per_call")
        noop = _median(sides["noop"], "us_per_call")
        rows.append(f"| W1 N={args.w1_n}, no observer | µs/call | {off:.1f} | |")
        rows.append(
            f"| W1 N={args.w1_n}, one no-op `RunObserver` (the seam's own cost) | µs/call | {noop:.1f} | "
            f"{noop / off:.2f}x of no observer |"
        )
        paired = _paired_ratios(sides["on"], sides["off"], "us_per_call")
        rows.append(
            f"| W1 N={args.w1_n}, OpenTelemetryObserver + InMemorySpanExporter | µs/call | {on:.1f} | "
            f"{on / off:.2f}x of no observer (target ≤ 2x; repetition by repetition {_describe_ratios(paired)}), "
            f"{on / noop:.2f}x of the no-op observer |"
        )
        dropped = _median(sides["dropped"], "us_per_call")
        rows.append(
            f"| W1 N={args.w1_n}, OpenTelemetryObserver, spans exported and not kept in memory | µs/call | "
            f"{dropped:.1f} | {dropped / off:.2f}x of no observer |"
        )
        sdk_only = _median(sides["sdk only"], "us_per_call")
        rows.append(
            f"| W1 N={args.w1_n}, no observer; the loop makes the same span around each call (the SDK's floor) | "
            f"µs/call | {sdk_only:.1f} | {sdk_only / off:.2f}x of no observer (repetition by repetition "
            f"{_describe_ratios(_paired_ratios(sides['sdk only'], sides['off'], 'us_per_call'))}); the observer "
            f"is {on / sdk_only:.2f}x of it |"
        )
        if args.baseline_root:
            base = _median(sides["baseline"], "us_per_call")
            rows.append(
                f"| W1 N={args.w1_n}, baseline tree ({args.baseline_root.name}) | µs/call | {base:.1f} | "
                f"no observer is {off / base:.3f}x of it (target < 1.03x) |"
            )

    if "view" in only:
        port = _free_port()
        server = _start_view_server(port)
        url = f"http://127.0.0.1:{port}"
        try:
            results: dict[str, list[dict[str, Any]]] = {k: [] for k in ("paced off", "paced on", "flat off", "flat on")}
            for repetition in range(args.repetitions):
                order = ["off", "on"] if repetition % 2 == 0 else ["on", "off"]
                for side in order:
                    spec = {"kind": "view", "mode": "paced", "n": args.paced_n, "rate": args.rate}
                    result = _child({**spec, "url": url if side == "on" else None})
                    results[f"paced {side}"].append(result)
                    say(f"paced {side}: {result}")
                    result = _child(
                        {"kind": "view", "mode": "flat", "n": args.flat_n, "url": url if side == "on" else None}
                    )
                    results[f"flat {side}"].append(result)
                    say(f"flat {side}: {result}")
            lags = [_page_lag(url, args.paced_n, args.rate) for _ in range(args.repetitions)] if args.browser else []
        finally:
            server.terminate()
            server.wait(timeout=10)
        for side in ("on",):
            for r in results[f"paced {side}"] + results[f"flat {side}"]:
                if r["server_running"] != 0:
                    raise RuntimeError(f"the server had running calls at the end: {r}")
            complete = all(r["server_calls"] == args.paced_n for r in results[f"paced {side}"]) and all(
                r["server_calls"] == args.flat_n for r in results[f"flat {side}"]
            )
        po, pn = _median(results["paced off"], "seconds"), _median(results["paced on"], "seconds")
        co, cn = _median(results["paced off"], "cpu_seconds"), _median(results["paced on"], "cpu_seconds")
        rows.append(
            f"| view, {args.paced_n} calls at {args.rate:.0f}/s, no publisher | wall s / CPU s | "
            f"{po:.3f} / {co:.3f} | |"
        )
        rows.append(
            f"| view, {args.paced_n} calls at {args.rate:.0f}/s, ViewPublisher | wall s / CPU s | "
            f"{pn:.3f} / {cn:.3f} | wall {pn / po:.3f}x (target ≤ 1.2x), CPU {cn / co:.2f}x; "
            f"server had every call at the end: {'yes' if complete else 'NO'} |"
        )
        if args.browser:
            say(f"page lags: {lags}")
            rows.append(
                f"| view page (chromium, headless), {args.paced_n} calls at {args.rate:.0f}/s | s after the run's end "
                f"until the page shows every call finished | {statistics.median(lags):.2f} | min {min(lags):.2f}, "
                f"max {max(lags):.2f} |"
            )
        fo, fn = _median(results["flat off"], "us_per_call"), _median(results["flat on"], "us_per_call")
        rows.append(f"| view, {args.flat_n} concurrent calls flat out, no publisher | µs/call | {fo:.1f} | |")
        rows.append(
            f"| view, {args.flat_n} concurrent calls flat out, ViewPublisher | µs/call | {fn:.1f} | {fn / fo:.2f}x |"
        )
    print("| workload | metric | value | comparison |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
