"""The errors of the LLM agents.

Every failure of a provider (an HTTP error status, a refused connection, a timeout, a missing API key, a broken
answer, an exception inside the local model) reaches the consumer **at token level**: while iterating or awaiting
the one `MessagePromise` the agent replied with. It is raised as one of the errors below, chained to the SDK's
own exception (``raise LLMError(...) from sdk_error``, so ``error.__cause__`` is the original).

```
LLMError(MiniAgentsError)           provider, model (and status_code) are attributes and in the message
├── LLMAPIStatusError               the provider answered with an HTTP error status (401, 429, 500 …)
├── LLMConnectionError              the provider could not be reached, or did not answer in time
└── LLMResponseError                the answer could not be used (unexpected shape, no choices …)
```

Misuse (e.g. ``n=2`` for `openai_agent`, a missing SDK) is not an `LLMError`: it raises `ValueError` or
`ImportError` from the agent function, at the level of the reply sequence.
"""

from __future__ import annotations

from miniagents.errors import MiniAgentsError

__all__ = ["LLMAPIStatusError", "LLMConnectionError", "LLMError", "LLMResponseError"]


class LLMError(MiniAgentsError):
    """An LLM provider failed to produce a reply.

    Attributes:
        provider: ``"openai"``, ``"anthropic"``, ``"llama_cpp"`` …
        model: the model that was asked (as passed to the agent).
        status_code: the HTTP status code, or None when there was no HTTP answer.
    """

    def __init__(self, message: str, *, provider: str, model: str | None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status_code = status_code


class LLMAPIStatusError(LLMError):
    """The provider answered with an HTTP error status (``status_code`` is set)."""


class LLMConnectionError(LLMError):
    """The provider could not be reached (connection refused, DNS failure …) or timed out."""


class LLMResponseError(LLMError):
    """The provider's answer could not be turned into a message."""
