"""Layer 3: the provider agents end to end against real servers on 127.0.0.1.

- ``openai_agent`` streams from llama.cpp's server (``xllamacpp``, a child process) serving SmolLM2-135M-Instruct;
- ``anthropic_agent`` streams through ``a2o`` (Anthropic Messages API → OpenAI) in front of that server;
- seed 000's "Work with LLMs" example (E2) runs unchanged against the local server, via ``OPENAI_BASE_URL``.

The server fixtures (``conftest.py``) skip only when a package they need is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

from miniagents import MiniAgents
from miniagents.ext.llm import SystemMessage, ToolCallMessage, ToolResultMessage, UserMessage
from miniagents.ext.llm.output import apartial_outputs
from miniagents.ext.llm.tools import tool

EXAMPLE_E2 = Path(__file__).resolve().parents[3] / "examples" / "work_with_llms.py"
LOCAL_KEY = "sk-local-test"  # the local servers accept any key


@pytest.fixture
def openai_sdk() -> Any:
    return pytest.importorskip("openai", reason='the openai extra is not installed: pip install "miniagents[openai]"')


@pytest.fixture
def anthropic_sdk() -> Any:
    return pytest.importorskip(
        "anthropic", reason='the anthropic extra is not installed: pip install "miniagents[anthropic]"'
    )


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
async def test_openai_agent_against_the_llama_cpp_server(openai_sdk: Any, llama_server_url: str, stream: bool) -> None:
    from miniagents.ext.llm.openai import OpenAIMessage, openai_agent

    async with openai_sdk.AsyncOpenAI(base_url=llama_server_url, api_key=LOCAL_KEY, max_retries=0) as client:
        agent = openai_agent.fork(model="smollm2", async_client=client)
        async with MiniAgents():
            replies = agent.inquire(
                [SystemMessage("You are a helpful assistant."), UserMessage("What is the capital of France?")],
                max_tokens=16,
                temperature=0.0,
                stream=stream,
            )
            (message_promise,) = [mp async for mp in replies]
            tokens = [token async for token in message_promise]
            message = await message_promise
    assert message.text == "".join(tokens)
    assert message.text.strip()
    assert len(tokens) > 1 if stream else len(tokens) == 1
    assert isinstance(message, OpenAIMessage)
    assert (message.role, message.model, message.agent_alias) == ("assistant", "smollm2", "OPENAI_AGENT")
    assert message.choices[0].finish_reason in ("stop", "length")
    if not stream:
        assert message.usage.completion_tokens <= 16


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
async def test_anthropic_agent_through_a2o(anthropic_sdk: Any, a2o_server_url: str, stream: bool) -> None:
    from miniagents.ext.llm.anthropic import AnthropicMessage, anthropic_agent

    async with anthropic_sdk.AsyncAnthropic(base_url=a2o_server_url, api_key=LOCAL_KEY, max_retries=0) as client:
        agent = anthropic_agent.fork(model="claude-local", async_client=client)
        async with MiniAgents():
            replies = agent.inquire(
                [SystemMessage("You are a helpful assistant."), UserMessage("Say hello.")],
                max_tokens=16,
                stream=stream,
            )
            (message_promise,) = [mp async for mp in replies]
            tokens = [token async for token in message_promise]
            message = await message_promise
    assert message.text == "".join(tokens)
    assert message.text.strip()
    assert len(tokens) > 1 if stream else len(tokens) == 1
    assert isinstance(message, AnthropicMessage)
    assert (message.role, message.model, message.agent_alias) == ("assistant", "claude-local", "ANTHROPIC_AGENT")
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_seed_example_e2_runs_unchanged_against_the_local_server(openai_sdk: Any, llama_server_url: str) -> None:
    env = dict(os.environ, OPENAI_BASE_URL=llama_server_url, OPENAI_API_KEY=LOCAL_KEY)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLE_E2.parents[1]), env.get("PYTHONPATH")]))
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE_E2)],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), result.stderr[-3000:]
    assert result.stdout.endswith("\n\n")  # the example prints a blank line after the reply


# --- tools and structured output against llama.cpp's HTTP server (SmolLM2, grammar-constrained) -----------------


class _Verdict(pydantic.BaseModel):
    verdict: Literal["accept", "revise"]
    score: int


def _get_weather(city: str) -> str:
    """Get the current weather of a city."""
    return f"sunny, 21 C in {city}"


async def test_openai_agent_structured_output_from_the_llama_cpp_server(openai_sdk: Any, llama_server_url: str) -> None:
    from miniagents.ext.llm.openai import OpenAIMessage, openai_agent

    async with openai_sdk.AsyncOpenAI(base_url=llama_server_url, api_key=LOCAL_KEY, max_retries=0) as client:
        agent = openai_agent.fork(model="smollm2", async_client=client, output_type=_Verdict)
        async with MiniAgents():
            (message_promise,) = [
                mp
                async for mp in agent.inquire(
                    UserMessage("Judge this draft: 'The sky is green.'"), max_tokens=64, temperature=0.0
                )
            ]
            partials = [partial async for partial in apartial_outputs(message_promise)]
            message = await message_promise
    assert isinstance(message, OpenAIMessage)
    assert isinstance(message.output, _Verdict)  # the grammar makes even a 135M model answer with valid JSON
    assert partials[-1] == message.output


class _Draft(pydantic.BaseModel):
    verdict: Literal["accept", "revise"]
    score: int = 0


@pytest.mark.parametrize(("output_type", "strict"), [(_Verdict, True), (_Draft, False)], ids=["strict", "not-strict"])
async def test_openai_agent_sends_strict_schemas_only_when_they_keep_their_meaning(
    openai_sdk: Any, llama_server_url: str, output_type: type[pydantic.BaseModel], strict: bool
) -> None:
    from miniagents.ext.llm.openai import openai_agent

    bodies: list[dict[str, Any]] = []

    async def record(request: Any) -> None:
        bodies.append(json.loads(request.content))

    http_client = openai_sdk.DefaultAsyncHttpxClient(event_hooks={"request": [record]})
    async with openai_sdk.AsyncOpenAI(
        base_url=llama_server_url, api_key=LOCAL_KEY, max_retries=0, http_client=http_client
    ) as client:
        agent = openai_agent.fork(model="smollm2", async_client=client, output_type=output_type)
        async with MiniAgents():
            (message,) = await agent.inquire(
                UserMessage("Judge this draft: 'The sky is green.'"), max_tokens=64, temperature=0.0
            )
    assert isinstance(message.output, output_type)  # the server takes both requests and answers valid JSON
    (body,) = bodies
    json_schema = body["response_format"]["json_schema"]
    assert json_schema.get("strict", False) is strict
    assert ("additionalProperties" in json_schema["schema"]) is strict


async def test_openai_agent_forced_tool_call_against_the_llama_cpp_server(
    openai_sdk: Any, llama_server_url: str
) -> None:
    from miniagents.ext.llm.openai import openai_agent

    async with openai_sdk.AsyncOpenAI(base_url=llama_server_url, api_key=LOCAL_KEY, max_retries=0) as client:
        agent = openai_agent.fork(
            model="smollm2",
            async_client=client,
            tools=[tool(_get_weather, name="get_weather")],
            tool_choice="required",
            parallel_tool_calls=False,
            tool_calling="json",  # SmolLM2's chat template knows no tools: calls go through a JSON schema
            max_turns=4,
        )
        async with MiniAgents():
            messages = await agent.inquire(
                UserMessage("What is the weather in Paris?"), max_tokens=128, temperature=0.0
            )
    calls = [m for m in messages if isinstance(m, ToolCallMessage)]
    results = [m for m in messages if isinstance(m, ToolResultMessage)]
    assert calls[0].tool_name == "get_weather"  # forced: the first turn is a call, with valid arguments
    assert isinstance(calls[0].arguments["city"], str)
    assert results[0].text.startswith("sunny, 21 C in ")
    assert not results[0].is_error
    assert not isinstance(messages[-1], (ToolCallMessage, ToolResultMessage))  # and a final answer came
