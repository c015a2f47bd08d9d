"""Seed 000's "Pre-packaged agents" example, on the embedded local model instead of Anthropic (no key needed).

Run it in a terminal; type "exit" (or press Ctrl+C or Ctrl+D) to quit. The chat is written to CHAT.md in the
current directory and read back on every turn, earlier runs included: delete the file to start afresh.
"""

from miniagents import MiniAgents
from miniagents.ext import dialog_loop, markdown_history_agent
from miniagents.ext.llm import SystemMessage
from miniagents.ext.llm.llama_cpp import llama_cpp_agent


async def main() -> None:
    await dialog_loop.fork(
        assistant_agent=llama_cpp_agent.fork(
            # The embedded SmolLM2-135M-Instruct by default; pass `model_path=` for another GGUF chat model.
            max_tokens=256,
            n_ctx=4096,
        ),
        # Write chat history to a markdown file (by default it is `CHAT.md` in
        # the current working directory - "fork" markdown_history_agent to
        # customize).
        history_agent=markdown_history_agent,
    ).inquire(
        SystemMessage(
            "Your job is to improve the styling and grammar of the sentences "
            "that the user throws at you. Leave the sentences unchanged if "
            "they seem fine."
        )
    )


if __name__ == "__main__":
    MiniAgents().run(main())
