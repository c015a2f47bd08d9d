"""Time to first token and tokens per second of the local model through the three miniagents LLM agents.

Paths (SmolLM2-135M-Instruct, 1 thread, temperature 0, ``--max-tokens`` tokens):

* ``openai_agent``: ``openai_agent`` + ``AsyncOpenAI`` streaming from llama.cpp's server (``xllamacpp``, child process);
* ``anthropic_agent``: ``anthropic_agent`` + ``AsyncAnthropic`` through the ``a2o`` proxy in front of that server;
* ``llama_cpp_agent``: ``llama_cpp_agent``, the model in process (worker thread bridged to asyncio).

TTFT is measured from ``inquire()`` to the first token seen by the consumer; decode tokens/s is
``(n - 1) / (t_last - t_first)`` over the n streamed tokens. The first (warm-up) runs are not measured; the
in-process path's warm-up includes loading the model. Run from the repository root::

    python benchmarks/local_llm.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miniagents import MiniAgent, MiniAgents  # noqa: E402
from miniagents.ext.llm import UserMessage  # noqa: E402
from tests import servers  # noqa: E402

PROMPT = "Write a short poem about the sea."
API_KEY = "sk-local"


async def measure(agent: MiniAgent, run: int, **kwargs: Any) -> tuple[float, float, int]:
    """Return (TTFT seconds, decode tokens/s, token count) of one inquiry."""
    start = time.perf_counter()
    stamps = []
    # A different prefix per run, so llama.cpp's prompt-prefix reuse covers only the template's system part.
    async for message_promise in agent.inquire(UserMessage(f"(request {run}) {PROMPT}"), **kwargs):
        async for token in message_promise:
            if token:
                stamps.append(time.perf_counter())
    if not stamps:
        return float("nan"), float("nan"), 0
    span = stamps[-1] - stamps[0]
    rate = (len(stamps) - 1) / span if len(stamps) > 1 and span > 0 else float("nan")
    return stamps[0] - start, rate, len(stamps)


def summary(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    finite = [value * scale for value in values if value == value]
    if not finite:
        return "n/a"
    return f"{statistics.median(finite):.{digits}f} ({min(finite):.{digits}f}-{max(finite):.{digits}f})"


async def run_path(
    name: str, make_agent: Callable[[], MiniAgent], runs: int, warmup: int, **kwargs: Any
) -> tuple[str, list[tuple[float, float, int]]]:
    agent = make_agent()
    samples = []
    async with MiniAgents():
        for run in range(warmup + runs):
            sample = await measure(agent, run, **kwargs)
            if run >= warmup:
                samples.append(sample)
    return name, samples


async def main_async(args: argparse.Namespace) -> None:
    import anthropic
    import openai

    from miniagents.ext.llm.anthropic import anthropic_agent
    from miniagents.ext.llm.llama_cpp import llama_cpp_agent
    from miniagents.ext.llm.openai import openai_agent

    results = []
    common = {"max_tokens": args.max_tokens, "stream": True}
    with contextlib.ExitStack() as stack:
        llama_url = stack.enter_context(servers.llama_server(n_threads=1))
        a2o_url = stack.enter_context(servers.a2o_server(llama_url))
        async with (
            openai.AsyncOpenAI(base_url=llama_url, api_key=API_KEY) as openai_client,
            anthropic.AsyncAnthropic(base_url=a2o_url, api_key=API_KEY) as anthropic_client,
        ):
            results.append(
                await run_path(
                    "openai_agent",
                    lambda: openai_agent.fork(model="smollm2", async_client=openai_client),
                    args.runs,
                    args.warmup,
                    temperature=0.0,
                    **common,
                )
            )
            results.append(
                await run_path(
                    "anthropic_agent",
                    lambda: anthropic_agent.fork(model="smollm2", async_client=anthropic_client),
                    args.runs,
                    args.warmup,
                    extra_body={"temperature": 0},  # anthropic 2.x has no `temperature` parameter; a2o forwards it
                    **common,
                )
            )
    # In process last, once the servers are gone, so nothing competes for the CPU.
    results.append(
        await run_path("llama_cpp_agent", lambda: llama_cpp_agent, args.runs, args.warmup, temperature=0.0, **common)
    )

    header = f"{'path':<16} {'TTFT ms, median (min-max)':>27} {'tokens/s, median (min-max)':>28} {'tokens':>7}"
    print(header)
    print("-" * len(header))
    for name, samples in results:
        print(
            f"{name:<16} {summary([s[0] for s in samples], 1000):>27} "
            f"{summary([s[1] for s in samples], 1, 1):>28} {statistics.median([s[2] for s in samples]):>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per path")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per path")
    parser.add_argument("--max-tokens", type=int, default=64)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
