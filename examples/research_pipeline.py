"""A research pipeline: researcher -> writer -> critic, streaming every stage, on the local model (no key).

- The researcher must look the topic up with a tool (`lookup`, a plain function) before it answers.
- The writer turns the researcher's notes into a short paragraph (the notes arrive as its user turn).
- The critic judges the paragraph with a typed verdict (`Verdict`, a pydantic model): its JSON streams, the
  partial verdicts are shown as they validate, and the final message carries the validated `Verdict`.

All three run on SmolLM2-135M-Instruct through `llama_cpp_agent` (``pip install "miniagents[local]"``; the model
file is fetched into the user's cache on first use). The stages start at once and stream into each other: the
writer writes while the researcher's answer arrives. Swap `llama_cpp_agent` for `openai_agent.fork(model=...)` or
`anthropic_agent.fork(model=...)` to run the same pipeline on a hosted model.

Run: ``python examples/research_pipeline.py "the Eiffel Tower"``
"""

import sys
from typing import Literal

from pydantic import BaseModel, Field

from miniagents import MessageSequencePromise, MiniAgents
from miniagents.ext.llm import UserMessage
from miniagents.ext.llm.llama_cpp import llama_cpp_agent
from miniagents.ext.llm.output import apartial_outputs

ENCYCLOPEDIA = {
    "eiffel tower": "The Eiffel Tower is a wrought-iron tower in Paris, finished in 1889 for the World's Fair. "
    "It is 330 metres tall and was the tallest man-made structure in the world until 1930.",
    "honey bee": "Honey bees live in colonies of up to 60,000 bees. They make honey from nectar and "
    "communicate the way to flowers with a waggle dance.",
}


def lookup(topic: str) -> str:
    """Look a topic up in the encyclopedia.

    Args:
        topic: the topic, in a few words.
    """
    words = set(topic.lower().split())
    for key, text in ENCYCLOPEDIA.items():
        if words & set(key.split()):
            return text
    return f"Nothing is known about {topic!r}."


class Verdict(BaseModel):
    """The critic's judgement of a paragraph."""

    verdict: Literal["accept", "revise"]
    score: int = Field(ge=1, le=10)
    reason: str = Field(max_length=120)  # the grammar keeps a small model from rambling


local_llm = llama_cpp_agent.fork(temperature=0.0, max_tokens=160)
researcher = local_llm.fork(
    alias="RESEARCHER",
    system="You are a researcher. Look the topic up, then list the key facts as short notes.",
    tools=[lookup],
    tool_choice="required",  # the first turn must be a tool call ...
    max_tool_rounds=1,  # ... and the next one the answer (a 135M model would look things up forever)
    parallel_tool_calls=False,
)
writer = local_llm.fork(alias="WRITER", system="Write one short paragraph for a general reader from these notes.")
critic = local_llm.fork(
    alias="CRITIC",
    system="You are a strict editor. Judge the paragraph: accept or revise, a score from 1 to 10, and a reason.",
    output_type=Verdict,
)


async def show(stage: str, replies: MessageSequencePromise) -> None:
    """Print every message of a stage as it streams: tool calls, tool results and answers."""
    async for message_promise in replies:
        metadata = message_promise.preliminary_metadata
        if getattr(metadata, "role", None) == "tool":  # a ToolResultMessage
            print(f"[{stage}] {metadata.tool_name} returned: {await message_promise}")
        elif getattr(metadata, "tool_call_id", None):  # a ToolCallMessage: its tokens are the argument JSON
            print(f"\n[{stage}] calls {metadata.tool_name}(", end="", flush=True)
            async for token in message_promise:
                print(token, end="", flush=True)
            print(")")
        else:
            print(f"\n[{stage}] ", end="", flush=True)
            async for token in message_promise:
                print(token, end="", flush=True)
            print()


async def main(topic: str) -> None:
    question = UserMessage(f"Research this topic: {topic}")
    notes = researcher.inquire(question)
    draft = writer.inquire(notes)  # the researcher's answer becomes the writer's user turn
    verdict = critic.inquire(draft)

    await show("researcher", notes)
    await show("writer", draft)

    print()
    async for message_promise in verdict:
        async for partial in apartial_outputs(message_promise):
            print(f"\r[critic] {partial!r}", end="", flush=True)
        final: Verdict = (await message_promise).output  # type: ignore[attr-defined]
        print(f"\n\nVerdict: {final.verdict} ({final.score}/10): {final.reason}")


if __name__ == "__main__":
    MiniAgents().run(main(" ".join(sys.argv[1:]) or "the Eiffel Tower"))
