"""W5, one tool round trip through a fake LLM: model -> tool call -> tool -> model, N times in sequence.

* `ours`: a `function_llm_agent` with one async tool (``tools=[lookup]``). Its first turn streams a tool call
  (``{"key": "k<i>"}`` in two tokens), the agent loop validates the arguments, runs the tool as an agent call,
  replies the call and the result as messages and asks the fake again, which answers with the looked-up value.
  The caller awaits every reply message and checks them.
* `plain`: the same by hand in asyncio: a task per inquiry with a reply queue, the fake model as an async
  generator of the same events (one ``asyncio.sleep(0)`` per token, like the fake), the arguments parsed and
  validated with the same pydantic model, the tool run with ``asyncio.gather``, the conversation kept as OpenAI
  chat dicts, the model asked again.

Metric: µs per round trip; the framework's overhead per tool call is ours minus asyncio (target < 200 µs).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pydantic

from benchmarks._common import END, check
from miniagents import MiniAgents
from miniagents.ext.llm import ToolCallMessage, ToolResultMessage
from miniagents.ext.llm.testing import ScriptedToolCall, function_llm_agent


async def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def _model(prompt: list[dict[str, Any]]) -> Any:
    """The fake model: call the tool for the question, then answer with its result."""
    last = prompt[-1]
    if last["role"] == "tool":
        return last["content"]
    return ScriptedToolCall("lookup", {"key": last["content"]})


async def ours(n: int) -> dict[str, Any]:
    llm = function_llm_agent(_model).fork(tools=[lookup])
    async with MiniAgents():
        start = time.perf_counter()
        for i in range(n):
            call, result, answer = await llm.inquire(f"k{i}")
            ok = isinstance(call, ToolCallMessage) and call.arguments == {"key": f"k{i}"}
            ok = ok and isinstance(result, ToolResultMessage) and str(result) == str(answer) == f"value of k{i}"
            check(ok, f"inquiry {i} got {[call, result, answer]!r}" if not ok else "")
            llm.prompts.clear()  # the fake keeps every prompt for tests to read; the asyncio side keeps none
            llm.requests.clear()
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "us_per_round_trip": elapsed / n * 1e6}


class _LookupArguments(pydantic.BaseModel):
    key: str


_TOKEN_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")  # the fake's word-like tokens (`split_into_tokens`)


async def _plain_model(prompt: list[dict[str, Any]]) -> AsyncIterator[tuple[str, Any]]:
    """The fake model as events: ("call", (id, name)), ("args", piece), ("text", token).

    The same tokens as the fake: the answer ``"value of k<i>"`` in three (``"value "``, ``"of "``, ``"k<i>"``),
    the arguments in two.
    """
    last = prompt[-1]
    if last["role"] == "tool":
        for token in _TOKEN_BOUNDARY.split(last["content"]):
            await asyncio.sleep(0)
            yield ("text", token)
        return
    await asyncio.sleep(0)
    yield ("call", ("call_1", "lookup"))
    for piece in ('{"key": ', json.dumps(last["content"]) + "}"):
        await asyncio.sleep(0)
        yield ("args", piece)


async def _plain_agent(question: str, out: asyncio.Queue[Any]) -> None:
    prompt: list[dict[str, Any]] = [{"role": "user", "content": question}]
    while True:
        text: list[str] = []
        calls: list[dict[str, Any]] = []
        async for kind, payload in _plain_model(prompt):
            if kind == "text":
                text.append(payload)
            elif kind == "call":
                calls.append({"id": payload[0], "name": payload[1], "arguments": []})
            else:
                calls[-1]["arguments"].append(payload)
        if not calls:
            out.put_nowait(("answer", "".join(text)))
            out.put_nowait(END)
            return
        for call in calls:
            call["arguments"] = "".join(call["arguments"])
            out.put_nowait(("call", call))
        prompt.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls
                ],
            }
        )

        async def run(call: dict[str, Any]) -> str:
            arguments = _LookupArguments.model_validate(json.loads(call["arguments"]))
            return await lookup(arguments.key)

        results = await asyncio.gather(*(run(call) for call in calls))
        for call, result in zip(calls, results, strict=True):
            out.put_nowait(("result", result))
            prompt.append({"role": "tool", "tool_call_id": call["id"], "content": result})


async def plain(n: int) -> dict[str, Any]:
    start = time.perf_counter()
    for i in range(n):
        out: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(_plain_agent(f"k{i}", out))
        replies = []
        while (item := await out.get()) is not END:
            replies.append(item)
        await task
        call, result, answer = replies
        ok = json.loads(call[1]["arguments"]) == {"key": f"k{i}"} and result[1] == answer[1] == f"value of k{i}"
        check(ok, f"inquiry {i} got {replies!r}" if not ok else "")
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "us_per_round_trip": elapsed / n * 1e6}


async def ours_answer(n: int) -> dict[str, Any]:
    llm = function_llm_agent(lambda prompt: prompt[-1]["content"])
    async with MiniAgents():
        start = time.perf_counter()
        for i in range(n):
            (answer,) = await llm.inquire(f"k{i}")
            ok = str(answer) == f"k{i}"
            check(ok, f"inquiry {i} got {answer!r}" if not ok else "")
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "us_per_round_trip": elapsed / n * 1e6}


async def _plain_answer_agent(question: str, out: asyncio.Queue[Any]) -> None:
    prompt = [{"role": "user", "content": question}]
    text = [payload async for kind, payload in _plain_model([*prompt, {"role": "tool", "content": question}])]
    out.put_nowait(("answer", "".join(text)))
    out.put_nowait(END)


async def plain_answer(n: int) -> dict[str, Any]:
    start = time.perf_counter()
    for i in range(n):
        out: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(_plain_answer_agent(f"k{i}", out))
        replies = []
        while (item := await out.get()) is not END:
            replies.append(item)
        await task
        ok = replies == [("answer", f"k{i}")]
        check(ok, f"inquiry {i} got {replies!r}" if not ok else "")
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "us_per_round_trip": elapsed / n * 1e6}
