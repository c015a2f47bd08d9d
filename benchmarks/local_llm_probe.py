"""Probe local SmolLM2 latency through three paths and print a small table.

Paths (all with max_tokens=64, temperature=0, 1 thread):

* ``openai``: ``openai.AsyncOpenAI`` streaming from ``python -m llama_cpp.server``.
* ``anthropic``: ``anthropic.AsyncAnthropic().messages.stream`` through the
  ``a2o`` proxy in front of the same llama server.
* ``in-process``: ``llama_cpp.Llama(...).create_chat_completion(stream=True)``.

TTFT is measured from just before the request to the first non-empty text
delta; decode tokens/s is ``(n - 1) / (t_last - t_first)`` over the n text
deltas (llama.cpp emits one token per delta). The servers are started with the
helpers in ``tests/servers.py`` unless ``--llama-url``/``--a2o-url`` are given.

Run from the repository root::

    python benchmarks/local_llm_probe.py --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from miniagents.ext.llm._local_models import smollm2_model_path  # noqa: E402
from tests import servers  # noqa: E402

PROMPT = "Write a short poem about the sea."
API_KEY = "sk-local"


@dataclass
class Sample:
    ttft: float
    n_deltas: int
    decode_tps: float
    total: float
    text: str


@dataclass
class PathResult:
    name: str
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _sample(t0: float, stamps: list[float], text: str) -> Sample:
    t_end = time.perf_counter()
    if not stamps:
        return Sample(float("nan"), 0, float("nan"), t_end - t0, text)
    span = stamps[-1] - stamps[0]
    tps = (len(stamps) - 1) / span if span > 0 and len(stamps) > 1 else float("nan")
    return Sample(stamps[0] - t0, len(stamps), tps, t_end - t0, text)


def _prompt(i: int) -> str:
    # A different prefix per run, so the KV-cache prefix reuse of llama.cpp
    # only covers the (default) system prompt, as for a fresh conversation.
    return f"(request {i}) {PROMPT}"


async def probe_openai(base_url: str, i: int, max_tokens: int, notes: list[str]) -> Sample:
    import openai

    async with openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY) as client:
        t0 = time.perf_counter()
        stream = await client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": _prompt(i)}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        stamps: list[float] = []
        parts: list[str] = []
        usage = None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    stamps.append(time.perf_counter())
                    parts.append(choice.delta.content)
        if i == 0:
            notes.append(f"usage chunk with include_usage: {usage!r}")
        return _sample(t0, stamps, "".join(parts))


async def probe_anthropic(base_url: str, i: int, max_tokens: int, notes: list[str]) -> Sample:
    import anthropic

    async with anthropic.AsyncAnthropic(base_url=base_url, api_key=API_KEY) as client:
        t0 = time.perf_counter()
        stamps: list[float] = []
        parts: list[str] = []
        async with client.messages.stream(
            model="claude-anything",
            max_tokens=max_tokens,
            # anthropic 2.x has no ``temperature`` parameter; a2o forwards it.
            extra_body={"temperature": 0},
            messages=[{"role": "user", "content": _prompt(i)}],
        ) as stream:
            async for text in stream.text_stream:
                if text:
                    stamps.append(time.perf_counter())
                    parts.append(text)
            final = await stream.get_final_message()
        if i == 0:
            notes.append(f"final: model={final.model!r} stop_reason={final.stop_reason!r} usage={final.usage!r}")
        return _sample(t0, stamps, "".join(parts))


def probe_in_process(llm: object, i: int, max_tokens: int) -> Sample:
    t0 = time.perf_counter()
    stamps: list[float] = []
    parts: list[str] = []
    for chunk in llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=[{"role": "user", "content": _prompt(i)}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            stamps.append(time.perf_counter())
            parts.append(content)
    return _sample(t0, stamps, "".join(parts))


def _fmt(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    vals = [v * scale for v in values if v == v]  # drop NaN
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    return f"{med:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def print_table(results: list[PathResult], startup: dict[str, float]) -> None:
    header = f"{'path':<12} {'TTFT ms med (min-max)':>24} {'decode tok/s med':>22} {'deltas':>7} {'total s':>8}"
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        s = r.samples
        print(
            f"{r.name:<12} {_fmt([x.ttft for x in s], 1000):>24} "
            f"{_fmt([x.decode_tps for x in s], 1, 1):>22} "
            f"{statistics.median([x.n_deltas for x in s]) if s else 0:>7} "
            f"{_fmt([x.total for x in s], 1, 2):>8}"
        )
    print()
    for name, secs in startup.items():
        print(f"startup {name}: {secs:.2f}s")
    for r in results:
        for note in r.notes:
            print(f"[{r.name}] {note}")
        if r.samples:
            print(f"[{r.name}] text: {r.samples[-1].text[:100]!r}")


async def main_async(args: argparse.Namespace) -> None:
    model_path = Path(args.model_path) if args.model_path else smollm2_model_path()
    print(f"model: {model_path} ({model_path.stat().st_size / 1e6:.0f} MB)")
    startup: dict[str, float] = {}
    results: list[PathResult] = []
    total_runs = args.runs + args.warmup

    with contextlib.ExitStack() as stack:
        llama_url = args.llama_url
        if not llama_url:
            t = time.perf_counter()
            llama_url = stack.enter_context(servers.llama_server(model_path, n_threads=1))
            startup["llama_cpp.server"] = time.perf_counter() - t
        a2o_url = args.a2o_url
        if not a2o_url:
            t = time.perf_counter()
            a2o_url = stack.enter_context(servers.a2o_server(llama_url))
            startup["a2o"] = time.perf_counter() - t
        print(f"llama: {llama_url}  a2o: {a2o_url}")

        for name, probe, url in (
            ("openai", probe_openai, llama_url),
            ("anthropic", probe_anthropic, a2o_url),
        ):
            res = PathResult(name)
            for i in range(total_runs):
                sample = await probe(url, i, args.max_tokens, res.notes)
                if i >= args.warmup:
                    res.samples.append(sample)
            results.append(res)

    # In-process last, after the servers are gone, so nothing competes for CPU.
    from llama_cpp import Llama

    t = time.perf_counter()
    llm = Llama(model_path=str(model_path), n_threads=1, n_threads_batch=1, n_ctx=2048, verbose=False)
    startup["in-process Llama()"] = time.perf_counter() - t
    res = PathResult("in-process")
    for i in range(total_runs):
        sample = probe_in_process(llm, i, args.max_tokens)
        if i >= args.warmup:
            res.samples.append(sample)
    results.append(res)
    llm.close()

    print_table(results, startup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per path")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per path")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model-path", default=None, help="GGUF file (default: SmolLM2)")
    parser.add_argument("--llama-url", default=None, help="use a running llama server (…/v1)")
    parser.add_argument("--a2o-url", default=None, help="use a running a2o proxy")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
