"""CHAT.md at length: the cost of one chat turn through `markdown_history_agent` on a long history file.

``python -m benchmarks.chat_md_turn [--messages 20000] [--turns 20]``

A file of N messages (about 870 bytes each, so 20,000 make ~17 MB) is written first. Then each turn is what the
chat does: the agent appends an assistant answer and a user message and replies with the whole history, which
the caller awaits. The first turn parses the whole file; later turns parse only what was appended. Also measured:
the longest time the event loop was blocked during the first and the later turns (a ticker task records its gaps).
Target (issue 11): under 50 ms per turn at 20,000 messages.

Also measured, on a fresh copy of the file: the first turn as a dialog makes it (`dialog_loop`'s user agent is the
chain echo, prompt, history, whose agents are all inquired at once). The history agent is inquired with the
assistant's answer while the user is still typing (``--typing`` seconds), so its first read of the file runs
meanwhile; the time is from the user's message to the whole history.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import BenchmarkError
from miniagents import MiniAgents
from miniagents.ext._chat_md import format_message
from miniagents.ext.history_agents import markdown_history_agent
from miniagents.ext.llm import AssistantMessage, UserMessage

_PARAGRAPH = (
    "Here is a reasonably long answer with `code`, *emphasis* and a list:\n\n- one item\n- another item\n\n"
    "```python\nprint('hello')\n```\n\n" + "More words in a paragraph that goes on for a while. " * 10
)


def write_history(path: Path, messages: int) -> None:
    with path.open("w", encoding="utf-8") as stream:
        for index in range(messages):
            role = "user" if index % 2 == 0 else "assistant"
            stream.write(format_message(role, None if role == "user" else "model-1", f"#{index} {_PARAGRAPH}"))


async def _ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def _first_turn_after_typing(path: Path, messages: int, typing: float) -> float:
    """Seconds from the user's message to the history, the history agent inquired ``typing`` seconds earlier."""
    async with MiniAgents():
        call = markdown_history_agent.fork(history_md_file=path).initiate_inquiry()
        call.send_message(AssistantMessage("answer", model="m"))
        await asyncio.sleep(typing)
        start = time.perf_counter()
        call.send_message(UserMessage("q"))
        history = await call.reply_sequence()
        elapsed = time.perf_counter() - start
    if len(history) != messages + 2 or history[-1].text != "q":
        raise BenchmarkError(f"after typing: {len(history)} messages read back")
    return elapsed


async def measure(messages: int, turns: int, typing: float = 2.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "CHAT.md"
        write_history(path, messages)
        size_mb = path.stat().st_size / 1e6
        durations = []
        gaps: list[float] = []
        first_gaps: list[float] = []
        stop = asyncio.Event()
        async with MiniAgents():
            ticker = asyncio.create_task(_ticker(gaps, stop))
            agent = markdown_history_agent.fork(history_md_file=path)
            for turn in range(turns):
                if turn == 1:
                    first_gaps, gaps[:] = list(gaps), []
                start = time.perf_counter()
                history = await agent.inquire([AssistantMessage(f"answer {turn}", model="m"), UserMessage("q")])
                durations.append(time.perf_counter() - start)
                if len(history) != messages + 2 * (turn + 1) or history[-1].text != "q":
                    raise BenchmarkError(f"turn {turn}: {len(history)} messages read back")
            stop.set()
            await ticker
        write_history(path, messages)  # afresh: a file the reader has not seen in this form
        after_typing = await _first_turn_after_typing(path, messages, typing)
    return {
        "messages": messages,
        "file_mb": size_mb,
        "first_turn_ms": durations[0] * 1000,
        "first_turn_after_typing_ms": after_typing * 1000,
        "later_turn_median_ms": statistics.median(durations[1:]) * 1000,
        "later_turn_max_ms": max(durations[1:]) * 1000,
        "first_turn_longest_loop_block_ms": max(first_gaps) * 1000,
        "later_turns_longest_loop_block_ms": max(gaps) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chat_md_turn", description=__doc__)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--typing", type=float, default=2.0, help="seconds the user types in the dialog measure")
    args = parser.parse_args()
    for key, value in asyncio.run(measure(args.messages, max(args.turns, 2), args.typing)).items():
        print(f"{key:>24}: {value:,.2f}")


if __name__ == "__main__":
    main()
