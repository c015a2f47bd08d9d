"""The three ways to use the MiniAgents context (seed 000, "The MiniAgents() context can be used in three ways")."""

import asyncio

from miniagents import InteractionContext, MiniAgents, miniagent


@miniagent
async def echo_agent(ctx: InteractionContext) -> None:
    async for msg_promise in ctx.message_promises:
        ctx.reply(f"You said: {await msg_promise}")


async def ask(label: str, text: str) -> None:
    print(f"{label}: {await echo_agent.inquire(text).as_single_promise()}")


# 1. Calling its `run()` method with your main function as a parameter
MiniAgents().run(ask("run()", "one"))


# 2. Using it as an async context manager
async def with_async_with() -> None:
    async with MiniAgents():
        await ask("async with", "two")


asyncio.run(with_async_with())


# 3. Directly calling its `activate()` (and, potentially, `afinalize()` at the end) methods
async def with_activate() -> None:
    mini_agents = MiniAgents()
    mini_agents.activate()
    try:
        await ask("activate/afinalize", "three")
    finally:
        await mini_agents.afinalize()


asyncio.run(with_activate())
