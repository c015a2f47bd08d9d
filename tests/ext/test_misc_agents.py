"""console_echo_agent, console_prompt_agent (prompt_toolkit, driven by a pipe), file_agent (SPEC §6.6)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from miniagents import InteractionContext, Message, MiniAgent, MiniAgents, miniagent
from miniagents.ext import misc_agents
from miniagents.ext.agent_aggregators import console_user_agent, dialog_loop
from miniagents.ext.llm import AssistantMessage, SystemMessage, UserMessage
from miniagents.ext.misc_agents import console_echo_agent, console_prompt_agent, file_agent

GREEN = "\033[92;1m"
RESET = "\033[0m"
BANNER = (
    f"{GREEN}\nYOU ARE NOW IN A CHAT WITH AN AI ASSISTANT\n\n"
    "Press Enter to send your message.\n"
    "Press Ctrl+Space to insert a newline.\n"
    f'Press Ctrl+C (or type "exit") to quit the conversation.\n{RESET}\n'
)
ENTER = "\r"
CTRL_SPACE = "\x00"
CTRL_C = "\x03"
CTRL_D = "\x04"


@pytest.fixture
def keyboard() -> Iterator[PipeInput]:
    """Keys typed into prompt_toolkit through a pipe; its screen output is discarded."""
    with create_pipe_input() as pipe_input, create_app_session(input=pipe_input, output=DummyOutput()):
        yield pipe_input


def green(text: str) -> str:
    return f"{GREEN}{text}{RESET}"


def streamed(tokens: list[str], **metadata: Any) -> Any:
    async def stream(_: dict[str, Any]) -> AsyncIterator[str]:
        for token in tokens:
            yield token

    return AssistantMessage.promise(message_token_streamer=stream, **metadata)


# console_echo_agent


async def test_echo_prints_each_message_token_by_token_and_passes_it_on(capsys: pytest.CaptureFixture[str]) -> None:
    async with MiniAgents():
        messages = [
            streamed(["Hel", "lo"], agent_alias="MY_LLM", model="m"),
            SystemMessage("hidden"),
            UserMessage("typed"),
            Message("no role"),
        ]
        replies = await console_echo_agent.inquire(messages)
    assert [m.text for m in replies] == ["Hello", "hidden", "typed", "no role"]
    assert capsys.readouterr().out == (
        f"{green('MY_LLM: ')}{green('Hel')}{green('lo')}\n\n"
        f"{green('USER: ')}{green('typed')}\n\n"
        f"{green('ASSISTANT: ')}{green('no role')}\n\n"
    )


async def test_echo_options(capsys: pytest.CaptureFixture[str]) -> None:
    async with MiniAgents():
        await console_echo_agent.fork(mention_aliases=False, hide_system_messages=False).inquire(
            [SystemMessage("shown"), AssistantMessage("answer", agent_alias=None)]
        )
        await console_echo_agent.fork(default_role="bot", assistant_style="1").inquire(
            [Message("x"), AssistantMessage("y", agent_alias=None)]  # W13: a None alias falls back to the role
        )
    assert capsys.readouterr().out == (
        f"{green('shown')}\n\n{green('answer')}\n\n"
        "\033[1mBOT: \033[0m\033[1mx\033[0m\n\n\033[1mASSISTANT: \033[0m\033[1my\033[0m\n\n"
    )


async def test_echo_writes_what_the_console_cannot_encode_as_the_replacement_character(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # (half of an emoji that a broken stream cut in two: UTF-8 cannot encode it; the answer was cut off with
    # UnicodeEncodeError)
    async with MiniAgents():
        replies = await console_echo_agent.inquire(streamed(["the \ud83d", " half"], agent_alias="LLM"))
    assert [m.text for m in replies] == ["the \ud83d half"]  # (the message keeps its text)
    assert capsys.readouterr().out == green("LLM: ") + green("the \ufffd") + green(" half") + "\n\n"


# console_prompt_agent


async def test_prompt_shows_the_banner_at_the_start_and_replies_what_was_typed(
    keyboard: PipeInput, capsys: pytest.CaptureFixture[str]
) -> None:
    keyboard.send_text("hi there" + ENTER)
    async with MiniAgents():
        replies = await console_prompt_agent.inquire(SystemMessage("system messages do not count"))
    assert [(m.role, m.text) for m in replies] == [("system", "system messages do not count"), ("user", "hi there")]
    assert isinstance(replies[1], UserMessage)
    assert capsys.readouterr().out == BANNER + "\n"


async def test_prompt_without_banner_mid_dialog_and_ctrl_space_inserts_a_newline(
    keyboard: PipeInput, capsys: pytest.CaptureFixture[str]
) -> None:
    keyboard.send_text("  two" + CTRL_SPACE + "lines  " + ENTER)
    async with MiniAgents():
        replies = await console_prompt_agent.inquire(AssistantMessage("earlier answer"))
    assert [m.text for m in replies] == ["earlier answer", "  two\nlines  "]  # not stripped
    assert capsys.readouterr().out == "\n"


async def test_prompt_keeps_a_typed_tab(keyboard: PipeInput) -> None:
    keyboard.send_text("a\tb" + CTRL_SPACE + "\tindented" + ENTER)
    async with MiniAgents():
        replies = await console_prompt_agent.inquire(AssistantMessage("earlier answer"))
    assert [m.text for m in replies] == ["earlier answer", "a\tb\n\tindented"]


async def test_prompt_replies_nothing_for_blank_input(keyboard: PipeInput) -> None:
    keyboard.send_text("  " + CTRL_SPACE + ENTER)
    async with MiniAgents():
        assert [m.text for m in await console_prompt_agent.inquire("before")] == ["before"]


async def test_prompt_custom_greeting(keyboard: PipeInput, capsys: pytest.CaptureFixture[str]) -> None:
    keyboard.send_text("x" + ENTER)
    async with MiniAgents():
        await console_prompt_agent.fork(greeting="HELLO").inquire()
    assert capsys.readouterr().out.startswith(f"{GREEN}\nHELLO\n\nPress Enter")


@pytest.mark.parametrize(
    "keys", ["exit" + ENTER, "  exit " + ENTER, CTRL_C, CTRL_D], ids=["exit", "exit-spaces", "ctrl-c", "ctrl-d"]
)
async def test_prompt_quits_with_keyboard_interrupt(keyboard: PipeInput, keys: str) -> None:
    keyboard.send_text(keys)
    async with MiniAgents():
        replies = console_prompt_agent.inquire("before")
        with pytest.raises(KeyboardInterrupt):
            await replies
        assert [m.text async for m in _texts_until_error(replies)] == ["before"]


async def _texts_until_error(replies: Any) -> AsyncIterator[Message]:
    try:
        async for message_promise in replies:
            yield await message_promise
    except KeyboardInterrupt:
        return


async def test_one_prompt_session_is_created_lazily_and_reused(keyboard: PipeInput) -> None:
    first = misc_agents._prompt_session()
    assert misc_agents._prompt_session() is first
    with create_app_session(input=keyboard, output=DummyOutput()):  # another terminal: another session
        assert misc_agents._prompt_session() is not first


# console_user_agent in a dialog


def recording_llm(calls: list[list[str | None]]) -> MiniAgent:
    @miniagent
    async def fake_llm(ctx: InteractionContext) -> None:
        messages = await ctx.message_promises
        calls.append([m.text for m in messages])
        ctx.reply(streamed(["echo: ", str(messages[-1].text)], agent_alias="FAKE_LLM", model="fake"))

    return fake_llm


@pytest.mark.parametrize("quit_keys", ["exit" + ENTER, CTRL_D, CTRL_C], ids=["exit", "ctrl-d", "ctrl-c"])
async def test_console_dialog_ends_quietly(
    keyboard: PipeInput, capsys: pytest.CaptureFixture[str], quit_keys: str
) -> None:
    calls: list[list[str | None]] = []
    keyboard.send_text("hi" + ENTER + "more" + ENTER + quit_keys)
    async with MiniAgents():
        assert await dialog_loop.fork(assistant_agent=recording_llm(calls)).inquire(SystemMessage("be brief")) == ()
    assert calls == [["be brief", "hi"], ["be brief", "hi", "echo: hi", "more"]]
    assert capsys.readouterr().out == (
        BANNER
        + "\n"
        + f"{green('FAKE_LLM: ')}{green('echo: ')}{green('hi')}\n\n\n"
        + f"{green('FAKE_LLM: ')}{green('echo: ')}{green('more')}\n\n"
        + ("\n" if quit_keys.endswith(ENTER) else "")
    )


async def test_each_console_dialog_gets_a_fresh_history(keyboard: PipeInput) -> None:
    calls: list[list[str | None]] = []
    keyboard.send_text("first" + ENTER + "exit" + ENTER + "second" + ENTER + "exit" + ENTER)
    async with MiniAgents():
        await dialog_loop.fork(assistant_agent=recording_llm(calls)).inquire()
        await dialog_loop.fork(assistant_agent=recording_llm(calls)).inquire()
    assert calls == [["first"], ["second"]]


async def test_console_user_agent_shares_the_process_wide_history(keyboard: PipeInput) -> None:
    keyboard.send_text("one" + ENTER + "two" + ENTER)
    async with MiniAgents():
        first = [m.text for m in await console_user_agent.inquire()]
        second = [m.text for m in await console_user_agent.inquire()]
    assert first[-1:] == ["one"]
    assert second[-2:] == ["one", "two"]  # the default history is one list for the whole process (SPEC §6.5)


# file_agent


async def test_file_agent_writes_the_joined_messages_and_passes_them_on(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old content", encoding="utf-8")
    async with MiniAgents():
        replies = await file_agent.fork(file=path).inquire(["first", streamed(["sec", "ond"]), "third"])
    assert [m.text for m in replies] == ["first", "second", "third"]
    assert path.read_text(encoding="utf-8") == "first\n\nsecond\n\nthird"


async def test_file_agent_writes_a_lone_surrogate_as_the_replacement_character(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    async with MiniAgents():
        replies = await file_agent.fork(file=path).inquire([streamed(["half \ud83d", " of it"]), "after"])
    assert [m.text for m in replies] == ["half \ud83d of it", "after"]
    assert path.read_text(encoding="utf-8") == "half \ufffd of it\n\nafter"  # (it used to stop at the surrogate)


# importing touches no terminal


def test_importing_the_ext_modules_touches_no_terminal() -> None:
    code = (
        "import sys\n"
        "import miniagents.ext, miniagents.ext.misc_agents, miniagents.ext.agent_aggregators\n"
        "import miniagents.ext.aggregator_agents, miniagents.ext.history_agents, miniagents.ext.chat_history_md\n"
        "import miniagents.cli, miniagents.__main__\n"
        "from miniagents.ext.misc_agents import console_user_agent\n"
        "print(sorted({'prompt_toolkit', 'markdown_it', 'llama_cpp', 'openai', 'anthropic'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=True
    )
    assert (result.stdout, result.stderr) == ("[]\n", "")


async def test_seed_001_adialog_loop_with_a_markdown_chat_history(keyboard: PipeInput, tmp_path: Path) -> None:
    from miniagents.ext.history_agents import ChatHistoryMD
    from miniagents.utils import adialog_loop

    calls: list[list[str | None]] = []
    chat_history = ChatHistoryMD(tmp_path / "CHAT.md")
    keyboard.send_text("hi" + ENTER + "exit" + ENTER)
    async with MiniAgents():
        with pytest.raises(KeyboardInterrupt):  # the compat loop does not swallow it: seed 001 catches it
            await adialog_loop(console_user_agent.fork(chat_history=chat_history), recording_llm(calls))
    assert calls == [["hi"]]
    assert [(m.role, m.text) for m in await chat_history.aload_chat_history()] == [
        ("user", "hi"),
        ("assistant", "echo: hi"),
    ]
