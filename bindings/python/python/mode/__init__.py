"""libmode for Python: a device SDK for the MODE IoT cloud.

- ``Device`` / ``AsyncDevice``: a managed connection (MQTT, MQTT over WebSocket, or HTTP):
  events, commands, the DDP key-value mirror (``device.kv``), bulk data, reconnection; their
  keyword options are ``DeviceOptions``.
- ``Runtime``: IO threads and one callback thread shared by many devices (``runtime=``);
  devices without one share ``default_runtime()``.
- ``Engine``: the protocol engine without IO (time passed in, work polled out), for programs that
  own their MQTT client; ``Mirror``: the DDP state machine alone.

Logs go to the ``mode`` logger of the standard ``logging`` module.
"""

from __future__ import annotations

import logging

from ._async import AsyncDevice, AsyncKvView
from ._device import Device, KvView
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
from ._mode import BulkResponse, Command, Engine, KvChange, Mirror, Stats, __version__
from ._options import DeviceOptions, FullQueuePolicy, OutboxSync, QoS, Transport
from ._runtime import Runtime, default_runtime

__all__ = [
    "AsyncDevice",
    "AsyncKvView",
    "AuthError",
    "BulkResponse",
    "ClosedError",
    "Command",
    "ConfigError",
    "ConnectionError",
    "Device",
    "DeviceOptions",
    "Engine",
    "EngineEvent",
    "FullQueuePolicy",
    "InvalidArgumentError",
    "JournalChange",
    "KvChange",
    "KvView",
    "Mirror",
    "ModeError",
    "OutboxSync",
    "ProtocolError",
    "QoS",
    "QueueFullError",
    "RestError",
    "Runtime",
    "Stats",
    "TimeoutError",
    "Transmit",
    "Transport",
    "UnsupportedError",
    "__version__",
    "default_runtime",
]

logging.getLogger("mode").addHandler(logging.NullHandler())
