"""``Device`` (threads) and ``AsyncDevice`` (asyncio): a MODE device over the native client.

Protocol, queueing and reconnection are mode-core's; this module only routes notifications
to handlers, waits, and gives the Pythonic shapes (a ``Mapping`` view of the DDP mirror,
decorators, iterators, context managers).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from . import _errors
from ._mode import BulkResponse, Client, Command, KvChange
from ._mode import Runtime as _NativeRuntime

__all__ = ["AsyncDevice", "Device", "KvView", "Runtime", "Stats", "default_runtime"]

logger = logging.getLogger("mode")

F = TypeVar("F", bound=Callable[..., Any])

#: Devices still open, closed at interpreter exit so no library thread outlives Python.
_live: "weakref.WeakSet[_DeviceBase]" = weakref.WeakSet()

#: How many commands ``commands()`` keeps for a reader that is not reading (oldest go first).
COMMAND_BUFFER = 1024


#: Runtimes still open, closed at interpreter exit after their devices.
_runtimes: "weakref.WeakSet[Runtime]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for device in list(_live):
        try:
            # A handler that does not return holds up the exit by one second at most.
            device._shutdown_now(timeout=1.0, handover=1.0)
        except Exception:  # noqa: BLE001 - at exit, a failing close must not stop the others
            logger.exception("closing device %s at exit failed", device.device_id)
    for runtime in list(_runtimes):
        runtime._native.close()


class Runtime:
    """IO threads and one callback thread shared by many devices.

    ``mode.Device(..., runtime=rt)`` runs a device on ``rt``; without ``runtime=`` a device
    uses the module's default runtime (``default_runtime()``, 1 IO thread, made on first use),
    so a thousand devices in one process cost two library threads, not two thousand.

    Every device's handlers run on the runtime's one dispatcher thread, in order per device.
    A slow handler delays the handlers of the other devices of the runtime (not their
    connections: keepalives, acknowledgements and queued sends go on, on the IO threads, and
    notifications wait in each device's bounded queue, counted when it overflows). Give a
    device whose handlers block a runtime of its own.

    ``close()`` (or leaving a ``with`` block) closes every device still open on the runtime
    (as ``Device.close``), then stops its threads; devices made on it afterwards raise
    ``ClosedError``. A device may close at any time while the others run. A runtime that is
    only forgotten stops without waiting once its last device is gone; at interpreter exit,
    open devices and runtimes are closed.
    """

    def __init__(self, io_threads: int = 1) -> None:
        self._native = _NativeRuntime(io_threads)
        self._devices: "weakref.WeakSet[_DeviceBase]" = weakref.WeakSet()
        self._lock = threading.Lock()
        _runtimes.add(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._devices)} devices"
        return f"<Runtime io_threads={self.io_threads} {state}>"

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def io_threads(self) -> int:
        """The number of IO threads."""
        return self._native.io_threads

    @property
    def closed(self) -> bool:
        """True once ``close`` ran."""
        return self._native.closed

    @property
    def devices(self) -> int:
        """How many devices made on this runtime are still open."""
        return sum(1 for device in list(self._devices) if not device._closed)

    def close(self, timeout: float = 5.0) -> None:
        """Closes the devices still open on the runtime (each delivers what it queued, up to
        ``timeout`` s), then stops the IO and dispatcher threads. Idempotent. From a handler,
        the devices close and the threads stop once the handler returns."""
        with self._lock:
            if self._native.closed:
                return
            devices = list(self._devices)
        failures: list[BaseException] = []
        for device in devices:
            try:
                device._shutdown_now(timeout=timeout)
            except Exception as err:  # noqa: BLE001 - close the others, then report
                failures.append(err)
        with self._lock:
            self._native.close()
        _runtimes.discard(self)
        if failures:
            raise failures[0]

    def _adopt(self, device: "_DeviceBase") -> None:
        with self._lock:
            if self._native.closed:
                raise _errors.ClosedError("the runtime is closed: create a new one")
            self._devices.add(device)


_default: Optional[Runtime] = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The runtime of devices made without ``runtime=``: one IO thread and one dispatcher,
    made on first use (again after it was closed)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Runtime(io_threads=1)
        return _default


@dataclass(frozen=True)
class Stats:
    """A snapshot of a device's counters."""

    messages_queued: int
    messages_sent: int
    messages_acked: int
    messages_dropped: int
    pending: int
    reconnects: int
    connection_attempts: int
    kv_applied: int
    kv_stale: int
    kv_invalid: int
    commands_received: int
    bytes_in: int
    bytes_out: int
    notifications_dropped: int
    #: Messages the durable outbox (``outbox_dir=``) held that could not be read back at start:
    #: a torn or damaged store, also logged once as a warning (logger ``mode``) at start.
    outbox_unrecovered: int
    last_error: Optional[str]


class KvView(Mapping[str, Any]):
    """The device's DDP mirror as a read-only mapping (the cloud's values as last synced),
    plus ``set`` and ``delete``, which ask the cloud to change the store. The mirror changes
    when the cloud confirms the change (see ``on_kv_change``)."""

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
        return f"KvView({self._snapshot()!r})"

    @property
    def rev(self) -> Optional[int]:
        """The store revision the mirror holds; None before the first reload."""
        return self._device._native.kv_rev() if self._device._started else None

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole mirror."""
        return self._snapshot()

    def set(self, key: str, value: Any) -> None:
        """Sets ``key`` to ``value`` (any JSON) in the cloud store (QoS 1, queued)."""
        self._device._queue(self._device._native.kv_set, key, value)

    def delete(self, key: str) -> None:
        """Deletes ``key`` from the cloud store (QoS 1, queued)."""
        self._device._queue(self._device._native.kv_delete, key)


def _dispatcher(ref: "weakref.ref[_DeviceBase]") -> Callable[[str, Any], None]:
    # A weak reference: the native dispatcher must not keep a forgotten device alive.
    def dispatch(kind: str, payload: Any) -> None:
        device = ref()
        if device is not None:
            device._on_notification(kind, payload)

    return dispatch


class _DeviceBase:
    def __init__(
        self,
        device_id: int,
        api_key: str,
        *,
        transport: str = "mqtt",
        host: Optional[str] = None,
        port: Optional[int] = None,
        api_url: Optional[str] = None,
        ws_url: Optional[str] = None,
        tls: bool = True,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        danger_accept_invalid_certs: bool = False,
        keepalive: float = 60.0,
        connect_timeout: float = 10.0,
        request_timeout: float = 30.0,
        queue_size: int = 10_000,
        full_queue_policy: str = "block",
        max_message_size: int = 1_048_576,
        max_inflight: int = 100,
        backoff_unit: float = 1.0,
        backoff_cap: float = 60.0,
        outbox_dir: Optional[str] = None,
        outbox_max_bytes: int = 67_108_864,
        outbox_sync: str = "group",
        outbox_group_commit: float = 0.0,
        runtime: Optional[Runtime] = None,
    ) -> None:
        self.device_id = device_id
        self.runtime = runtime if runtime is not None else default_runtime()
        self._native = Client(
            device_id,
            api_key,
            transport=transport,
            host=host,
            port=port,
            api_url=api_url,
            ws_url=ws_url,
            tls=tls,
            ca_file=ca_file,
            client_cert=client_cert,
            client_key=client_key,
            danger_accept_invalid_certs=danger_accept_invalid_certs,
            keepalive=keepalive,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            queue_size=queue_size,
            full_queue_policy=full_queue_policy,
            max_message_size=max_message_size,
            max_inflight=max_inflight,
            backoff_unit=backoff_unit,
            backoff_cap=backoff_cap,
            outbox_dir=outbox_dir,
            outbox_max_bytes=outbox_max_bytes,
            outbox_sync=outbox_sync,
            outbox_group_commit=outbox_group_commit,
            runtime=self.runtime._native,
        )
        self.transport = transport
        self._started = False
        self._closed = False
        self._auth_failure: Optional[str] = None
        self._last_failure: Optional[str] = None
        self._command_handlers: list[Callable[[Command], Any]] = []
        self._kv_handlers: list[Callable[[KvChange], Any]] = []
        self._connection_handlers: list[Callable[[bool, Optional[str]], Any]] = []
        self.kv = KvView(self)
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
        return Stats(**self._native.stats())

    # -- notifications (dispatcher thread) -------------------------------------------------

    def _on_notification(self, kind: str, payload: Any) -> None:
        raise NotImplementedError

    def _route(self, kind: str, payload: Any, call: Callable[..., None]) -> None:
        """Hands one notification to the handlers through ``call(handler, *args)``."""
        if kind == "connected":
            self._auth_failure = None
            logger.info("device %s connected", self.device_id)
            for on_connection in list(self._connection_handlers):
                call(on_connection, True, None)
        elif kind == "disconnected":
            why, reason, retry = payload
            self._last_failure = reason
            if why == "auth":
                self._auth_failure = reason
            if why != "closed":
                when = f"; next attempt in {retry:.1f} s" if retry is not None else ""
                logger.warning("device %s disconnected: %s%s", self.device_id, reason, when)
            for on_connection in list(self._connection_handlers):
                call(on_connection, False, reason)
        elif kind == "command":
            self._buffer_command(payload)
            for on_command in list(self._command_handlers):
                call(on_command, payload)
        elif kind == "kv":
            _rev, _reload, changes = payload
            for change in changes:
                for on_kv_change in list(self._kv_handlers):
                    call(on_kv_change, change)
        elif kind == "bulk_response":
            logger.debug("device %s: unexpected bulk response %r", self.device_id, payload)
        elif kind == "warning":
            logger.warning("device %s: %s", self.device_id, payload)

    def _buffer_command(self, command: Command) -> None:
        raise NotImplementedError

    def _queue(self, method: Callable[..., bool], *args: Any) -> Any:
        raise NotImplementedError

    def _shutdown_now(self, timeout: float, handover: float = 10.0) -> None:
        """Closes from any thread without an event loop (used at interpreter exit)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._native.close(timeout)
        except _errors.ModeError:
            pass
        finally:
            self._native.shutdown(handover)
            _live.discard(self)
            self._wake_readers()

    def _wake_readers(self) -> None:
        raise NotImplementedError


def _log_handler_error(fn: Callable[..., Any], device_id: int) -> None:
    logger.exception(
        "device %s: handler %s raised; the device keeps running",
        device_id,
        getattr(fn, "__qualname__", repr(fn)),
    )


class Device(_DeviceBase):
    """A MODE device whose handlers run on a library thread; every call may block (with the
    GIL released) and may be made from any thread, handlers included.

    >>> with mode.Device(1001, "v1.key", host="127.0.0.1", port=1883, tls=False) as device:
    ...     device.send_event("boot", {"version": 1})
    """

    def __init__(self, device_id: int, api_key: str, **options: Any) -> None:
        super().__init__(device_id, api_key, **options)
        self._state = threading.Condition()
        self._up = False
        self._commands: "collections.deque[Command]" = collections.deque(maxlen=COMMAND_BUFFER)

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
        if self._closed:
            raise _errors.ClosedError("the device is closed: create a new one")
        if not self._started:
            self._native.start(_dispatcher(weakref.ref(self)))
            self._started = True
            _live.add(self)
        if timeout is None:
            return self
        deadline = time.monotonic() + timeout
        failure: Optional[Exception] = None
        with self._state:
            # Up and synced: the first reload proves the subscriptions are live.
            while not (self._up and self._native.kv_rev() is not None):
                if self._auth_failure is not None:
                    failure = _errors.AuthError(f"device {self.device_id}: {self._auth_failure}")
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    failure = _errors.TimeoutError(
                        f"device {self.device_id} did not connect within {timeout} s "
                        f"(last error: {self._last_failure or 'no answer'}); "
                        "check host, port, tls and the key"
                    )
                    break
                self._state.wait(min(left, 0.1))
        if failure is not None:
            # Outside the lock: closing joins the dispatcher, which may be waiting for it.
            self._shutdown_now(timeout=0.0)
            raise failure
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is queued (up to ``timeout`` s) and disconnects; handlers still get
        every notification that arrived before the disconnect. Raises ``TimeoutError`` if
        messages were left undelivered. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._native.close(timeout)
        finally:
            self._native.shutdown()
            _live.discard(self)
            self._wake_readers()

    def _on_notification(self, kind: str, payload: Any) -> None:
        if kind in ("connected", "disconnected"):
            with self._state:
                self._up = kind == "connected"
                self._state.notify_all()
        self._route(kind, payload, self._call)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a handler's bug must not stop the device
            _log_handler_error(fn, self.device_id)

    def _buffer_command(self, command: Command) -> None:
        with self._state:
            self._commands.append(command)
            self._state.notify_all()

    def _wake_readers(self) -> None:
        with self._state:
            self._state.notify_all()

    def commands(self, timeout: Optional[float] = None) -> Iterator[Command]:
        """Yields commands as they arrive (also those that came since the last read, up to
        1024); ends after ``timeout`` s without one (None: never) or when the device closes."""
        while True:
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._state:
                while not self._commands and not self._closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return
                    self._state.wait(0.1 if left is None else min(left, 0.1))
                if not self._commands:
                    return
                command = self._commands.popleft()
            yield command

    def _queue(self, method: Callable[..., bool], *args: Any) -> None:
        method(*args)

    def send_event(self, event_type: str, data: Optional[Mapping[str, Any]] = None, qos: int = 1) -> None:
        """Queues an event (``data`` a dict of JSON values) for the device's home. Returns at
        once unless the queue is full under the "block" policy (then it waits for room)."""
        self._native.send_event(event_type, data, qos)

    def send_bulk_data(self, label: str, data: bytes, qos: int = 0) -> None:
        """Queues raw bytes for the smart module of ``label`` (MQTT transports only)."""
        self._native.send_bulk_data(label, data, qos)

    def bulk_request(self, label: str, payload: Any = None, timeout: float = 10.0) -> BulkResponse:
        """Sends a request to the smart module of ``label`` and waits up to ``timeout`` s for
        its response. Raises ``TimeoutError`` when none comes."""
        return self._native.bulk_request(label, payload, timeout)

    def info(self) -> dict[str, Any]:
        """What the cloud knows of this device (REST ``GET /devices/{id}``)."""
        return self._native.info()


def _resolve(fut: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _resolver(loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[Any]") -> Callable[[bool, Any], None]:
    def done(ok: bool, value: Any) -> None:
        # Runs on an IO thread: hand the outcome to the loop.
        try:
            loop.call_soon_threadsafe(_resolve, fut, ok, value)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    return done


class AsyncDevice(_DeviceBase):
    """A MODE device for asyncio: the same features as ``Device`` as coroutines; handlers run
    on the event loop (and may be coroutine functions). Nothing here blocks the loop."""

    def __init__(self, device_id: int, api_key: str, **options: Any) -> None:
        super().__init__(device_id, api_key, **options)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._up_event: Optional[asyncio.Event] = None
        self._changed: Optional[asyncio.Event] = None
        self._commands: "collections.deque[Command]" = collections.deque(maxlen=COMMAND_BUFFER)
        self._tasks: "set[asyncio.Task[Any]]" = set()

    async def __aenter__(self) -> "AsyncDevice":
        if not self._started:
            await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self, timeout: Optional[float] = 10.0) -> "AsyncDevice":
        """As ``Device.connect``, without blocking the loop."""
        if self._closed:
            raise _errors.ClosedError("the device is closed: create a new one")
        if not self._started:
            self._loop = asyncio.get_running_loop()
            self._up_event = asyncio.Event()
            self._changed = asyncio.Event()
            self._native.start(_dispatcher(weakref.ref(self)))
            self._started = True
            _live.add(self)
        if timeout is None:
            return self
        deadline = time.monotonic() + timeout
        assert self._up_event is not None
        while not (self._up_event.is_set() and self._native.kv_rev() is not None):
            if self._auth_failure is not None:
                failure = self._auth_failure
                await self.close(timeout=0)
                raise _errors.AuthError(f"device {self.device_id}: {failure}")
            left = deadline - time.monotonic()
            if left <= 0:
                failure = self._last_failure or "no answer"
                await self.close(timeout=0)
                raise _errors.TimeoutError(
                    f"device {self.device_id} did not connect within {timeout} s "
                    f"(last error: {failure}); check host, port, tls and the key"
                )
            if self._up_event.is_set():  # up, the first reload is on its way
                await asyncio.sleep(0.01)
                continue
            try:
                await asyncio.wait_for(self._up_event.wait(), min(left, 0.1))
            except asyncio.TimeoutError:
                pass
        return self

    async def close(self, timeout: float = 5.0) -> None:
        """As ``Device.close``, without blocking the loop."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._await(self._native.close, timeout)
        finally:
            self._native.shutdown()
            _live.discard(self)
            self._wake_readers()

    async def _await(self, method: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        method(*args, on_done=_resolver(loop, fut))
        return await fut

    def _on_notification(self, kind: str, payload: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._on_loop, kind, payload)
        except RuntimeError:
            pass  # the loop is closed: nobody listens any more

    def _on_loop(self, kind: str, payload: Any) -> None:
        if self._up_event is not None:
            if kind == "connected":
                self._up_event.set()
            elif kind == "disconnected":
                self._up_event.clear()
        self._route(kind, payload, self._call)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            result = fn(*args)
        except Exception:  # noqa: BLE001 - a handler's bug must not stop the device
            _log_handler_error(fn, self.device_id)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._task_done, fn))

    def _task_done(self, fn: Callable[..., Any], task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            try:
                raise task.exception()  # type: ignore[misc]
            except Exception:  # noqa: BLE001
                _log_handler_error(fn, self.device_id)

    def _buffer_command(self, command: Command) -> None:
        self._commands.append(command)
        if self._changed is not None:
            self._changed.set()

    def _wake_readers(self) -> None:
        if self._changed is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._changed.set)
        except RuntimeError:
            pass

    async def commands(self, timeout: Optional[float] = None) -> AsyncIterator[Command]:
        """Yields commands as they arrive; ends after ``timeout`` s without one (None: never)
        or when the device closes."""
        while True:
            while not self._commands and not self._closed:
                assert self._changed is not None, "connect() first"
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except asyncio.TimeoutError:
                    return
            if not self._commands:
                return
            yield self._commands.popleft()

    def _queue(self, method: Callable[..., bool], *args: Any) -> None:
        # From ``device.kv.set``: a full "block" queue must not block the loop, so the wait
        # goes on in the background and a failure is logged.
        fut = self._start(method, *args)
        if fut is not None:
            fut.add_done_callback(self._log_failure)

    def _log_failure(self, fut: "asyncio.Future[Any]") -> None:
        if not fut.cancelled() and fut.exception() is not None:
            logger.error("device %s: a queued write failed: %s", self.device_id, fut.exception())

    def _start(self, method: Callable[..., bool], *args: Any) -> "Optional[asyncio.Future[Any]]":
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if method(*args, on_done=_resolver(loop, fut)):
            return None
        return fut

    async def _queued(self, method: Callable[..., bool], *args: Any) -> None:
        fut = self._start(method, *args)
        if fut is not None:
            await fut

    async def send_event(self, event_type: str, data: Optional[Mapping[str, Any]] = None, qos: int = 1) -> None:
        """As ``Device.send_event``; waits (without blocking the loop) for queue room only."""
        await self._queued(self._native.send_event, event_type, data, qos)

    async def kv_set(self, key: str, value: Any) -> None:
        """``device.kv.set`` as a coroutine."""
        await self._queued(self._native.kv_set, key, value)

    async def kv_delete(self, key: str) -> None:
        """``device.kv.delete`` as a coroutine."""
        await self._queued(self._native.kv_delete, key)

    async def send_bulk_data(self, label: str, data: bytes, qos: int = 0) -> None:
        """As ``Device.send_bulk_data``."""
        await self._queued(self._native.send_bulk_data, label, data, qos)

    async def bulk_request(self, label: str, payload: Any = None, timeout: float = 10.0) -> BulkResponse:
        """As ``Device.bulk_request``."""
        result: BulkResponse = await self._await(self._native.bulk_request, label, payload, timeout)
        return result

    async def info(self) -> dict[str, Any]:
        """As ``Device.info``."""
        result: dict[str, Any] = await self._await(self._native.info)
        return result
