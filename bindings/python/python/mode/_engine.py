"""The shapes ``mode.Engine`` hands out: tuples whose first item names the kind, so a ``match``
statement or an ``if item[0] == "publish"`` narrows them for mypy as for the reader."""

from __future__ import annotations

from typing import Literal, Optional, Tuple, Union

from ._mode import BulkResponse, Command, KvChange

# Work for the transport (Engine.poll_transmit).
Transmit = Union[
    Tuple[Literal["connect"]],
    Tuple[Literal["subscribe"], list[str]],
    Tuple[Literal["unsubscribe"], list[str]],
    # id, topic, payload, qos
    Tuple[Literal["publish"], int, str, bytes, int],
    Tuple[Literal["disconnect"]],
    Tuple[Literal["abort"]],
]

# Something for the application (Engine.poll_event).
EngineEvent = Union[
    Tuple[Literal["connected"]],
    # kind, text, retry_in_ms (None once closed)
    Tuple[Literal["disconnected"], Literal["auth", "tls", "network", "keepalive", "closed"], str, Optional[int]],
    Tuple[Literal["command"], Command],
    # rev, reload, changes
    Tuple[Literal["kv"], int, bool, list[KvChange]],
    # label, response, request (True: it answers a bulk_request still waited for)
    Tuple[Literal["bulk_response"], str, BulkResponse, bool],
    Tuple[Literal["bulk_timeout"], str],
    Tuple[Literal["delivered"], int],
    # id, topic, reason, text
    Tuple[Literal["dropped"], int, str, Literal["queue_full", "refused", "closed"], str],
    # topic, what did not decode
    Tuple[Literal["error"], str, str],
    # unsent
    Tuple[Literal["closed"], int],
]

# A change to persist for a durable outbox (Engine.poll_journal with journal=True).
JournalChange = Union[
    Tuple[Literal["added"], int, str, bytes, int],
    Tuple[Literal["done"], int],
]
