"""``AsyncDevice``, a MODE device for asyncio, and its ``kv`` (``AsyncKvView``, whose writes are
awaited). Every native call that may wait runs on the library's IO threads, which hand the
outcome to the event loop (``call_soon_threadsafe``); nothing here blocks the loop, and every
wait wakes on the notification that settles it (an ``asyncio.Event`` set on the loop).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Mapping
from typing import Any, Callable, Optional

from ._device import _DeviceBase, _KvMirror, _log_handler_error
from ._mode import BulkResponse, Command
from ._options import QoS

__all__ = ["AsyncDevice", "AsyncKvView"]


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


async def _native_call(method: Callable[..., Any], *args: Any) -> Any:
    """Calls ``method(*args, on_done=...)`` and awaits the outcome ``on_done`` reports. A send
    that returns True was queued at once (``on_done`` is not called): nothing to await."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    if method(*args, on_done=_resolver(loop, fut)) is True:
        return None
    return await fut


class AsyncKvView(_KvMirror):
    """``AsyncDevice.kv``: the DDP mirror (a read-only mapping), plus ``set`` and ``delete`` as
    coroutines: ``await device.kv.set(key, value)`` returns once the write is queued (after
    waiting for room, without blocking the loop, under the "block" policy) and raises what
    refused it (``QueueFullError``, ``ClosedError``, ``InvalidArgumentError``, ``TypeError``)."""

    async def set(self, key: str, value: Any) -> None:
        """Sets ``key`` to ``value`` (any JSON) in the cloud store (QoS 1)."""
        await _native_call(self._device._native.kv_set, key, value)

    async def delete(self, key: str) -> None:
        """Deletes ``key`` from the cloud store (QoS 1)."""
        await _native_call(self._device._native.kv_delete, key)


class AsyncDevice(_DeviceBase):
    """A MODE device for asyncio: the same features as ``Device`` as coroutines; handlers run
    on the event loop (and may be coroutine functions). Nothing here blocks the loop."""

    kv: AsyncKvView

    def _setup(self) -> None:
        self.kv = AsyncKvView(self)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        #: Set on the loop at each notification and at close; a wait clears it, checks its
        #: condition, and waits for it.
        self._changed: Optional[asyncio.Event] = None
        self._tasks: "set[asyncio.Task[Any]]" = set()

    async def __aenter__(self) -> "AsyncDevice":
        if not self._started:
            await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self, timeout: Optional[float] = 10.0) -> "AsyncDevice":
        """As ``Device.connect``, without blocking the loop."""
        if not self._started and not self._closed:
            # Made here: before Python 3.10 an Event binds the loop current when it is made.
            self._loop = asyncio.get_running_loop()
            self._changed = asyncio.Event()
        self._start()
        if timeout is None:
            return self
        await self._wait_for(self._connect_settled, timeout)
        failure = self._connect_failure(timeout)
        if failure is not None:
            await self.close(timeout=0)
            raise failure
        return self

    async def close(self, timeout: float = 5.0) -> None:
        """As ``Device.close``, without blocking the loop."""
        if not self._closing():
            return
        try:
            await _native_call(self._native.close, timeout)
        finally:
            self._closed_now()

    async def _wait_for(self, predicate: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Waits until ``predicate()`` holds, checked again at each notification and at close,
        for up to ``timeout`` s (None: no limit); returns ``predicate()``."""
        changed = self._changed
        assert changed is not None, "connect() first"
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            changed.clear()  # on the loop, as the set: no change comes between check and wait
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            try:
                await asyncio.wait_for(changed.wait(), left)
            except asyncio.TimeoutError:
                return predicate()
        return True

    def _on_notification(self, kind: str, payload: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._handle, kind, payload)
        except RuntimeError:
            pass  # the loop is closed: nobody listens any more

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

    def _wake(self) -> None:
        changed, loop = self._changed, self._loop
        if changed is None or loop is None:
            return
        try:
            if asyncio.get_running_loop() is loop:
                changed.set()
                return
        except RuntimeError:
            pass  # not on a loop's thread: hand it over
        try:
            loop.call_soon_threadsafe(changed.set)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    async def commands(self, timeout: Optional[float] = None) -> AsyncIterator[Command]:
        """Yields commands as they arrive; ends after ``timeout`` s without one (None: never)
        or when the device closes."""
        while await self._wait_for(self._has_command_or_closed, timeout):
            if not self._commands:
                return  # closed
            yield self._commands.popleft()

    async def send_event(self, event_type: str, data: Optional[Mapping[str, Any]] = None, qos: QoS = 1) -> None:
        """As ``Device.send_event``; waits (without blocking the loop) for queue room only."""
        await _native_call(self._native.send_event, event_type, data, qos)

    async def send_bulk_data(self, label: str, data: bytes, qos: QoS = 0) -> None:
        """As ``Device.send_bulk_data``."""
        await _native_call(self._native.send_bulk_data, label, data, qos)

    async def bulk_request(self, label: str, payload: Any = None, timeout: float = 10.0) -> BulkResponse:
        """As ``Device.bulk_request``."""
        result: BulkResponse = await _native_call(self._native.bulk_request, label, payload, timeout)
        return result

    async def info(self) -> dict[str, Any]:
        """As ``Device.info``."""
        result: dict[str, Any] = await _native_call(self._native.info)
        return result
