"""libmode for Python: a device SDK for the MODE IoT cloud.

- ``Device`` / ``AsyncDevice``: a managed connection (MQTT, MQTT over WebSocket, or HTTP):
  events, commands, the DDP key-value mirror (``device.kv``), bulk data, reconnection.
- ``Session`` / ``Mirror``: the protocol without IO, for programs that own their MQTT client.

Logs go to the ``mode`` logger of the standard ``logging`` module.
"""

from __future__ import annotations

import logging

from ._device import AsyncDevice, Device, KvView, Stats
from ._errors import (
    AuthError,
    ClosedError,
    ConfigError,
    ConnectionError,
    InvalidArgumentError,
    ModeError,
    ProtocolError,
    QueueFullError,
    RestError,
    TimeoutError,
    UnsupportedError,
)
from ._mode import BulkResponse, Command, KvChange, Mirror, Session, __version__

__all__ = [
    "AsyncDevice",
    "AuthError",
    "BulkResponse",
    "ClosedError",
    "Command",
    "ConfigError",
    "ConnectionError",
    "Device",
    "InvalidArgumentError",
    "KvChange",
    "KvView",
    "Mirror",
    "ModeError",
    "ProtocolError",
    "QueueFullError",
    "RestError",
    "Session",
    "Stats",
    "TimeoutError",
    "UnsupportedError",
    "__version__",
]

logging.getLogger("mode").addHandler(logging.NullHandler())
