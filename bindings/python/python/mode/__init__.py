"""libmode for Python: a device SDK for the MODE IoT cloud.

- ``Device`` / ``AsyncDevice``: a managed connection (MQTT, MQTT over WebSocket, or HTTP):
  events, commands, the DDP key-value mirror (``device.kv``), bulk data, reconnection.
- ``Runtime``: IO threads and one callback thread shared by many devices (``runtime=``);
  devices without one share ``default_runtime()``.
- ``Engine``: the protocol engine without IO (time passed in, work polled out), for programs that
  own their MQTT client; ``Mirror``: the DDP state machine alone.

Logs go to the ``mode`` logger of the standard ``logging`` module.
"""

from __future__ import annotations

import logging

from ._device import AsyncDevice, Device, KvView, Runtime, Stats, default_runtime
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
from ._engine import EngineEvent, JournalChange, Transmit
from ._mode import BulkResponse, Command, Engine, KvChange, Mirror, __version__

__all__ = [
    "AsyncDevice",
    "AuthError",
    "BulkResponse",
    "ClosedError",
    "Command",
    "ConfigError",
    "ConnectionError",
    "Device",
    "Engine",
    "EngineEvent",
    "InvalidArgumentError",
    "JournalChange",
    "KvChange",
    "KvView",
    "Mirror",
    "ModeError",
    "ProtocolError",
    "QueueFullError",
    "RestError",
    "Runtime",
    "Stats",
    "TimeoutError",
    "Transmit",
    "UnsupportedError",
    "__version__",
    "default_runtime",
]

logging.getLogger("mode").addHandler(logging.NullHandler())
