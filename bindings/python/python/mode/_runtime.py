"""``Runtime`` (IO threads and one dispatcher thread shared by many devices) and
``default_runtime()``; and the interpreter-exit hook that closes the devices and runtimes
still open, so no library thread outlives Python."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Optional

from . import _errors
from ._mode import Runtime as _NativeRuntime

if TYPE_CHECKING:
    from ._device import _DeviceBase

__all__ = ["Runtime", "default_runtime"]

logger = logging.getLogger("mode")

#: Devices still open, closed at interpreter exit so no library thread outlives Python.
_live: "weakref.WeakSet[_DeviceBase]" = weakref.WeakSet()

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
        return sum(1 for device in list(self._devices) if not device.closed)

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
