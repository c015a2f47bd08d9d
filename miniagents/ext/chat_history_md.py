"""Compatibility alias: `ChatHistoryMD` lives in `miniagents.ext.history_agents`."""

from miniagents.ext.history_agents import ChatHistoryMD

__all__ = ["ChatHistoryMD"]
