"""The ``miniagents`` command (also ``python -m miniagents``).

``miniagents chat`` runs a dialog in the terminal between you and an LLM agent, streaming the answers token by
token and keeping the history in a Markdown file (CHAT.md by default)::

    miniagents chat                                   # the embedded local model (SmolLM2-135M-Instruct)
    miniagents chat --model local:/path/to/model.gguf # another local GGUF model
    miniagents chat --model openai:gpt-4o-mini        # needs OPENAI_API_KEY and miniagents[openai]
    miniagents chat --model anthropic:claude-3-5-haiku-latest --system "Be brief."

Type ``exit``, or press Ctrl+C or Ctrl+D at an empty prompt, to quit; Ctrl+C while an answer streams stops that
answer (the part shown is kept, marked ``[interrupted]``) and the chat goes on. A failed answer is reported on a
line of its own and the chat goes on too. On start, the latest messages of the history file are shown.

Exit codes: 0 after a normal quit; 2 for a usage problem found before the first prompt (a bad option, an
unusable ``--history`` file, a missing API key or extra); 1 when the chat failed otherwise (e.g. the local model
file cannot be fetched); 130 when interrupted elsewhere (e.g. while the model file is fetched).

For tests and embedding, `run_chat` and `achat` take any assistant `MiniAgent`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniagents._chat_log import ChatLog, ChatLogError
from miniagents._text_io import is_terminal, write_to_console
from miniagents.errors import MiniAgentsError
from miniagents.messages import Message, MessageSequencePromise
from miniagents.miniagents import InteractionContext, MiniAgent, MiniAgents, miniagent
from miniagents.store._chat_log import open_chat_log

__all__ = [
    "CliError",
    "achat",
    "build_parser",
    "main",
    "make_assistant_agent",
    "recent_messages_agent",
    "run_chat",
    "run_view",
]

DEFAULT_MODEL = "local"
DEFAULT_HISTORY_FILE = "CHAT.md"
DEFAULT_VIEW_PORT = 8765  # (miniagents.ext.view.DEFAULT_PORT, without importing the view's extra)

LOCAL_N_CTX = 4096
"""The local model's context window in tokens (SmolLM2 was trained with 8192)."""
LOCAL_DEFAULT_MAX_TOKENS = 512
"""The local model's default answer length, in tokens (the rest of the window is for the prompt)."""
_LOCAL_TEMPLATE_RESERVE = 256  # tokens for the chat template and the estimate's error
_LOCAL_MIN_PROMPT_TOKENS = 256
_CHARS_PER_TOKEN = 3  # a cautious estimate: English prose is about 4-5 characters per token, code about 3
_MESSAGE_OVERHEAD_CHARS = 16

MAX_TEMPERATURE = 2.0
"""The highest ``--temperature`` accepted (OpenAI's limit; Anthropic's is 1)."""
RECAP_MESSAGES = 6
"""How many of the latest messages are shown when a chat resumes a conversation from its history file."""
INTERRUPTED_MARK = "[interrupted]"
"""Ends an answer stopped with Ctrl+C, in the history file and on the screen."""
FAILED_MARK = "[failed]"
"""Ends an answer that failed after some of it had arrived."""
_RECAP_CHARS = 400
_USER_STYLE = "93;1"  # bright yellow, bold (as the prompt)
_ASSISTANT_STYLE = "92;1"  # bright green, bold (as console_echo_agent)
_DIM_STYLE = "2"

_SGR = re.compile(r"\033\[[0-9;]*m")  # an ANSI "select graphic rendition" sequence: a colour or a style


@dataclass(frozen=True)
class _Console:
    """How the chat writes to stdout: in ANSI colours, or as plain text (to a pipe or a file, or with NO_COLOR)."""

    colors: bool = True

    def write(self, text: str) -> None:
        write_to_console(text if self.colors else _SGR.sub("", text))

    def erase_label(self) -> None:
        """Take back the label of an answer that did not come: a terminal erases it, plain text ends its line."""
        write_to_console("\r\033[K" if self.colors or is_terminal(sys.stdout) else "\n")


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_PROVIDERS = {
    # provider: (SDK module, extra, API key variable)
    "openai": ("openai", "openai", "OPENAI_API_KEY"),
    "anthropic": ("anthropic", "anthropic", "ANTHROPIC_API_KEY"),
    "local": ("xllamacpp", "local", None),
}


class CliError(MiniAgentsError):
    """A problem the user can fix (a bad option, a missing key or extra): printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``miniagents`` command."""
    parser = argparse.ArgumentParser(prog="miniagents", description="miniagents: LLM agents in your terminal.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    chat = commands.add_parser(
        "chat",
        help="chat with an LLM in the terminal",
        description="Chat with an LLM in the terminal; the history is kept in a Markdown file. "
        'Type "exit" or press Ctrl+C or Ctrl+D to quit. From a pipe or a file, each line is a message.',
    )
    chat.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="MODEL",
        help="local (the embedded SmolLM2-135M-Instruct, the default), local:PATH.gguf, openai:NAME or anthropic:NAME",
    )
    chat.add_argument("--system", metavar="TEXT", help="a system prompt, given to the model on every turn")
    chat.add_argument(
        "--history",
        default=DEFAULT_HISTORY_FILE,
        metavar="FILE",
        help="the chat history, read back and continued: a Markdown file (default: "
        f"{DEFAULT_HISTORY_FILE}), a SQLite message store (a file ending in .db, .sqlite or .sqlite3) or a "
        "postgresql:// URL",
    )
    chat.add_argument(
        "--max-tokens",
        type=_max_tokens,
        metavar="N",
        help=f"the maximum length of each answer, in tokens (local default: {LOCAL_DEFAULT_MAX_TOKENS})",
    )
    chat.add_argument(
        "--temperature",
        type=_temperature,
        metavar="T",
        help=f"the sampling temperature, from 0 (most predictable) to {MAX_TEMPERATURE:g}",
    )
    view = commands.add_parser(
        "view",
        help="show the agent call tree of running programs in the browser",
        description="Serve a live view of agent call trees on http://127.0.0.1:PORT (this machine only). A program "
        "publishes its run with one line: MiniAgents(observers=[miniagents.ext.view.ViewPublisher()]).",
    )
    view.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_VIEW_PORT,
        metavar="PORT",
        help=f"the TCP port (default: {DEFAULT_VIEW_PORT})",
    )
    view.add_argument(
        "--store",
        metavar="LOCATION",
        help="also show the newest stored runs of a message store: a SQLite file (e.g. runs.db) or a postgresql:// URL",
    )
    return parser


def _port(text: str) -> int:
    """``--port``: a TCP port number (0 picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {text}")
    return value


def _max_tokens(text: str) -> int:
    """``--max-tokens``: a whole number of at least 1 (argparse names the option in its message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of tokens (1 or more), got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _temperature(text: str) -> float:
    """``--temperature``: a number from 0 to `MAX_TEMPERATURE`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to {MAX_TEMPERATURE:g}, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE):
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_TEMPERATURE:g}, got {text}")
    return value


def _require_module(module_name: str, extra: str, what: str) -> None:
    try:
        importlib.import_module(module_name)
    except ImportError as error:
        raise CliError(
            f'{what} needs the "{module_name}" package, which is not installed: pip install "miniagents[{extra}]"'
        ) from error


def make_assistant_agent(model: str, max_tokens: int | None = None, temperature: float | None = None) -> MiniAgent:
    """Build the LLM agent for a ``--model`` value.

    Args:
        model: ``local``, ``local:PATH.gguf``, ``openai:NAME`` or ``anthropic:NAME``.
        max_tokens: the maximum length of each answer (the agent's default when None).
        temperature: the sampling temperature (the model's default when None).

    Returns:
        A forked LLM agent, ready for `achat`.

    Raises:
        CliError: the value is malformed, the provider's API key is not set, or its package (extra) is missing.
    """
    provider, _, name = model.partition(":")
    if provider not in _PROVIDERS:
        raise CliError(f"unknown model {model!r}: use local, local:PATH.gguf, openai:NAME or anthropic:NAME")
    module_name, extra, key_variable = _PROVIDERS[provider]
    if provider != "local" and not name:
        raise CliError(f"--model {provider}: needs a model name, e.g. --model {provider}:NAME")
    _require_module(module_name, extra, f"--model {model}")
    if key_variable is not None and not os.environ.get(key_variable):
        raise CliError(
            f"{key_variable} is not set: export {key_variable}=... to use {provider} models "
            f"(or run the local model: --model local)"
        )
    settings: dict[str, Any] = {}
    if max_tokens is not None:
        settings["max_tokens"] = max_tokens
    if temperature is not None:
        settings["temperature"] = temperature
    if provider == "openai":
        from miniagents.ext.llm.openai import openai_agent

        return openai_agent.fork(model=name, **settings)
    if provider == "anthropic":
        from miniagents.ext.llm.anthropic import anthropic_agent

        return anthropic_agent.fork(model=name, **settings)
    from miniagents.ext.llm.llama_cpp import llama_cpp_agent

    if name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise CliError(f"--model {model}: no such model file: {name}")
        try:
            with path.open("rb") as file:
                magic = file.read(4)
        except OSError as error:
            raise CliError(f"--model {model}: cannot read the model file: {error.strerror or error}") from error
        if magic != b"GGUF":
            raise CliError(f"--model {model}: not a GGUF model file: {name}")
        settings["model_path"] = name
    settings.setdefault("max_tokens", LOCAL_DEFAULT_MAX_TOKENS)
    local_agent = llama_cpp_agent.fork(n_ctx=LOCAL_N_CTX, n_threads=None, **settings)
    # A small context window: keep the prompt to the latest messages that fit, or a long history (CHAT.md keeps
    # earlier conversations too) would make every turn fail.
    prompt_tokens = LOCAL_N_CTX - settings["max_tokens"] - _LOCAL_TEMPLATE_RESERVE
    return recent_messages_agent.fork(
        alias=local_agent.alias,
        target_agent=local_agent,
        max_chars=max(prompt_tokens, _LOCAL_MIN_PROMPT_TOKENS) * _CHARS_PER_TOKEN,
    )


@miniagent
async def recent_messages_agent(
    ctx: InteractionContext, target_agent: MiniAgent, max_chars: int, **target_kwargs: Any
) -> None:
    """Inquire ``target_agent`` with the system messages and the latest other messages that fit ``max_chars``.

    The last message is always kept. ``target_kwargs`` go to ``target_agent.inquire()``. Replies with
    ``target_agent``'s replies.
    """
    messages = await ctx.message_promises
    system = [message for message in messages if getattr(message, "role", None) == "system"]
    budget = max_chars - sum(len(str(message)) for message in system)
    recent: list[Message] = []
    for message in reversed([message for message in messages if getattr(message, "role", None) != "system"]):
        budget -= len(str(message)) + _MESSAGE_OVERHEAD_CHARS
        if budget < 0 and recent:
            break
        recent.append(message)
    ctx.reply(target_agent.inquire([*system, *reversed(recent)], **target_kwargs))


async def achat(
    assistant_agent: MiniAgent,
    system: str | None = None,
    history_file: str | os.PathLike[str] = DEFAULT_HISTORY_FILE,
    warm_up: bool = False,
    line_input: bool = False,
    colors: bool = True,
) -> None:
    """Chat in the console with ``assistant_agent`` until the user quits; needs an active `MiniAgents`.

    Every message is appended to the history file as it is typed or streamed. A failed answer is reported on a
    line of its own (stderr) and leaves no entry; Ctrl+C while an answer streams stops it (the agents are
    cancelled, so a local model stops generating) and keeps the part shown, marked ``[interrupted]``. Either way
    the chat goes on with the next prompt. ``exit``, or Ctrl+C or Ctrl+D at an empty prompt, quits.

    With ``line_input`` (what ``miniagents chat`` does when its standard input is not a terminal: a pipe or a
    file) each line of standard input is a message, shown after ``USER: ``; there is no banner, and the end of
    the input quits.

    Args:
        assistant_agent: any agent that answers a conversation (an LLM agent, or a fake one in tests).
        system: a system prompt, given to the assistant on every turn (not written to the history).
        history_file: the history (a Markdown file, or a message store: see `open_chat_log`); its messages are
            given to the assistant and the latest are shown at the start.
        warm_up: ask the assistant for one token (``max_tokens=1``) in the background at the start, so that a
            local model loads while the user types the first message.
        line_input: read the messages from standard input line by line instead of prompting (prompt_toolkit
            needs a terminal).
        colors: write in ANSI colours; False writes plain text (what ``miniagents chat`` does when its standard
            output is not a terminal, or the ``NO_COLOR`` environment variable is set: https://no-color.org).

    Raises:
        CliError: the history file cannot be used (checked before anything is shown or written), or a store's
            history is open in another chat.
    """
    log = open_chat_log(history_file)
    try:
        messages = await log.aload()
    except ChatLogError as error:
        raise CliError(f"--history {error}") from error
    try:
        await _achat_turns(assistant_agent, system, log, messages, warm_up, line_input, _Console(colors))
    finally:
        aclose = getattr(log, "aclose", None)  # (a store's history is claimed by this process until then)
        if aclose is not None:
            await aclose()


async def _achat_turns(
    assistant_agent: MiniAgent,
    system: str | None,
    log: ChatLog,
    messages: list[Message],
    warm_up: bool,
    line_input: bool,
    console: _Console,
) -> None:
    """The chat after its history is loaded (see `achat`)."""
    from miniagents.ext.llm import SystemMessage, UserMessage
    from miniagents.ext.misc_agents import aprompt_user, banner

    if warm_up:  # loads the model while the user types (the first answer waits for it); errors show there
        assistant_agent.inquire(UserMessage(text="Hi"), max_tokens=1)
    if not line_input:
        console.write(banner())
    _show_recap(messages, log.path, console)
    prompt_prefix = [SystemMessage(text=system)] if system else []
    while True:
        try:
            text = await (_aread_user_line(console) if line_input else aprompt_user())
        except KeyboardInterrupt:
            return
        if not text.strip():
            continue
        log.append("user", None, text)  # at once: a typed message is never lost
        messages.append(Message(text=text, role="user", model=None))
        messages.extend(await _aanswer(assistant_agent.inquire([*prompt_prefix, *messages]), log, console))


async def _aread_user_line(console: _Console) -> str:
    """The next line of standard input (not a terminal), shown after ``USER: `` as if typed.

    It is read in a daemon thread of its own, so that a read that blocks (a pipe whose writer waits) never holds
    up the event loop or, after Ctrl+C, the program's end.

    Raises:
        KeyboardInterrupt: the line is ``exit``, or the input ended.
    """
    from miniagents.ext.misc_agents import _EXIT_COMMAND

    stdin = sys.stdin
    if stdin is None:  # (closed: no input at all)
        raise KeyboardInterrupt
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        outcome: tuple[str, BaseException | None]
        try:
            outcome = (stdin.readline(), None)
        except BaseException as error:  # (e.g. a byte that is not UTF-8: the chat reports it)
            outcome = ("", error)
        with contextlib.suppress(RuntimeError):  # (the loop is closed: nobody waits for this line any more)
            loop.call_soon_threadsafe(_settle, line, *outcome)

    threading.Thread(target=read, name="miniagents-stdin", daemon=True).start()
    text = await line
    if not text:
        raise KeyboardInterrupt  # the end of the input
    text = text.removesuffix("\n").removesuffix("\r")
    console.write(f"\033[{_USER_STYLE}mUSER: {text}\033[0m\n\n")
    if text.strip() == _EXIT_COMMAND:
        raise KeyboardInterrupt
    return text


def _settle(future: asyncio.Future[str], result: str, error: BaseException | None) -> None:
    if future.done():  # (cancelled: Ctrl+C)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _show_recap(messages: list[Message], path: Path, console: _Console) -> None:
    """Show the latest messages of the earlier conversation, when resuming one."""
    shown = messages[-RECAP_MESSAGES:]
    if not shown:
        return
    earlier = len(messages) - len(shown)
    more = f", after {earlier} earlier message{'s' * (earlier != 1)}" if earlier else ""
    console.write(f"\033[{_DIM_STYLE}m(resuming the conversation in {path}{more})\033[0m\n\n")
    for message in shown:
        role = getattr(message, "role", None) or "assistant"
        model = getattr(message, "model", None)
        label = "USER" if role == "user" else f"{role.upper()}{f' / {model}' if model else ''}"
        style = _USER_STYLE if role == "user" else _ASSISTANT_STYLE
        text = str(message)
        if len(text) > _RECAP_CHARS:
            text = text[:_RECAP_CHARS].rstrip() + " ..."
        console.write(f"\033[{style}m{label}: \033[0m\033[{style}m{text}\033[0m\n\n")


async def _aanswer(replies: MessageSequencePromise, log: ChatLog, console: _Console) -> list[Message]:
    """Stream the assistant's replies to the console and the history; return the messages the history got.

    Ctrl+C (SIGINT) cancels the streaming and then the agent call (``replies.cancel()``), with the calls it made.
    """
    from miniagents.ext.misc_agents import cancel_on_ctrl_c

    recorded: list[Message] = []
    streaming = asyncio.ensure_future(_astream_replies(replies, log, recorded, console))
    try:
        with cancel_on_ctrl_c(streaming):
            await asyncio.wait([streaming])
    except asyncio.CancelledError:
        streaming.cancel()
        raise
    if streaming.cancelled():
        replies.cancel()  # the agent calls stop (a local model stops generating at its next token)
    elif (error := streaming.exception()) is not None:
        sys.stdout.flush()
        print(f"miniagents: error: {type(error).__name__}: {error}\n", file=sys.stderr, flush=True)
    return recorded


async def _astream_replies(
    replies: MessageSequencePromise, log: ChatLog, recorded: list[Message], console: _Console
) -> None:
    async for message_promise in replies:
        metadata = message_promise.preliminary_metadata
        role = getattr(metadata, "role", None)
        role = role if isinstance(role, str) and role.strip().lower() in ("user", "assistant", "system") else None
        role = role or "assistant"
        model = getattr(metadata, "model", None)
        label = str(getattr(metadata, "agent_alias", None) or role).upper()
        console.write(f"\033[{_ASSISTANT_STYLE}m{label}: \033[0m")
        writer = log.answer_writer(role, model)
        mark = None
        try:
            async for token in message_promise:
                writer.write(token)
                console.write(f"\033[{_ASSISTANT_STYLE}m{token}\033[0m")
        except asyncio.CancelledError:
            mark = INTERRUPTED_MARK
            raise
        except Exception:
            mark = FAILED_MARK
            raise
        finally:
            text = writer.finish(mark)
            if text is not None:
                recorded.append(Message(text=text, role=role, model=model))
                console.write(f" \033[{_DIM_STYLE}m{mark}\033[0m\n\n" if mark else "\n\n")
            elif mark == INTERRUPTED_MARK:
                console.write(f"\033[{_DIM_STYLE}m{mark}\033[0m\n\n")
            elif mark is None:
                console.write("\n\n")  # an empty answer
            else:
                console.erase_label()  # no answer: an error is reported on its own line


def run_chat(
    assistant_agent: MiniAgent,
    system: str | None = None,
    history_file: str | os.PathLike[str] = DEFAULT_HISTORY_FILE,
    warm_up: bool = False,
    line_input: bool = False,
    colors: bool = True,
) -> int:
    """Run `achat` in a new `MiniAgents` context (blocking) and return the exit code.

    Problems are printed as one line on stderr.

    Returns:
        0 after the user quit, 2 when the history file cannot be used, 1 when the chat failed otherwise, 130 when
        interrupted outside the prompt and the answers.
    """
    # Agent errors are reported by the chat, once and briefly, instead of being logged with a traceback.
    mini_agents = MiniAgents(log_level_for_errors=logging.DEBUG)
    try:
        mini_agents.run(
            achat(
                assistant_agent,
                system=system,
                history_file=history_file,
                warm_up=warm_up,
                line_input=line_input,
                colors=colors,
            )
        )
    except KeyboardInterrupt:
        write_to_console("\033[0m\n" if colors else "\n")
        return EXIT_INTERRUPTED
    except CliError as error:
        print(f"miniagents: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # the command reports any failure in one line
        if colors:
            write_to_console("\033[0m")
        print(f"miniagents: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def run_view(port: int, store: str | None = None) -> int:
    """Serve ``miniagents view`` on 127.0.0.1 until interrupted; returns the exit code.

    With ``store``, the newest runs recorded in that message store are shown too (read once, at the start).
    Exit codes: 0 after Ctrl+C, 2 when the view's extra is not installed or the store cannot be read, 1 when the
    server could not start (e.g. the port is taken).
    """
    try:
        _require_module("starlette", "view", "miniagents view")
        _require_module("uvicorn", "view", "miniagents view")
    except CliError as error:
        print(f"miniagents: {error}", file=sys.stderr)
        return EXIT_USAGE
    from miniagents.ext.view import LiveRuns, aload_stored_runs, serve

    source = LiveRuns()
    if store is not None:
        try:
            asyncio.run(aload_stored_runs(store, source=source))
        except Exception as error:  # any reason the store cannot be read is for the user to fix
            print(f"miniagents: --store {store}: {error}", file=sys.stderr)
            return EXIT_USAGE
    try:
        serve(port, source, lambda url: print(f"miniagents view: {url} (Ctrl+C to stop)", file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            print(
                f"miniagents: port {port} on 127.0.0.1 is in use by another program: choose another with --port "
                "(--port 0 takes a free one)",
                file=sys.stderr,
            )
        else:
            print(f"miniagents: the view server could not run: {error}", file=sys.stderr)
        return EXIT_FAILED
    except SystemExit as error:
        print(f"miniagents: the view server could not run: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``miniagents`` command with ``argv`` (``sys.argv[1:]`` by default) and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "view":
        return run_view(args.port, args.store)
    if args.command != "chat":
        parser.print_help()
        return EXIT_USAGE
    try:
        open_chat_log(args.history).check()  # before anything else: nothing is written when it is unusable
        assistant_agent = make_assistant_agent(args.model, max_tokens=args.max_tokens, temperature=args.temperature)
    except ChatLogError as error:
        print(f"miniagents: --history {error}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as error:
        print(f"miniagents: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # e.g. while a database server that does not answer is waited for
        print("\nminiagents: interrupted before the chat started", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.model == "local":
        from miniagents.ext.llm._local_models import LocalModelError
        from miniagents.ext.llm.llama_cpp import default_model_path

        try:
            default_model_path()  # fetched into the cache on the first run, before the first prompt
        except LocalModelError as error:
            print(f"miniagents: {error}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("\nminiagents: interrupted while fetching the model file", file=sys.stderr)
            return EXIT_INTERRUPTED
    warm_up = args.model.partition(":")[0] == "local"  # a local model loads while the first message is typed
    line_input = not is_terminal(sys.stdin)  # a pipe or a file: a line per message (prompt_toolkit needs a tty)
    colors = is_terminal(sys.stdout) and not os.environ.get("NO_COLOR")  # (https://no-color.org)
    return run_chat(
        assistant_agent,
        system=args.system,
        history_file=args.history,
        warm_up=warm_up,
        line_input=line_input,
        colors=colors,
    )
