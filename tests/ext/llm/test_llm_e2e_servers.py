"""Layer 3: the provider agents end to end against real servers on 127.0.0.1.

- ``openai_agent`` streams from llama.cpp's server (``xllamacpp``, a child process) serving SmolLM2-135M-Instruct;
- ``anthropic_agent`` streams through ``a2o`` (Anthropic Messages API → OpenAI) in front of that server;
- seed 000's "Work with LLMs" example (E2) runs unchanged against the local server, via ``OPENAI_BASE_URL``.

The server fixtures (``conftest.py``) skip only when a package they need is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from miniagents import MiniAgents
from miniagents.ext.llm import SystemMessage, UserMessage

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
