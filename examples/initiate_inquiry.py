from miniagents import miniagent, InteractionContext, MiniAgents


@miniagent
async def echo_agent(ctx: InteractionContext):
    async for msg_promise in ctx.message_promises:
        ctx.reply(f"You said: {await msg_promise}")


async def main() -> None:
    agent_call = echo_agent.initiate_inquiry()
    agent_call.send_message("Hello").send_message("World")

    async for msg_promise in agent_call.reply_sequence():
        print(await msg_promise)


if __name__ == "__main__":
    MiniAgents().run(main())
