"""Console and file agents: echo messages to the terminal, prompt the user, write messages to a file.

`console_prompt_agent` uses prompt_toolkit, which is imported the first time the agent prompts, never at import
time: importing this module touches no terminal. `console_user_agent` (echo, prompt and history in one agent) is
`user_agent` forked with the first two.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from miniagents._text_io import REPLACE_UNENCODABLE, write_to_console
from miniagents.ext._user_agent import user_agent
from miniagents.miniagents import InteractionContext, miniagent

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.application.current import AppSession

__all__ = [
    "aprompt_user",
    "cancel_on_ctrl_c",
    "console_echo_agent",
    "console_prompt_agent",
    "console_user_agent",
    "file_agent",
    "print_banner",
]

DEFAULT_GREETING = "YOU ARE NOW IN A CHAT WITH AN AI ASSISTANT"
"""The first line of the banner `console_prompt_agent` shows at the start of a dialog."""

_BANNER_HINTS = (
    "Press Enter to send your message.\n"
    "Press Ctrl+Space to insert a newline.\n"
    'Press Ctrl+C (or type "exit") to quit the conversation.\n'
)
_BANNER_STYLE = "92;1"  # bright green, bold
_USER_PROMPT = "USER: "
_USER_STYLE = "ansibrightyellow bold"
_EXIT_COMMAND = "exit"


@contextlib.contextmanager
def cancel_on_ctrl_c(task: asyncio.Future[Any] | None) -> Iterator[list[bool]]:
    """While in the block, Ctrl+C (SIGINT) cancels ``task`` instead of interrupting the program.

    Only in the main thread (where signal handlers run) and with a ``task``; elsewhere it does nothing. The
    previous handler is restored on leaving.

    Yields:
        A list that is empty until Ctrl+C was pressed (then ``[True]``): truthy exactly when the cancellation
        came from Ctrl+C.
    """
    pressed: list[bool] = []
    if task is None or threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    loop = asyncio.get_running_loop()

    def cancel(signal_number: int, frame: Any) -> None:
        pressed[:] = [True]
        loop.call_soon_threadsafe(task.cancel)

    previous = signal.signal(signal.SIGINT, cancel)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _metadata(message_promise: Any, name: str) -> Any:
    return getattr(message_promise.preliminary_metadata, name, None)


@miniagent
async def console_echo_agent(
    ctx: InteractionContext,
    assistant_style: str = "92;1",
    mention_aliases: bool = True,
    default_role: str = "assistant",
    hide_system_messages: bool = True,
) -> None:
    """Print the incoming messages to stdout token by token, and pass them on unchanged.

    Each message is printed as ``LABEL: `` followed by its tokens as they arrive (flushed one by one) and then a
    blank line, all in the ANSI SGR style ``assistant_style``. ``LABEL`` is the first truthy one of the message's
    ``agent_alias``, ``role`` and ``default_role`` (read from its preliminary metadata), upper-cased. A character
    that stdout's encoding cannot hold (a lone surrogate from a broken stream; an emoji on a ``cp1252`` console) is
    printed as U+FFFD or ``?``; the message passed on keeps its text.

    Ctrl+C while the messages are awaited or stream (in the main thread) raises `KeyboardInterrupt` here, which
    ends the dialog loops quietly (instead of asyncio's default: cancelling the program's main task).

    Args:
        ctx: the interaction context.
        assistant_style: the SGR parameters (``"92;1"`` is bright green, bold).
        mention_aliases: print the ``LABEL: `` prefix.
        default_role: the label of messages with neither ``agent_alias`` nor ``role``.
        hide_system_messages: do not print messages whose role is ``system``.

    Replies:
        The incoming messages, unchanged (replied before anything is printed).
    """
    ctx.reply(ctx.message_promises)
    with cancel_on_ctrl_c(asyncio.current_task()) as interrupted:
        try:
            async for message_promise in ctx.message_promises:
                if hide_system_messages and _metadata(message_promise, "role") == "system":
                    continue
                if mention_aliases:
                    label = (
                        _metadata(message_promise, "agent_alias") or _metadata(message_promise, "role") or default_role
                    )
                    write_to_console(f"\033[{assistant_style}m{str(label).upper()}: \033[0m")
                async for token in message_promise:
                    write_to_console(f"\033[{assistant_style}m{token}\033[0m")
                write_to_console("\n\n")
        except asyncio.CancelledError:
            if not interrupted:
                raise
            write_to_console("\033[0m\n\n")
            raise KeyboardInterrupt from None  # Ctrl+C while messages stream (or are awaited): quit the dialog


_prompt_sessions: tuple[AppSession, PromptSession[str]] | None = None


def _prompt_session() -> PromptSession[str]:
    """The one `PromptSession`, created on first use (and again only if prompt_toolkit's app session changed)."""
    global _prompt_sessions
    from prompt_toolkit import PromptSession
    from prompt_toolkit.application.current import get_app_session
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.lexers import SimpleLexer

    app_session = get_app_session()
    if _prompt_sessions is not None and _prompt_sessions[0] is app_session:
        return _prompt_sessions[1]

    bindings = KeyBindings()

    @bindings.add("enter")
    def _submit(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    @bindings.add("c-space")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("tab")
    def _tab(event: KeyPressEvent) -> None:  # (with no completer, prompt_toolkit's own Tab does nothing)
        event.current_buffer.insert_text("\t")

    @bindings.add("c-c")
    def _clear_or_quit(event: KeyPressEvent) -> None:
        if event.current_buffer.text:  # like a shell: Ctrl+C drops what was typed, on an empty prompt it quits
            event.current_buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt())

    session: PromptSession[str] = PromptSession(
        [(_USER_STYLE, _USER_PROMPT)],
        multiline=True,
        key_bindings=bindings,
        lexer=SimpleLexer(_USER_STYLE),
        prompt_continuation=lambda width, line_number, is_soft_wrap: " " * width,
    )
    _prompt_sessions = (app_session, session)
    return session


@miniagent
async def console_prompt_agent(
    ctx: InteractionContext,
    greeting: str = DEFAULT_GREETING,
    hide_system_messages: bool = True,
) -> None:
    """Read the user's next message from the console (with prompt_toolkit) and reply with it.

    The incoming messages are passed on first and then awaited in full (so whatever prints them is done). When
    none of them is a non-system message, the dialog is just starting and a banner is printed first: the
    greeting and how to use the prompt. The prompt is `aprompt_user`'s: Enter sends the message, Ctrl+Space
    inserts a newline, Tab a tab, Ctrl+C clears what was typed.

    Args:
        ctx: the interaction context.
        greeting: the banner's first line.
        hide_system_messages: do not count system messages when deciding whether the dialog is starting.

    Replies:
        The incoming messages, then a `UserMessage` with the text as typed (not stripped), unless it is blank.

    Raises:
        KeyboardInterrupt: the user typed ``exit``, or pressed Ctrl+C or Ctrl+D (end of input) on an empty
            prompt; the dialog loops end quietly on it.
    """
    from miniagents.ext.llm import UserMessage

    ctx.reply(ctx.message_promises)
    messages = await ctx.message_promises
    if not any(not (hide_system_messages and getattr(message, "role", None) == "system") for message in messages):
        print_banner(greeting)
    user_input = await aprompt_user()
    if user_input.strip():
        ctx.reply(UserMessage(text=user_input))


def print_banner(greeting: str = DEFAULT_GREETING) -> None:
    """Print the banner of a console dialog: ``greeting`` and how to use the prompt (to stdout)."""
    write_to_console(banner(greeting))


def banner(greeting: str = DEFAULT_GREETING) -> str:
    """The banner `print_banner` prints, in bold bright green (ANSI SGR)."""
    return f"\033[{_BANNER_STYLE}m\n{greeting}\n\n{_BANNER_HINTS}\033[0m\n"


async def aprompt_user() -> str:
    """Read the user's next message from the console with prompt_toolkit (``USER: `` prompt).

    Enter sends the message, Ctrl+Space inserts a newline, Tab a tab (as typed: no completion), Ctrl+C clears
    what was typed (or quits on an empty prompt).

    Returns:
        The text as typed (not stripped; possibly blank).

    Raises:
        KeyboardInterrupt: the user typed ``exit``, or pressed Ctrl+C or Ctrl+D on an empty prompt.
    """
    try:
        user_input = await _prompt_session().prompt_async()
    except EOFError as error:
        raise KeyboardInterrupt from error
    write_to_console("\n")
    if user_input.strip() == _EXIT_COMMAND:
        raise KeyboardInterrupt
    return user_input


@miniagent
async def file_agent(ctx: InteractionContext, file: str | os.PathLike[str]) -> None:
    """Write the incoming messages, joined by blank lines, to ``file`` (overwritten), and pass them on.

    The tokens are written (and flushed) as they arrive.

    Args:
        ctx: the interaction context.
        file: the path of the file (UTF-8; a lone surrogate, which UTF-8 cannot hold, is written as U+FFFD).

    Replies:
        The incoming messages, unchanged.
    """
    ctx.reply(ctx.message_promises)
    # (a local file, written token by token)
    with open(file, "w", encoding="utf-8", errors=REPLACE_UNENCODABLE) as stream:  # noqa: ASYNC230
        async for token in ctx.message_promises.as_single_promise():
            stream.write(token)
            stream.flush()


console_user_agent = user_agent.fork(echo_agent=console_echo_agent, prompt_agent=console_prompt_agent)
"""`user_agent` in the console: `console_echo_agent`, `console_prompt_agent` and the default in-memory history."""
