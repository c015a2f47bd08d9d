"""in_memory_history_agent, markdown_history_agent and the compat ChatHistory objects (SPEC §6.5, §6.9)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import miniagents.ext.chat_history_md as chat_history_md_compat
from miniagents import InteractionContext, Message, MessagePromise, MiniAgents, miniagent
from miniagents.ext._chat_md_file import read_messages
from miniagents.ext.agent_aggregators import user_agent
from miniagents.ext.history_agents import (
    ChatHistory,
    ChatHistoryMD,
    InMemoryChatHistory,
    in_memory_history_agent,
    markdown_history_agent,
)
from miniagents.ext.llm import AssistantMessage, SystemMessage, UserMessage
from tests.polling import promise_made, wait_until

RULE = "=" * 40


def streamed(tokens: list[str], start_asap: bool = True, **metadata: Any) -> MessagePromise:
    async def stream(_: dict[str, Any]) -> AsyncIterator[str]:
        for token in tokens:
            yield token

    return Message.promise(start_asap=start_asap, message_token_streamer=stream, **metadata)


def fields(messages: Any) -> list[tuple[Any, Any, Any]]:
    return [(getattr(m, "role", None), getattr(m, "model", None), m.text) for m in messages]


# in_memory_history_agent


async def test_in_memory_history_accumulates_and_replies_a_snapshot() -> None:
    history: list[Message] = []
    async with MiniAgents():
        agent = in_memory_history_agent.fork(message_list=history)
        first = await agent.inquire(["a", "b"])
        second = await agent.inquire("c")
        history.append(Message("added later"))
        assert [m.text for m in first] == ["a", "b"]
        assert [m.text for m in second] == ["a", "b", "c"]
        assert [m.text for m in await agent.inquire()] == ["a", "b", "c", "added later"]


async def test_histories_skip_no_history_messages(tmp_path: Path) -> None:
    history: list[Message] = []
    chat_md = tmp_path / "CHAT.md"
    async with MiniAgents():
        messages = [UserMessage("kept"), Message("notice", no_history=True), streamed(["hidden"], no_history=True)]
        assert [m.text for m in await in_memory_history_agent.fork(message_list=history).inquire(messages)] == ["kept"]
        assert fields(await markdown_history_agent.fork(history_md_file=chat_md).inquire(messages)) == [
            ("user", None, "kept")
        ]
    assert chat_md.read_text(encoding="utf-8") == f"\nuser\n{RULE}\nkept\n"


# markdown_history_agent: the format


async def test_chat_md_is_written_exactly_as_the_spec_shows(tmp_path: Path) -> None:
    chat_md = tmp_path / "CHAT.md"
    async with MiniAgents():
        replies = await markdown_history_agent.fork(history_md_file=chat_md).inquire(
            [
                UserMessage("hi"),
                streamed(["Hello", "! …"], role="assistant", model="claude-3-5-sonnet-20240620"),
            ]
        )
    assert chat_md.read_bytes() == (
        f"\nuser\n{RULE}\nhi\n\nassistant / claude-3-5-sonnet-20240620\n{RULE}\nHello! …\n".encode()
    )
    assert fields(replies) == [("user", None, "hi"), ("assistant", "claude-3-5-sonnet-20240620", "Hello! …")]
    assert all(type(message) is Message for message in replies)


async def test_read_back_round_trips_roles_models_and_tricky_text(tmp_path: Path) -> None:
    chat_md = tmp_path / "CHAT.md"
    tricky = "# user\n\n===\n```python\n# assistant\n```\n  \nend\r\nwith CR\r"
    sent = [
        SystemMessage("You are terse."),
        UserMessage(tricky),
        AssistantMessage("Fine.", model="gpt-4o"),
        Message("no role at all"),
        Message("an unknown role", role="tool"),
        Message("a capitalized role", role="System"),
        AssistantMessage("spaces", model="my model\tv2"),
    ]
    async with MiniAgents():
        replies = await markdown_history_agent.fork(history_md_file=chat_md).inquire(sent)
    assert fields(replies) == [
        ("system", None, "You are terse."),
        ("user", None, tricky),
        ("assistant", "gpt-4o", "Fine."),
        ("assistant", None, "no role at all"),  # default_role
        ("assistant", None, "an unknown role"),  # written under default_role: a "tool" heading would not parse
        ("system", None, "a capitalized role"),
        ("assistant", "my_model_v2", "spaces"),  # whitespace in a model would make the heading unreadable
    ]
    assert "\nSystem\n" in chat_md.read_text(encoding="utf-8")


async def test_default_role_and_history_from_earlier_runs(tmp_path: Path) -> None:
    chat_md = tmp_path / "nested" / "dirs" / "CHAT.md"
    async with MiniAgents():
        agent = markdown_history_agent.fork(history_md_file=chat_md, default_role="user")
        await agent.inquire("first run")
    async with MiniAgents():
        replies = await agent.inquire(AssistantMessage("second run"))
    assert fields(replies) == [("user", None, "first run"), ("assistant", None, "second run")]


async def test_only_write_replies_nothing_and_append_false_starts_afresh(tmp_path: Path) -> None:
    chat_md = tmp_path / "CHAT.md"
    chat_md.write_text(f"\nuser\n{RULE}\nold\n", encoding="utf-8")
    async with MiniAgents():
        assert await markdown_history_agent.fork(history_md_file=chat_md, only_write=True).inquire("new") == ()
        assert fields(await ChatHistoryMD(chat_md).aload_chat_history()) == [
            ("user", None, "old"),
            ("assistant", None, "new"),
        ]
        replies = await markdown_history_agent.fork(history_md_file=chat_md, append=False).inquire("fresh")
    assert fields(replies) == [("assistant", None, "fresh")]
    assert chat_md.read_text(encoding="utf-8") == f"\nassistant\n{RULE}\nfresh\n"


async def test_a_long_history_has_its_promises_made_while_the_input_is_awaited(tmp_path: Path) -> None:
    chat_md = tmp_path / "CHAT.md"
    chat_md.write_text("".join(f"\nuser\n{RULE}\nmessage {i}\n" for i in range(3000)), encoding="utf-8")
    async with MiniAgents():
        call = markdown_history_agent.fork(history_md_file=chat_md).initiate_inquiry()  # the user is "typing"
        # the objects the agent read: the reader keeps all entries but the last (which a later append could extend)
        await wait_until(lambda: len(read_messages(chat_md, "assistant")) == 3000)
        earlier = read_messages(chat_md, "assistant")[:-1]
        await wait_until(lambda: all(map(promise_made, earlier)))
        promises = [message.as_promise for message in earlier]
        call.send_message(UserMessage("new"))
        replies = await call.reply_sequence()
    assert [m.text for m in replies] == [f"message {i}" for i in range(3000)] + ["new"]
    assert all(reply is message for reply, message in zip(replies[:2999], earlier, strict=True))
    assert all(message.as_promise is promise for message, promise in zip(earlier, promises, strict=True))


# markdown_history_agent: streaming to disk


async def test_every_token_is_on_disk_before_the_next_one_is_asked_for(tmp_path: Path) -> None:
    chat_md = tmp_path / "CHAT.md"
    on_disk: list[str] = []
    tokens = ["Hel", "lo", " wor", "ld\n", "second", " line"]

    async def stream(_: dict[str, Any]) -> AsyncIterator[str]:
        for token in tokens:
            # Lazy promise, one consumer: we are asked for a token only after the previous one was handled.
            on_disk.append(chat_md.read_text(encoding="utf-8"))
            yield token

    async with MiniAgents():
        message = AssistantMessage.promise(start_asap=False, message_token_streamer=stream, model="m")
        await markdown_history_agent.fork(history_md_file=chat_md, only_write=True).inquire(message)
    header = f"\nassistant / m\n{RULE}\n"  # written with the first token
    assert on_disk == ["", *(header + "".join(tokens[:count]) for count in range(1, len(tokens)))]
    assert chat_md.read_text(encoding="utf-8") == header + "".join(tokens) + "\n"


async def test_a_message_without_tokens_leaves_no_entry(tmp_path: Path) -> None:
    """A message that fails before its first token, or has none, writes nothing (not an empty entry)."""
    chat_md = tmp_path / "CHAT.md"

    async def failing(_: dict[str, Any]) -> AsyncIterator[str]:
        raise ConnectionError("network down")
        yield ""  # pragma: no cover - makes it an async generator

    async with MiniAgents():
        agent = markdown_history_agent.fork(history_md_file=chat_md)
        message = AssistantMessage.promise(message_token_streamer=failing, model="m")
        with pytest.raises(ConnectionError, match="network down"):
            await agent.inquire([UserMessage("hi"), message])
        replies = await agent.inquire([streamed([], role="assistant"), streamed(["", ""]), UserMessage("again")])
    assert fields(replies) == [("user", None, "hi"), ("user", None, "again")]
    assert chat_md.read_text(encoding="utf-8") == f"\nuser\n{RULE}\nhi\n\nuser\n{RULE}\nagain\n"


async def test_the_lock_is_held_from_the_first_token_to_the_end_of_the_message(tmp_path: Path) -> None:
    from filelock import FileLock, Timeout

    chat_md = tmp_path / "CHAT.md"
    other_writer = FileLock(f"{chat_md}.lock")
    held: list[bool] = []

    def lock_is_held() -> bool:
        try:
            other_writer.acquire(timeout=0)
        except Timeout:
            return True
        other_writer.release()
        return False

    async def stream(_: dict[str, Any]) -> AsyncIterator[str]:
        for token in ["one ", "two"]:
            held.append(lock_is_held())  # asked for the next token: is the lock held meanwhile?
            yield token
        held.append(lock_is_held())

    async with MiniAgents():
        message = AssistantMessage.promise(start_asap=False, message_token_streamer=stream)
        await markdown_history_agent.fork(history_md_file=chat_md, only_write=True).inquire(message)
    assert held == [False, True, True]  # free until the header is written with the first token
    assert not lock_is_held()


async def test_an_error_mid_message_keeps_the_tokens_written_so_far(tmp_path: Path) -> None:
    chat_md = tmp_path / "CHAT.md"

    async def stream(_: dict[str, Any]) -> AsyncIterator[str]:
        yield "partial "
        yield "answer\n#"  # the "#" is held back until the line shows whether it needs escaping
        raise ConnectionError("the model went away")

    async with MiniAgents():
        message = AssistantMessage.promise(message_token_streamer=stream, model="m")
        with pytest.raises(ConnectionError, match="went away"):
            await markdown_history_agent.fork(history_md_file=chat_md).inquire([UserMessage("q"), message])
        assert fields(await ChatHistoryMD(chat_md).aload_chat_history()) == [
            ("user", None, "q"),
            ("assistant", "m", "partial answer\n#"),
        ]
    assert chat_md.read_text(encoding="utf-8").endswith(f"\nassistant / m\n{RULE}\npartial answer\n#\n")


def test_a_killed_process_keeps_the_tokens_written_so_far(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from miniagents import Message, MiniAgents
        from miniagents.ext.history_agents import markdown_history_agent

        async def stream(_):
            yield "Hello"
            yield " world\\n"
            yield "second line"
            os._exit(3)  # a hard crash: no finally block, no flush at exit

        async def main():
            # lazy: the history agent pulls each token, so the crash comes after it handled the earlier ones
            message = Message.promise(start_asap=False, message_token_streamer=stream, role="assistant", model="m")
            await markdown_history_agent.fork(history_md_file=sys.argv[1]).inquire(message)

        MiniAgents().run(main())
        """
    )
    chat_md = tmp_path / "CHAT.md"
    result = subprocess.run(
        [sys.executable, "-c", script, str(chat_md)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3, result.stderr
    assert chat_md.read_text(encoding="utf-8") == f"\nassistant / m\n{RULE}\nHello world\nsecond line"


_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["\n", "\r", "\r\n", " ", "\t", "#", "=", "`", "~", "<", "!", "\\", "-", "/", "user", "a"]),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=30,
).map("".join)


@st.composite
def tokenized(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(_TEXT)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return text, [text[start:end] for start, end in itertools.pairwise(bounds)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "system"]), st.sampled_from([None, "m-1"]), tokenized()),
        max_size=4,
    )
)
def test_any_streamed_text_round_trips(messages: list[tuple[str, str | None, tuple[str, list[str]]]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        chat_md = Path(directory) / "CHAT.md"

        async def main() -> tuple[Message, ...]:
            promises = [streamed(tokens, role=role, model=model) for role, model, (_, tokens) in messages]
            return await markdown_history_agent.fork(history_md_file=chat_md).inquire(promises)

        replies = MiniAgents().run(main())
    # a message without text has no tokens: it leaves no entry
    assert fields(replies) == [(role, model, text) for role, model, (text, _) in messages if text]


# compat objects


async def test_chat_history_md_in_a_user_agent_like_seed_001(tmp_path: Path) -> None:
    chat_md = tmp_path / "CHAT.md"
    chat_history = ChatHistoryMD(chat_md)
    assert isinstance(chat_history, ChatHistory)
    assert await chat_history.aload_chat_history() == ()

    @miniagent
    async def typing_user(ctx: InteractionContext) -> None:
        ctx.reply(ctx.message_promises)
        ctx.reply(UserMessage("typed"))

    async with MiniAgents():
        user = user_agent.fork(prompt_agent=typing_user, chat_history=chat_history)
        assert fields(await user.inquire(AssistantMessage("hello", model="m"))) == [
            ("assistant", "m", "hello"),
            ("user", None, "typed"),
        ]
    assert fields(await chat_history.aload_chat_history()) == [("assistant", "m", "hello"), ("user", None, "typed")]
    assert chat_history.history_agent is chat_history.history_agent


async def test_in_memory_chat_history_has_a_list_of_its_own() -> None:
    first, second = InMemoryChatHistory(), InMemoryChatHistory()
    async with MiniAgents():
        await first.history_agent.inquire("one")
    assert [m.text for m in await first.aload_chat_history()] == ["one"]
    assert await second.aload_chat_history() == ()
    assert [m.text for m in first.message_list] == ["one"]


def test_chat_history_is_abstract() -> None:
    with pytest.raises(TypeError):
        ChatHistory()  # type: ignore[abstract]


def test_chat_history_md_module_is_a_compat_alias() -> None:
    assert chat_history_md_compat.ChatHistoryMD is ChatHistoryMD
    assert chat_history_md_compat.__all__ == ["ChatHistoryMD"]
