"""The exceptions of libmode, all rooted at ``ModeError``.

Each also derives from the builtin a caller would catch without knowing libmode
(``mode.TimeoutError`` is a ``TimeoutError``, ``mode.ConfigError`` a ``ValueError``, ...).
"""

from __future__ import annotations

import builtins
from typing import Any, Optional

__all__ = [
    "AuthError",
    "ClosedError",
    "ConfigError",
    "ConnectionError",
    "InvalidArgumentError",
    "ModeError",
    "ProtocolError",
    "QueueFullError",
    "RestError",
    "TimeoutError",
    "UnsupportedError",
]


class ModeError(Exception):
    """Every error raised by libmode."""


class ConfigError(ModeError, ValueError):
    """The device's settings cannot work (empty key, bad URL, unreadable TLS file, ...)."""


class InvalidArgumentError(ModeError, ValueError):
    """The protocol cannot carry what was asked (empty key or event type, bad label, too large)."""


class ConnectionError(ModeError, builtins.ConnectionError):
    """The cloud could not be reached, or a request failed before an answer."""


class RestError(ModeError):
    """The cloud answered a REST request with an error status."""

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        reason: Optional[str] = None,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.data = data


class AuthError(RestError):
    """The cloud refused the device id or API key (MQTT CONNACK, HTTP 401/403)."""


class TimeoutError(ModeError, builtins.TimeoutError):
    """No answer in time, or ``close`` left messages undelivered."""


class ProtocolError(ModeError):
    """The cloud sent something that does not decode."""


class QueueFullError(ModeError):
    """The outgoing queue is full and the policy does not wait (retry or raise queue_size)."""


class ClosedError(ModeError):
    """The device is closed; nothing more is sent."""


class UnsupportedError(ModeError, NotImplementedError):
    """Not available on this transport (bulk data has no REST form: use MQTT)."""
