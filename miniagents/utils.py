"""Utilities over message sequences: join, split, and the compatibility chain loops."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from miniagents._text_splitter import EventKind, SplitEvent, TextSplitter
from miniagents.messages import (
    Message,
    MessagePromise,
    MessageSequence,
    MessageSequencePromise,
    MessageType,
    join_sequence,
)
from miniagents.promising.promising import PromisingContext, StreamAppender
from miniagents.promising.sentinels import AWAIT, CLEAR, DEFAULT, Sentinel

__all__ = ["achain_loop", "adialog_loop", "join_messages", "split_messages"]


def join_messages(
    messages: MessageType,
    delimiter: str | None = "\n\n",
    strip_leading_newlines: bool = False,
    reference_original_messages: bool = True,
    start_asap: bool | Sentinel = DEFAULT,
    message_class: type[Message] | None = None,
    **message_metadata: Any,
) -> MessagePromise:
    r"""Join messages into one streamed `MessagePromise`.

    Args:
        messages: any `MessageType` structure.
        delimiter: emitted as a token between two messages (not when empty or None).
        strip_leading_newlines: remove leading ``\\n``/``\\r`` from each message's start, across tokens.
        reference_original_messages: put the tuple of input messages into ``original_messages``.
        start_asap: see `MessagePromise`.
        message_class: the class of the joined message (`Message` by default).
        **message_metadata: preliminary metadata of the joined message (wins over the inputs' fields).

    Returns:
        A `MessagePromise` whose tokens are the inputs' tokens with the delimiter between messages. The joined
        message also carries the inputs' extra fields (later inputs win).

    Example:
        ``join_messages(["Hello", "World"], delimiter=" ")`` streams ``"Hello"``, ``" "``, ``"World"`` and
        resolves to ``Message(text="Hello World")``.
    """
    return join_sequence(
        MessageSequence.turn_into_sequence_promise(messages),
        delimiter=delimiter,
        strip_leading_newlines=strip_leading_newlines,
        reference_original_messages=reference_original_messages,
        start_asap=start_asap,
        message_class=message_class,
        **message_metadata,
    )


def split_messages(
    messages: MessageType,
    delimiter: str = "\n\n",
    code_block_delimiter: str | None = "```",
    start_asap: bool | Sentinel = DEFAULT,
    **message_metadata: Any,
) -> MessageSequencePromise:
    """Split the text of messages into separate messages, streaming.

    The inputs are joined with ``delimiter`` into one token stream that is cut at every ``delimiter`` outside
    code blocks. A code block (from an opening ``code_block_delimiter`` through its closing one, fences
    included) is never cut and is always a message of its own; an unclosed block runs to the end. Leading and
    trailing newlines are stripped from each piece and blank pieces are dropped. Each output message appears as
    soon as its first character does, and its tokens stream on.

    Args:
        messages: any `MessageType` structure.
        delimiter: where to cut.
        code_block_delimiter: the code fence, or None to ignore code blocks.
        start_asap: see `MessageSequencePromise`.
        **message_metadata: preliminary metadata of every output message.

    Returns:
        A `MessageSequencePromise` of the pieces. An input error is raised at the current position.

    Raises:
        ValueError: an empty ``delimiter``.
    """
    splitter = TextSplitter(delimiter, code_block_delimiter)
    joined = join_messages(messages, delimiter=delimiter, start_asap=False, reference_original_messages=False)

    async def event_batches() -> AsyncIterator[list[SplitEvent]]:
        async for token in joined:
            yield splitter.feed(token)
        yield splitter.close()

    async def asplit(message_appender: StreamAppender[MessagePromise]) -> None:
        # The splitter runs in a task of its own, so reading one message's tokens never waits for the sequence
        # to be read further (and the other way round), whatever `start_asap` says.
        current: StreamAppender[str] | None = None  # one appender per message, captured by its promise (W19)
        with message_appender:
            try:
                async for events in event_batches():
                    for event in events:
                        if event.kind is EventKind.TEXT:
                            current.append(event.text)  # type: ignore[union-attr]
                        elif event.kind is EventKind.START:
                            current = StreamAppender[str](capture_errors=True).open()
                            message_appender.append(_appender_message_promise(current, start_asap, message_metadata))
                        else:
                            current.close()  # type: ignore[union-attr]
                            current = None
            except BaseException as error:
                if current is not None:  # the message in progress gets the error too, so nobody waits for it
                    current.__exit__(type(error), error, error.__traceback__)
                raise
            finally:
                if current is not None:
                    current.close()

    def start_splitting(_: Any) -> StreamAppender[MessagePromise]:
        message_appender = StreamAppender[MessagePromise](capture_errors=True).open()
        PromisingContext.get_current().start_soon(asplit(message_appender))
        return message_appender

    return MessageSequence(start_asap=start_asap, incoming_streamer=start_splitting).sequence_promise


def _appender_message_promise(
    appender: StreamAppender[str], start_asap: bool | Sentinel, message_metadata: dict[str, Any]
) -> MessagePromise:
    return Message.promise(start_asap=start_asap, message_token_streamer=lambda _: appender, **message_metadata)


def check_chain_steps(agents: Iterable[Any], chain_name: str, allow_callables: bool = False) -> list[Any]:
    """Return the steps of a chain as a list, checked up front so a bad step fails before anything is inquired.

    Raises:
        ValueError: a step is not a `MiniAgent`, `AWAIT`, `CLEAR` or None (or a callable, if allowed).
    """
    from miniagents.miniagents import MiniAgent

    steps = list(agents)
    for step in steps:
        if not (
            step is None
            or step is AWAIT
            or step is CLEAR
            or isinstance(step, MiniAgent)
            or (allow_callables and callable(step))
        ):
            kinds = (
                "MiniAgents, AWAIT, CLEAR, None and callables"
                if allow_callables
                else "MiniAgents, AWAIT, CLEAR and None"
            )
            raise ValueError(f"{chain_name} accepts {kinds} as steps, got {step!r}")
    return steps


async def achain_loop(
    agents: Iterable[Any],
    initial_input: MessageType | None = None,
) -> None:
    """Chain agents in a loop forever, feeding each round's output into the next (compatibility API).

    Steps are `MiniAgent`s (inquired with the current messages), plain callables ``messages -> MessageType``,
    `AWAIT` (fully resolve everything so far), `CLEAR` (drop the current messages) and None (skipped).

    Raises:
        ValueError: there is no `AWAIT` among the steps (checked before anything runs), or an unknown step.
        BaseException: whatever a step raises ends the loop.
    """
    steps = check_chain_steps(agents, "achain_loop", allow_callables=True)
    if not any(step is AWAIT for step in steps):
        raise ValueError("achain_loop needs at least one AWAIT among the agents, or it would never yield")
    messages: Any = initial_input
    while True:
        messages = await achain_agents(steps, messages)


async def achain_agents(steps: Iterable[Any], messages: Any) -> Any:
    """Run one pass of an agent chain and return its resulting messages (see `achain_loop` for the steps).

    The steps are expected to be checked already (`check_chain_steps`).
    """
    from miniagents.miniagents import MiniAgent

    for step in steps:
        if step is None:
            continue
        if step is AWAIT:
            if isinstance(messages, MessageSequencePromise):
                messages = await messages
        elif step is CLEAR:
            messages = None
        elif isinstance(step, MiniAgent):
            messages = step.inquire(messages)
        else:
            messages = step(messages)  # a callable: `check_chain_steps` let nothing else through
    return messages


async def adialog_loop(user_agent: Any, assistant_agent: Any) -> None:
    """``achain_loop([user_agent, AWAIT, assistant_agent])`` (compatibility API)."""
    await achain_loop([user_agent, AWAIT, assistant_agent])
