"""Sentinel objects: unique markers for "no value", "use the default" and steps in agent chains.

A sentinel refuses to be tested for truth (``bool(NO_VALUE)`` raises ``RuntimeError``), so it can never be
mistaken for ``None`` or ``False`` by accident. Compare sentinels with ``is``.
"""

from __future__ import annotations

from typing import NoReturn

__all__ = ["AWAIT", "CLEAR", "DEFAULT", "END_OF_QUEUE", "FAILED", "NO_VALUE", "Sentinel"]


class Sentinel:
    """A unique marker object. Compare with ``is``; truth testing raises ``RuntimeError``."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __bool__(self) -> NoReturn:
        raise RuntimeError(f"the sentinel {self._name} has no truth value: compare it with `is` instead")

    def __repr__(self) -> str:
        return self._name


NO_VALUE = Sentinel("NO_VALUE")
"""Nothing given or not computed yet, where ``None`` is a real value."""
DEFAULT = Sentinel("DEFAULT")
"""Use the active context's default (accepted by ``start_asap`` and ``capture_errors``)."""
FAILED = Sentinel("FAILED")
"""Internal: a streamer that could not even be instantiated."""
END_OF_QUEUE = Sentinel("END_OF_QUEUE")
"""Internal: pushed into a ``StreamAppender``'s queue when it closes."""
AWAIT = Sentinel("AWAIT")
"""Agent chains and loops: fully resolve everything so far before going on."""
CLEAR = Sentinel("CLEAR")
"""Agent chains and loops: drop the current messages, so the next agent gets no input."""
