"""Locust users that are MODE devices (``pip install 'mode-sdk[locust]'``).

``ModeDeviceUser`` connects one device per Locust user, on one ``mode.Runtime`` per process
(one IO thread and one dispatcher for all its users), sends events and DDP writes, answers
commands, and reports every send to Locust's statistics: request type ``EVENT`` / ``KV_SET`` /
``COMMAND`` / ``CONNECT``, response time = milliseconds from the send to the cloud's
acknowledgement (QoS 1: PUBACK; HTTP: the 2xx answer), failures with the reason.

Nothing here blocks gevent's hub: sends never wait for queue room (the device's queue policy
is "error"), and outcomes come back from the runtime's dispatcher thread through a gevent
``async_`` watcher, which wakes one greenlet of the hub that hands them to the waiting users.

Devices come from the CSV in ``MODE_DEVICES_CSV`` (``device_id,api_key,...`` with a header,
as ``mode-sim --devices N --devices-csv FILE`` writes it), one row per user. Distributed, the
master hands out the rows, so no two users of any worker are the same device. The server is
Locust's ``--host``: ``mqtt://host:port`` (plain MQTT), ``mqtts://host:port`` (MQTT over TLS),
or ``http://host:port`` / ``https://...`` (the HTTP transport); ``device_options`` adds any
``mode.Device`` option::

    from locust import constant_pacing
    from mode.locust import ModeDeviceUser

    class Sensor(ModeDeviceUser):
        wait_time = constant_pacing(1)

    # MODE_DEVICES_CSV=devices.csv locust -f locustfile.py --host mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import collections
import csv
import itertools
import json
import logging
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import gevent  # type: ignore[import-untyped]
from gevent.event import AsyncResult, Event  # type: ignore[import-untyped]
from locust import User, between, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from ._errors import ModeError
from ._mode import Client, Command
from ._options import DeviceOptions, QoS
from ._runtime import Runtime

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["GeventDevice", "ModeDeviceUser", "device_rows"]

logger = logging.getLogger("mode.locust")

# A line per device connected and closed would flood Locust's log (and its workers' log
# forwarding to the master): the library's own warnings and errors only, unless set otherwise.
if logging.getLogger("mode.core").level == logging.NOTSET:
    logging.getLogger("mode.core").setLevel(logging.WARNING)

#: The environment variable naming the devices' CSV.
CSV_ENV = "MODE_DEVICES_CSV"

_REQUEST = "mode_device_request"
_REPLY = "mode_device"


class _Bridge:
    """Outcomes from the runtime's threads to the hub: a thread-safe deque, and an ``async_``
    watcher (safe to ``send()`` from any thread) that wakes the one greenlet emptying it."""

    def __init__(self) -> None:
        self._items: "collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]]" = collections.deque()
        self._wake = Event()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._wake.set)
        self._pump_greenlet = gevent.spawn(self._pump)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Runs ``fn(*args)`` on the hub's thread; callable from any thread."""
        self._items.append((fn, args))
        self._watcher.send()

    def _pump(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._items:
                fn, args = self._items.popleft()
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                    logger.exception("mode.locust: a callback failed")


_process: dict[str, Any] = {}
_process_lock = threading.Lock()


def _shared() -> "tuple[Runtime, _Bridge]":
    """This process's runtime and bridge, made on first use (in the hub's thread)."""
    with _process_lock:
        if "runtime" not in _process or _process["runtime"].closed:
            _process["runtime"] = Runtime(io_threads=1)
            _process["bridge"] = _Bridge()
        return _process["runtime"], _process["bridge"]


def device_rows(path: str) -> Iterator[tuple[int, str]]:
    """``(device_id, api_key)`` of each row of a ``device_id,api_key,...`` CSV (header optional)."""
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or not row[0].strip().isdigit():
                continue  # the header, a blank line
            yield int(row[0]), row[1].strip()


def options_for_host(host: Optional[str]) -> DeviceOptions:
    """``mode.Device`` options for Locust's ``--host``."""
    if not host:
        return {}
    url = urllib.parse.urlsplit(host)
    if url.scheme in ("mqtt", "mqtts"):
        return {"transport": "mqtt", "host": url.hostname, "port": url.port,
                "plain": url.scheme == "mqtt"}
    if url.scheme in ("http", "https"):
        return {"transport": "http", "api_url": f"{url.scheme}://{url.netloc}",
                "plain": url.scheme == "http"}
    raise ValueError(f"--host {host!r}: use mqtt://host:port, mqtts://host:port, http://... or https://...")


class _Rows:
    """The CSV's rows, each handed out once in this process (the local or the master runner)."""

    def __init__(self) -> None:
        self._rows: Optional[Iterator[tuple[int, str]]] = None
        self._lock = threading.Lock()

    def next(self) -> Optional[tuple[int, str]]:
        with self._lock:
            if self._rows is None:
                path = os.environ.get(CSV_ENV)
                if not path:
                    raise RuntimeError(f"set {CSV_ENV} to the devices' CSV (device_id,api_key,...)")
                self._rows = device_rows(path)
            return next(self._rows, None)


_rows = _Rows()
_pending_rows: dict[str, AsyncResult] = {}


@events.init.add_listener  # type: ignore[untyped-decorator]  # locust's EventHook has no types
def _on_init(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        def hand_out(environment: Environment, msg: Any, **_kw: Any) -> None:
            row = _rows.next()
            runner.send_message(_REPLY, {"request": msg.data["request"], "row": row},
                                client_id=msg.node_id)

        runner.register_message(_REQUEST, hand_out)
    elif isinstance(runner, WorkerRunner):
        def receive(environment: Environment, msg: Any, **_kw: Any) -> None:
            waiting = _pending_rows.pop(msg.data["request"], None)
            if waiting is not None:
                waiting.set(msg.data["row"])

        runner.register_message(_REPLY, receive)


def _next_credentials(environment: Environment, timeout: float) -> Optional[tuple[int, str]]:
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        return _rows.next()
    request = uuid.uuid4().hex
    answer = AsyncResult()
    _pending_rows[request] = answer
    runner.send_message(_REQUEST, {"request": request})
    try:
        row = answer.get(timeout=timeout)
    finally:
        _pending_rows.pop(request, None)
    return None if row is None else (int(row[0]), str(row[1]))


class GeventDevice:
    """A MODE device for gevent: the native client on the process's runtime; every wait is a
    gevent wait, every send returns ``(error or None, seconds to acknowledgement)``."""

    def __init__(self, device_id: int, api_key: str, on_command: Optional[Callable[[Command], Any]] = None,
                 **options: Unpack[DeviceOptions]) -> None:
        self.runtime, self._bridge = _shared()
        options.setdefault("full_queue_policy", "error")
        self.device_id = device_id
        self._native = Client(device_id, api_key, runtime=self.runtime._native, **options)
        self._on_command = on_command
        #: Set at each notification; ``connect`` waits on it.
        self._changed = Event()
        self._up = False
        self.last_failure: Optional[str] = None

    # -- notifications: dispatcher thread -> hub ----------------------------------------------

    def _dispatch(self, kind: str, payload: Any) -> None:
        # On the runtime's dispatcher thread: only hand over, never touch gevent objects here.
        self._bridge.post(self._on_note, kind, payload)

    def _on_note(self, kind: str, payload: Any) -> None:
        if kind == "connected":
            self._up = True
        elif kind == "disconnected":
            self._up = False
            self.last_failure = payload[1]
        elif kind == "command" and self._on_command is not None:
            gevent.spawn(self._on_command, payload)
        self._changed.set()

    # -- calls from greenlets -----------------------------------------------------------------

    def connect(self, timeout: float = 30.0) -> None:
        """Waits (in gevent) until connected and the DDP mirror holds the first reload."""
        self._native.start(self._dispatch)
        deadline = time.monotonic() + timeout
        # Up (the "connected" notification) and synced (the first reload's "kv" one): each
        # notification sets `_changed`. Greenlets switch only at the wait, so none is missed
        # between the check and the clear.
        while not (self._up and self._native.kv_rev() is not None):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModeError(f"device {self.device_id} did not connect within {timeout} s "
                                f"(last error: {self.last_failure or 'no answer'})")
            self._changed.clear()
            self._changed.wait(left)

    def _sent(self, send: Callable[..., bool], *args: Any, timeout: float,
              late: Optional[Callable[[Optional[BaseException], float], Any]] = None,
              ) -> "tuple[Optional[BaseException], float]":
        outcome = AsyncResult()
        bridge = self._bridge

        def delivered(error: Optional[BaseException], seconds: float) -> None:
            bridge.post(outcome.set, (error, seconds))  # dispatcher thread -> hub

        started = time.perf_counter()
        try:
            send(*args, None, delivered)
        except ModeError as err:  # refused at once: queue full, closed, too large
            return err, time.perf_counter() - started
        try:
            result: tuple[Optional[BaseException], float] = outcome.get(timeout=timeout)
        except gevent.Timeout:
            return ModeError(f"no acknowledgement within {timeout} s"), time.perf_counter() - started
        except BaseException:
            # The waiting greenlet is killed (Locust stops users even mid-task): the message is
            # on its way all the same, so its outcome goes to `late` when it comes.
            if late is not None:
                outcome.rawlink(lambda ready: late(*ready.get()))
            raise
        return result

    def send_event(self, event_type: str, data: Optional[Mapping[str, Any]] = None, qos: QoS = 1,
                   timeout: float = 30.0, late: Optional[Callable[[Optional[BaseException], float], Any]] = None,
                   ) -> "tuple[Optional[BaseException], float]":
        """Sends an event and waits (in gevent) for its outcome. If this greenlet is killed
        meanwhile, ``late(error, seconds)`` gets the outcome when it comes."""
        return self._sent(self._native.send_event, event_type, data, qos, timeout=timeout, late=late)

    def kv_set(self, key: str, value: Any, timeout: float = 30.0,
               late: Optional[Callable[[Optional[BaseException], float], Any]] = None,
               ) -> "tuple[Optional[BaseException], float]":
        """Writes a DDP key and waits for its outcome (see ``send_event``)."""
        return self._sent(self._native.kv_set, key, value, timeout=timeout, late=late)

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is queued (up to ``timeout`` s, waiting in gevent) and disconnects."""
        done = AsyncResult()
        bridge = self._bridge
        try:
            self._native.close(timeout, lambda ok, value: bridge.post(done.set, ok))
            done.get(timeout=timeout + 1)
        except (ModeError, gevent.Timeout):
            pass
        finally:
            self._native.shutdown(0.0)


class ModeDeviceUser(User):
    """A Locust user that is one MODE device. Subclass it (``abstract`` here) and set
    ``wait_time``; override ``send_event_task`` / ``kv_set_task`` / ``on_command``, or add your
    own ``@task`` methods using ``self.send_event`` and ``self.kv_set``."""

    abstract = True
    wait_time = between(0.5, 1.5)
    #: ``mode.Device`` options over those derived from ``--host``.
    device_options: ClassVar[DeviceOptions] = {}
    #: Event type of ``send_event_task``.
    event_type: ClassVar[str] = "locust"
    connect_timeout: ClassVar[float] = 30.0
    ack_timeout: ClassVar[float] = 30.0

    _counter = itertools.count()

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.device: Optional[GeventDevice] = None
        self._n = 0

    def on_start(self) -> None:
        started = time.perf_counter()
        try:
            credentials = _next_credentials(self.environment, self.connect_timeout)
            if credentials is None:
                raise ModeError(f"no device left in {os.environ.get(CSV_ENV)}: more users than rows")
            options = options_for_host(self.host)
            options.update(self.device_options)
            self.device = GeventDevice(credentials[0], credentials[1], on_command=self._command, **options)
            self.device.connect(self.connect_timeout)
        except Exception as err:  # noqa: BLE001 - reported to Locust, then the user stops
            self._report("CONNECT", "connect", time.perf_counter() - started, 0, err)
            if self.device is not None:
                self.device.close(timeout=0)
            raise StopUser() from err
        self._report("CONNECT", "connect", time.perf_counter() - started, 0, None)

    def on_stop(self) -> None:
        if self.device is not None:
            self.device.close()

    def _report(self, kind: str, name: str, seconds: float, length: int, error: Optional[BaseException]) -> None:
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=seconds * 1000.0, response_length=length,
            exception=error, context={"device_id": self.device.device_id if self.device else None},
        )

    def send_event(self, event_type: str, data: Optional[Mapping[str, Any]] = None, qos: QoS = 1) -> bool:
        """Sends an event, waits (in gevent) for its acknowledgement and reports it as
        ``EVENT``/``event_type``; True when it was acknowledged."""
        assert self.device is not None
        length = len(json.dumps(data or {}))

        def report(error: Optional[BaseException], seconds: float) -> None:
            self._report("EVENT", event_type, seconds, length, error)

        error, seconds = self.device.send_event(event_type, data, qos, timeout=self.ack_timeout, late=report)
        report(error, seconds)
        return error is None

    def kv_set(self, key: str, value: Any) -> bool:
        """Writes a DDP key, waits for its acknowledgement, reports it as ``KV_SET``/``key``."""
        assert self.device is not None
        length = len(json.dumps(value))

        def report(error: Optional[BaseException], seconds: float) -> None:
            self._report("KV_SET", key, seconds, length, error)

        error, seconds = self.device.kv_set(key, value, timeout=self.ack_timeout, late=report)
        report(error, seconds)
        return error is None

    @task(3)
    def send_event_task(self) -> None:
        self._n += 1
        self.send_event(self.event_type, {"n": self._n, "at": time.time()})

    @task(1)
    def kv_set_task(self) -> None:
        self._n += 1
        self.kv_set("locust", {"n": self._n})

    def _command(self, command: Command) -> None:
        self._report("COMMAND", command.action, 0.0, len(json.dumps(command.parameters)), None)
        self.on_command(command)

    def on_command(self, command: Command) -> None:
        """Called (in its own greenlet) for each command; it may send. Reported as
        ``COMMAND``/action, response time 0."""
