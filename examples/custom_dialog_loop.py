import signal

from miniagents import InteractionContext, MiniAgents, miniagent
from miniagents.ext import agent_loop
from miniagents.promising.sentinels import AWAIT


def read_line(prompt: str) -> str:
    # `input()`, except that Ctrl+C interrupts it at once: while a program runs under `asyncio.run`, Ctrl+C only
    # schedules the cancellation of the main task, and `input()` would go on waiting.
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return input(prompt)
    except KeyboardInterrupt:
        print()  # end the "USER: " line
        raise
    finally:
        signal.signal(signal.SIGINT, previous_handler)


@miniagent
async def user_agent(ctx: InteractionContext) -> None:
    async for msg_promise in ctx.message_promises:
        print("ASSISTANT: ", end="", flush=True)
        async for token in msg_promise:
            print(token, end="", flush=True)
        print()
    text = read_line("USER: ")  # blocks the event loop on purpose, for simplicity
    if text.strip() == "exit":
        raise KeyboardInterrupt  # ends the loop below quietly, like Ctrl+C
    ctx.reply(text)


@miniagent
async def assistant_agent(ctx: InteractionContext) -> None:
    # Turn a sequence of message promises into a single message promise (if
    # there had been multiple messages in the sequence they would have had
    # been separated by double newlines - this is how `as_single_promise()`
    # works by default).
    aggregated_message = await ctx.message_promises.as_single_promise()
    ctx.reply(f'You said "{aggregated_message}"')


async def main() -> None:
    await agent_loop.fork(agents=[user_agent, AWAIT, assistant_agent], raise_keyboard_interrupt=False).inquire()


if __name__ == "__main__":
    MiniAgents().run(main())
