"""``Device``, a MODE device whose calls block (threads), and what it shares with
``AsyncDevice`` (``_async.py``): ``_DeviceBase`` (options, handlers, the state the notifications
keep, routing them to handlers) and the read side of the DDP mirror (``_KvMirror``).

Protocol, queueing and reconnection are mode-core's; this module only routes notifications to
handlers, waits, and gives the Pythonic shapes (a ``Mapping`` view of the DDP mirror,
decorators, iterators, context managers). Every wait wakes on the notification or the close
that settles it, never on a clock (but for its timeout).
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from . import _errors
from ._mode import BulkResponse, Client, Command, KvChange, Stats
from ._options import DeviceOptions, QoS, Transport
from ._runtime import Runtime, _live, default_runtime

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Device", "KvView"]

logger = logging.getLogger("mode")

F = TypeVar("F", bound=Callable[..., Any])

#: How many commands ``commands()`` keeps for a reader that is not reading (oldest go first).
COMMAND_BUFFER = 1024


class _KvMirror(Mapping[str, Any]):
    """The device's DDP mirror as a read-only mapping: the cloud's values as last synced. It
    changes when the cloud confirms a change (see ``on_kv_change``)."""

    def __init__(self, device: _DeviceBase) -> None:
        self._device = device

    def _snapshot(self) -> dict[str, Any]:
        if not self._device._started:
            return {}
        return self._device._native.kv_snapshot()

    def __getitem__(self, key: str) -> Any:
        if not self._device._started:
            raise KeyError(key)
        return self._device._native.kv_get(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not self._device._started:
            return False
        try:
            self._device._native.kv_get(key)
        except KeyError:
            return False
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._snapshot()!r})"

    @property
    def rev(self) -> Optional[int]:
        """The store revision the mirror holds; None before the first reload."""
        return self._device._native.kv_rev() if self._device._started else None

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole mirror."""
        return self._snapshot()


class KvView(_KvMirror):
    """``Device.kv``: the DDP mirror (a read-only mapping), plus ``set`` and ``delete``, which
    ask the cloud to change the store."""

    def set(self, key: str, value: Any) -> None:
        """Sets ``key`` to ``value`` (any JSON) in the cloud store (QoS 1, queued)."""
        self._device._native.kv_set(key, value)

    def delete(self, key: str) -> None:
        """Deletes ``key`` from the cloud store (QoS 1, queued)."""
        self._device._native.kv_delete(key)


def _dispatcher(ref: "weakref.ref[_DeviceBase]") -> Callable[[str, Any], None]:
    # A weak reference: the native dispatcher must not keep a forgotten device alive.
    def dispatch(kind: str, payload: Any) -> None:
        device = ref()
        if device is not None:
            device._on_notification(kind, payload)

    return dispatch


def _log_handler_error(fn: Callable[..., Any], device_id: int) -> None:
    logger.exception(
        "device %s: handler %s raised; the device keeps running",
        device_id,
        getattr(fn, "__qualname__", repr(fn)),
    )


class _DeviceBase:
    """What ``Device`` and ``AsyncDevice`` share. A subclass makes its ``kv`` (``_setup``) and
    says where handlers run (``_on_notification``, ``_call``) and how its waits are woken
    (``_wake``)."""

    def __init__(
        self,
        device_id: int,
        api_key: str,
        *,
        runtime: Optional[Runtime] = None,
        **options: Unpack[DeviceOptions],
    ) -> None:
        self.device_id = device_id
        self.runtime = runtime if runtime is not None else default_runtime()
        self._native = Client(device_id, api_key, runtime=self.runtime._native, **options)
        #: How the device talks to the cloud: "mqtt", "mqtt-websocket" or "http".
        self.transport: Transport = self._native.transport
        self._started = False
        self._closed = False
        # What the notifications said, read by the waits (they wake at each one).
        self._up = False
        self._auth_failure: Optional[str] = None
        self._last_failure: Optional[str] = None
        self._commands: "collections.deque[Command]" = collections.deque(maxlen=COMMAND_BUFFER)
        self._command_handlers: list[Callable[[Command], Any]] = []
        self._kv_handlers: list[Callable[[KvChange], Any]] = []
        self._connection_handlers: list[Callable[[bool, Optional[str]], Any]] = []
        self._setup()
        self.runtime._adopt(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "not connected"
        return f"<{type(self).__name__} {self.device_id} {self.transport} {state}>"

    # -- handlers ---------------------------------------------------------------------------

    def on_command(self, fn: F) -> F:
        """Calls ``fn(command)`` for each command (usable as a decorator)."""
        self._command_handlers.append(fn)
        return fn

    def on_kv_change(self, fn: F) -> F:
        """Calls ``fn(change)`` for each visible change of the DDP mirror (a reload's diff,
        then each set and delete; usable as a decorator)."""
        self._kv_handlers.append(fn)
        return fn

    def on_connection(self, fn: F) -> F:
        """Calls ``fn(connected, reason)`` when the connection comes up (True, None) or goes
        down (False, why); usable as a decorator."""
        self._connection_handlers.append(fn)
        return fn

    # -- reading ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._native.connected

    @property
    def closed(self) -> bool:
        """True once the device was closed (by ``close``, its runtime's ``close``, or a failed
        ``connect``)."""
        return self._closed

    def stats(self) -> Stats:
        """The device's counters."""
        return self._native.stats()

    # -- connecting -------------------------------------------------------------------------

    def _start(self) -> None:
        if self._closed:
            raise _errors.ClosedError("the device is closed: create a new one")
        if not self._started:
            self._native.start(_dispatcher(weakref.ref(self)))
            self._started = True
            _live.add(self)

    def _synced(self) -> bool:
        """Up, and the DDP mirror holds the first reload (which proves the subscriptions)."""
        return self._up and self._native.kv_rev() is not None

    def _connect_settled(self) -> bool:
        """True once ``connect`` knows its outcome: synced, the key refused, or closed."""
        return self._synced() or self._auth_failure is not None or self._closed

    def _connect_failure(self, timeout: float) -> Optional[Exception]:
        """Why ``connect`` fails, once its wait ended; None when the device is synced."""
        if self._synced():
            return None
        if self._auth_failure is not None:
            return _errors.AuthError(f"device {self.device_id}: {self._auth_failure}")
        if self._closed:
            return _errors.ClosedError(f"device {self.device_id} was closed while connecting")
        return _errors.TimeoutError(
            f"device {self.device_id} did not connect within {timeout} s "
            f"(last error: {self._last_failure or 'no answer'}); check host, port, tls and the key"
        )

    def _has_command_or_closed(self) -> bool:
        return bool(self._commands) or self._closed

    # -- what a subclass defines -----------------------------------------------------------

    def _setup(self) -> None:
        """Makes the subclass's own state (``kv`` and what its waits wait on)."""
        raise NotImplementedError

    def _on_notification(self, kind: str, payload: Any) -> None:
        """Called on the runtime's dispatcher thread for each notification."""
        raise NotImplementedError

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Runs one handler."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Wakes the waits (from any thread) to check their condition again."""
        raise NotImplementedError

    # -- notifications ----------------------------------------------------------------------

    def _handle(self, kind: str, payload: Any) -> None:
        """One notification, where the handlers run: the state first, then the waits woken,
        then the handlers."""
        self._note(kind, payload)
        self._wake()
        self._route(kind, payload)

    def _note(self, kind: str, payload: Any) -> None:
        """Keeps what the waits need to know of a notification."""
        if kind == "connected":
            self._up = True
            self._auth_failure = None
        elif kind == "disconnected":
            why, reason, _retry = payload
            self._up = False
            self._last_failure = reason
            if why == "auth":
                self._auth_failure = reason
        elif kind == "command":
            self._commands.append(payload)

    def _route(self, kind: str, payload: Any) -> None:
        """Logs one notification and hands it to the handlers."""
        if kind == "connected":
            logger.info("device %s connected", self.device_id)
            for on_connection in list(self._connection_handlers):
                self._call(on_connection, True, None)
        elif kind == "disconnected":
            why, reason, retry = payload
            if why != "closed":
                when = f"; next attempt in {retry:.1f} s" if retry is not None else ""
                logger.warning("device %s disconnected: %s%s", self.device_id, reason, when)
            for on_connection in list(self._connection_handlers):
                self._call(on_connection, False, reason)
        elif kind == "command":
            for on_command in list(self._command_handlers):
                self._call(on_command, payload)
        elif kind == "kv":
            _rev, _reload, changes = payload
            for change in changes:
                for on_kv_change in list(self._kv_handlers):
                    self._call(on_kv_change, change)
        elif kind == "bulk_response":
            logger.debug("device %s: unexpected bulk response %r", self.device_id, payload)
        elif kind == "warning":
            logger.warning("device %s: %s", self.device_id, payload)

    # -- closing ----------------------------------------------------------------------------

    def _closing(self) -> bool:
        """Marks the device closed; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        return True

    def _closed_now(self, handover: float = 10.0) -> None:
        """The end of every close: stop the notifications, wake the waits."""
        self._native.shutdown(handover)
        _live.discard(self)
        self._wake()

    def _shutdown_now(self, timeout: float, handover: float = 10.0) -> None:
        """Closes from any thread without an event loop (used at interpreter exit)."""
        if not self._closing():
            return
        try:
            self._native.close(timeout)
        except _errors.ModeError:
            pass
        finally:
            self._closed_now(handover)


class Device(_DeviceBase):
    """A MODE device whose handlers run on a library thread; every call may block (with the
    GIL released) and may be made from any thread, handlers included.

    >>> with mode.Device(1001, "v1.key", host="127.0.0.1", port=1883, plain=True) as device:
    ...     device.send_event("boot", {"version": 1})

    Its waits (``connect``, ``commands``) sleep on a condition variable that each notification
    and the close notify, with their whole timeout: on POSIX such a wait in the main thread is
    interrupted by Ctrl-C (a lock wait is interruptible by signals), so no periodic wake-up is
    needed for that either.
    """

    kv: KvView
    _state: threading.Condition

    def _setup(self) -> None:
        self._state = threading.Condition()
        self.kv = KvView(self)

    def __enter__(self) -> "Device":
        if not self._started:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self, timeout: Optional[float] = 10.0) -> "Device":
        """Starts the connection and waits up to ``timeout`` s until it is up and the DDP
        mirror holds the cloud's first reload (None: do not wait).
        Raises ``AuthError`` if the cloud refuses the key, ``TimeoutError`` if it is not up in
        time; the device is then closed. Once connected it reconnects by itself."""
        self._start()
        if timeout is None:
            return self
        self._wait_for(self._connect_settled, timeout)
        failure = self._connect_failure(timeout)
        if failure is not None:
            self._shutdown_now(timeout=0.0)
            raise failure
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is queued (up to ``timeout`` s) and disconnects; handlers still get
        every notification that arrived before the disconnect. Raises ``TimeoutError`` if
        messages were left undelivered. Idempotent."""
        if not self._closing():
            return
        try:
            self._native.close(timeout)
        finally:
            self._closed_now()

    def _wait_for(self, predicate: Callable[[], bool], timeout: Optional[float]) -> bool:
        # Not on the dispatcher thread: the notification that settles it could never come.
        with self._state:
            return self._state.wait_for(predicate, timeout)

    def _on_notification(self, kind: str, payload: Any) -> None:
        self._handle(kind, payload)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a handler's bug must not stop the device
            _log_handler_error(fn, self.device_id)

    def _wake(self) -> None:
        with self._state:
            self._state.notify_all()

    def commands(self, timeout: Optional[float] = None) -> Iterator[Command]:
        """Yields commands as they arrive (also those that came since the last read, up to
        1024); ends after ``timeout`` s without one (None: never) or when the device closes."""
        while self._wait_for(self._has_command_or_closed, timeout):
            try:
                command = self._commands.popleft()
            except IndexError:  # closed, or another reader took it
                if self._closed:
                    return
                continue
            yield command

    def send_event(self, event_type: str, data: Optional[Mapping[str, Any]] = None, qos: QoS = 1) -> None:
        """Queues an event (``data`` a dict of JSON values) for the device's home. Returns at
        once unless the queue is full under the "block" policy (then it waits for room)."""
        self._native.send_event(event_type, data, qos)

    def send_bulk_data(self, label: str, data: bytes, qos: QoS = 0) -> None:
        """Queues raw bytes for the smart module of ``label`` (MQTT transports only)."""
        self._native.send_bulk_data(label, data, qos)

    def bulk_request(self, label: str, payload: Any = None, timeout: float = 10.0) -> BulkResponse:
        """Sends a request to the smart module of ``label`` and waits up to ``timeout`` s for
        its response. Raises ``TimeoutError`` when none comes."""
        response: BulkResponse = self._native.bulk_request(label, payload, timeout)
        return response

    def info(self) -> dict[str, Any]:
        """What the cloud knows of this device (REST ``GET /devices/{id}``)."""
        info: dict[str, Any] = self._native.info()
        return info
