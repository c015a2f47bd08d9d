"""What the LLM adapters share: lazy SDK imports, default clients per event loop, metadata and errors."""

from __future__ import annotations

import asyncio
import importlib
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any, Generic, TypeVar

from miniagents.ext.llm.errors import LLMAPIStatusError, LLMConnectionError, LLMError, LLMResponseError
from miniagents.miniagents import MiniAgents

ClientT = TypeVar("ClientT")


def import_sdk(module_name: str, extra: str) -> ModuleType:
    """Import an optional SDK, or raise an `ImportError` that names the ``pip install`` command."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"the {module_name!r} package is needed for this agent but is not installed: "
            f'pip install "miniagents[{extra}]"',
            name=module_name,
        ) from error


class ClientPerLoop(Generic[ClientT]):
    """A lazily created default client for each running event loop.

    An SDK client owns an HTTP connection pool that belongs to the loop it was first used on, so a client cached
    for the whole process breaks on the second ``asyncio.run`` (W18). The clients are kept in a
    `weakref.WeakKeyDictionary` keyed by the loop: a closed and dropped loop drops its client too.
    """

    def __init__(self, factory: Callable[[], ClientT]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientT] = weakref.WeakKeyDictionary()

    def get(self) -> ClientT:
        """Return the client of the running loop, creating it on first use."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._factory()
        return client


def resolve_stream(stream: bool | None) -> bool:
    """``None`` means the active context's ``stream_llm_tokens_by_default``."""
    if stream is None:
        return MiniAgents.get_current().stream_llm_tokens_by_default
    return bool(stream)


def merge_metadata(target: dict[str, Any], source: dict[str, Any]) -> None:
    """Deep-merge one response chunk (as a dict) into ``target``, in place.

    Dicts merge recursively, a ``choices`` list merges into its single element, other lists concatenate, a
    ``None`` value is kept only for a key that is not there yet, and other values overwrite.
    """
    for key, value in source.items():
        if value is None:
            target.setdefault(key, None)
            continue
        if key == "choices" and isinstance(value, list):
            choices = target.get(key)
            if not isinstance(choices, list) or not choices:
                choices = target[key] = [{}]
            for choice in value:
                if isinstance(choice, dict):
                    merge_metadata(choices[0], choice)
        elif isinstance(value, dict):
            existing = target.get(key)
            if not isinstance(existing, dict):
                existing = target[key] = {}
            merge_metadata(existing, value)
        elif isinstance(value, list):
            existing = target.get(key)
            target[key] = [*existing, *value] if isinstance(existing, list) else list(value)
        else:
            target[key] = value


def translate_sdk_error(error: BaseException, sdk: ModuleType, provider: str, model: str | None) -> LLMError:
    """Turn an ``openai`` or ``anthropic`` SDK exception into an `LLMError` naming provider, model and status.

    Both SDKs share the shapes of their error classes (``APIStatusError``, ``APIConnectionError`` …).
    """
    if isinstance(error, sdk.APIStatusError):
        status_code = int(error.status_code)
        return LLMAPIStatusError(
            f"{provider} API error {status_code} for model {model!r}: {_sdk_message(error)}",
            provider=provider,
            model=model,
            status_code=status_code,
        )
    if isinstance(error, sdk.APIConnectionError):  # APITimeoutError is one as well
        return LLMConnectionError(
            f"{provider} API not reachable for model {model!r}: {_sdk_message(error)}{_root_cause_suffix(error)}",
            provider=provider,
            model=model,
        )
    if isinstance(error, sdk.APIResponseValidationError):
        return LLMResponseError(
            f"{provider} API returned an unexpected response for model {model!r}: {_sdk_message(error)}",
            provider=provider,
            model=model,
            status_code=int(error.status_code),
        )
    return LLMError(
        f"{provider} request failed for model {model!r}: {_sdk_message(error)}", provider=provider, model=model
    )


def _sdk_message(error: BaseException) -> str:
    return str(getattr(error, "message", None) or error) or type(error).__name__


def _root_cause_suffix(error: BaseException) -> str:
    """`` (ConnectError: [Errno 111] Connection refused)``: the innermost cause, which says what went wrong."""
    cause = error.__cause__ or error.__context__
    seen = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        deeper = cause.__cause__ or cause.__context__
        if deeper is None:
            break
        cause = deeper
    if cause is None or cause is error:
        return ""
    return f" ({type(cause).__name__}: {cause})"
