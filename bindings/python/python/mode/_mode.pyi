"""The native half of the ``mode`` package (``bindings/python/src``). Use ``mode`` instead."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Optional, Union, final

from typing_extensions import Unpack

from mode._engine import EngineEvent, JournalChange, Transmit
from mode._options import DeviceOptions, QoS, Transport

__version__: str
__all__ = ["BulkResponse", "Client", "Command", "Engine", "KvChange", "Mirror", "Runtime", "Stats", "__version__"]

_OnDone = Callable[[bool, Any], None]
#: ``(error or None, seconds from the send to the outcome)``, on the runtime's dispatcher.
_OnDelivered = Callable[[Optional[BaseException], float], None]

@final
class Command:
    """A command from the cloud: ``action`` and its ``parameters`` (integers exact)."""

    action: Final[str]
    parameters: Final[dict[str, Any]]
    def __new__(cls, action: str, parameters: Optional[dict[str, Any]] = None) -> Command: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class KvChange:
    """One visible change of the DDP mirror."""

    key: Final[str]
    value: Final[Any]
    previous: Final[Any]
    deleted: Final[bool]

@final
class BulkResponse:
    """A smart module's answer to a bulk-data request."""

    request_id: Final[str]
    status: Final[str]
    payload: Final[Any]

@final
class Mirror:
    """The DDP state machine alone: apply sync messages, read the mirror."""

    def __new__(cls) -> Mirror: ...
    def apply_json(self, payload: Union[bytes, str]) -> list[KvChange]: ...
    def expect_reload(self) -> None: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def __getitem__(self, key: str, /) -> Any: ...
    def __contains__(self, key: str, /) -> bool: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...
    def snapshot(self) -> dict[str, Any]: ...
    @property
    def rev(self) -> int: ...
    @property
    def reloads(self) -> int: ...

@final
class Engine:
    """One device's connection as a state machine without IO (C: ``mode_engine_*``).

    Feed it what the transport saw, with the time in milliseconds of one monotonic clock;
    carry out ``poll_transmit()``; call ``handle_timeout`` at ``poll_timeout()``; read
    ``poll_event()``. Sends return message ids; their outcomes come as events.
    """

    def __new__(
        cls,
        device_id: int,
        now_ms: int,
        *,
        seed: Optional[int] = None,
        queue_size: int = 10000,
        full_queue: Literal["error", "drop-oldest"] = "error",
        max_inflight: int = 100,
        max_message_size: int = 1048576,
        watchdog_ms: int = 90000,
        linger_ms: int = 2000,
        backoff_unit_ms: int = 1000,
        backoff_cap_ms: int = 60000,
        backoff_jitter: float = 0.2,
        backoff_stable_after_ms: int = 30000,
        auth_failure_wait_ms: int = 60000,
        auth_failure_cap_ms: int = 900000,
        journal: bool = False,
    ) -> Engine: ...
    device_id: Final[int]
    @property
    def is_connected(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...
    @property
    def pending(self) -> int: ...
    def poll_transmit(self) -> Optional[Transmit]: ...
    def poll_event(self) -> Optional[EngineEvent]: ...
    def poll_journal(self) -> Optional[JournalChange]: ...
    def poll_timeout(self) -> Optional[int]: ...
    def restore(self, messages: Sequence[tuple[int, str, bytes, int]]) -> None: ...
    def connected(self, now_ms: int) -> None: ...
    def subscribed(self, now_ms: int) -> None: ...
    def disconnected(self, kind: Literal["auth", "tls", "network"], text: str, now_ms: int) -> None: ...
    def handle_publish(self, topic: str, payload: Union[bytes, bytearray, str], now_ms: int) -> None: ...
    def handle_activity(self, now_ms: int) -> None: ...
    def delivered(self, id: int, now_ms: int) -> None: ...
    def failed(self, id: int, why: str, now_ms: int) -> None: ...
    def handle_timeout(self, now_ms: int) -> None: ...
    def send_event(
        self, event_type: str, data: Optional[Mapping[str, Any]] = None, qos: QoS = 1
    ) -> int: ...
    def kv_set(self, key: str, value: Any) -> int: ...
    def kv_delete(self, key: str) -> int: ...
    def send_bulk_data(self, label: str, data: bytes, qos: QoS = 0) -> int: ...
    def send_data(self, data: bytes, qos: QoS = 0) -> int: ...
    def bulk_request(
        self, label: str, payload: Any = None, *, now_ms: int, timeout_ms: Optional[int] = None
    ) -> tuple[int, str]: ...
    def forget_bulk_request(self, request_id: str) -> None: ...
    def close(self, deadline_ms: int, now_ms: int) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def kv_get(self, key: str, default: Any = None) -> Any: ...
    def kv_snapshot(self) -> dict[str, Any]: ...
    @property
    def kv_rev(self) -> int: ...

@dataclass(frozen=True)
class Stats:
    """A snapshot of a device's counters (mode-core's, by the same names) and the last error
    seen, as text. Made at import from mode-core's list of counters; stubtest checks this one
    against it."""

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

@final
class Runtime:
    """IO threads and one dispatcher thread for many clients; ``mode.Runtime`` wraps it."""

    def __new__(cls, io_threads: int = 1) -> Runtime: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    io_threads: Final[int]
    @property
    def dispatcher_running(self) -> bool: ...

@final
class Client:
    """One device's connection; ``mode.Device`` and ``mode.AsyncDevice`` wrap it."""

    def __new__(
        cls, device_id: int, api_key: str, *, runtime: Runtime, **options: Unpack[DeviceOptions]
    ) -> Client: ...
    def start(self, dispatch: Callable[[str, Any], None]) -> None: ...
    device_id: Final[int]
    transport: Final[Transport]
    @property
    def connected(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def send_event(
        self,
        event_type: str,
        data: Optional[Mapping[str, Any]] = None,
        qos: QoS = 1,
        on_done: Optional[_OnDone] = None,
        on_delivered: Optional[_OnDelivered] = None,
    ) -> bool: ...
    def kv_set(
        self,
        key: str,
        value: Any,
        on_done: Optional[_OnDone] = None,
        on_delivered: Optional[_OnDelivered] = None,
    ) -> bool: ...
    def kv_delete(
        self, key: str, on_done: Optional[_OnDone] = None, on_delivered: Optional[_OnDelivered] = None
    ) -> bool: ...
    def send_bulk_data(
        self, label: str, data: bytes, qos: QoS = 0, on_done: Optional[_OnDone] = None
    ) -> bool: ...
    def bulk_request(
        self,
        label: str,
        payload: Any = None,
        timeout: float = 10.0,
        on_done: Optional[_OnDone] = None,
    ) -> Any: ...
    def info(self, on_done: Optional[_OnDone] = None) -> Any: ...
    def kv_get(self, key: str) -> Any: ...
    def kv_snapshot(self) -> dict[str, Any]: ...
    def kv_rev(self) -> Optional[int]: ...
    def stats(self) -> Stats: ...
    def close(self, timeout: float = 5.0, on_done: Optional[_OnDone] = None) -> Any: ...
    def shutdown(self, handover: float = 10.0) -> None: ...
