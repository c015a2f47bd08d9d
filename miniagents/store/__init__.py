"""Durable message stores: every message and agent call of a run, in SQLite (embedded) or PostgreSQL.

``MiniAgents(store=open_store("runs.db"))`` (or a ``postgresql://`` URL, or ``StoreRecorder(your_store)`` for a
`MessageStore` of your own) records every agent call with its input and reply messages; `aload_message` and
`aload_call_tree` read them back as their own classes.

- `MessageStore`: the protocol a backend implements (write a batch of rows, read rows, close).
- `SQLiteMessageStore` (``pip install "miniagents[sqlite]"``), `PostgresMessageStore`
  (``pip install "miniagents[postgres]"``), `open_store` (a file path or a ``postgresql://`` URL).
- `StoreRecorder`: the observer that turns calls and messages into rows, written in batches by one task.
- `MessageRegistry`, `StoredCall`, `aload_message`, `aload_messages`, `aload_call_tree`, `aload_history`: reading.
- `store_history_agent`: a chat history in a store, as an agent; `StoreChatLog`: the one of
  ``miniagents chat --history chat.db``.
"""

from miniagents.store._base import HistoryInUseError, RecordingStore
from miniagents.store._chat_log import StoreChatLog
from miniagents.store._history import store_history_agent
from miniagents.store._loading import (
    MessageRegistry,
    StoredCall,
    aload_call_tree,
    aload_history,
    aload_message,
    aload_messages,
)
from miniagents.store._open import open_store
from miniagents.store._postgres import PostgresMessageStore
from miniagents.store._protocol import MessageStore
from miniagents.store._recorder import PartialMessage, StoreRecorder
from miniagents.store._rows import SCHEMA_VERSION, CallRow, MessageRow, PartialRow, SlotRow, StoreBatch
from miniagents.store._sqlite import SQLiteMessageStore

__all__ = [
    "CallRow",
    "HistoryInUseError",
    "MessageRegistry",
    "MessageRow",
    "MessageStore",
    "PartialMessage",
    "PartialRow",
    "PostgresMessageStore",
    "RecordingStore",
    "SCHEMA_VERSION",
    "SQLiteMessageStore",
    "SlotRow",
    "StoreBatch",
    "StoreChatLog",
    "StoreRecorder",
    "StoredCall",
    "aload_call_tree",
    "aload_history",
    "aload_message",
    "aload_messages",
    "open_store",
    "store_history_agent",
]
