"""The keyword options of a device, written once: ``DeviceOptions``, the ``**options`` of
``Device``, ``AsyncDevice``, ``mode.locust.GeventDevice`` and the native ``Client`` (whose stub,
``_mode.pyi``, takes them as ``**options: Unpack[DeviceOptions]``; stubtest checks these names
and the native signature, which holds the defaults, against each other). Also the ``Literal``
types of the options and arguments that take one of a few words or numbers.
"""

from __future__ import annotations

from os import PathLike
from typing import Literal, Optional, TypedDict, Union

__all__ = ["DeviceOptions", "FullQueuePolicy", "OutboxSync", "QoS", "Transport"]

# Each alias is a Union of one-value Literals, the same type to a checker as one Literal of
# several values, because mypy.stubtest wants a Union at runtime for what mypy sees as one.

#: How the device talks to the cloud: MQTT, MQTT over WebSocket, or the HTTP (REST) API.
#: ("mqtt-ws": the older spelling of "mqtt-websocket", still accepted.)
Transport = Union[Literal["mqtt"], Literal["mqtt-websocket"], Literal["http"], Literal["mqtt-ws"]]
#: What a send does when the outgoing queue is full: wait for room, drop the oldest queued
#: message, or raise ``QueueFullError``.
FullQueuePolicy = Union[Literal["block"], Literal["drop-oldest"], Literal["error"]]
#: When the durable outbox syncs to disk: in groups (``outbox_group_commit`` s), or per message.
OutboxSync = Union[Literal["group"], Literal["every-message"]]
#: MQTT quality of service: 0 (at most once) or 1 (at least once); MODE has no QoS 2.
QoS = Union[Literal[0], Literal[1]]

_Path = Union[str, PathLike[str]]


class DeviceOptions(TypedDict, total=False):
    """``mode.Device(device_id, api_key, **options)``: every option may be left out (its
    default in brackets)."""

    #: ["mqtt"] how the device talks to the cloud.
    transport: Transport
    #: [the cloud's] the server of the transport: MQTT broker, or the REST API's host.
    host: Optional[str]
    #: [the transport's] its port.
    port: Optional[int]
    #: [derived from host] the REST API's base URL (``info()``, the HTTP transport).
    api_url: Optional[str]
    #: [derived from host] the MQTT-over-WebSocket URL.
    mqtt_ws_url: Optional[str]
    #: [None] the older spelling of ``mqtt_ws_url``.
    ws_url: Optional[str]
    #: [False] no TLS: plain TCP, ws:// and http://, for a local simulator.
    plain: bool
    #: [True] the older spelling: ``tls=False`` is ``plain=True``.
    tls: bool
    #: [None] a PEM file of extra certificate authorities to trust.
    ca_file: Optional[_Path]
    #: [None] a PEM client certificate (with ``client_key``) for mutual TLS.
    client_cert: Optional[_Path]
    #: [None] the PEM private key of ``client_cert``.
    client_key: Optional[_Path]
    #: [False] accept any server certificate (tests only).
    danger_accept_invalid_certs: bool
    #: [60.0] MQTT keepalive, s.
    keepalive: float
    #: [10.0] how long one connection attempt may take, s.
    connect_timeout: float
    #: [30.0] how long a REST request may take, s.
    request_timeout: float
    #: [10000] messages the outgoing queue holds.
    queue_size: int
    #: ["block"] what a send does when that queue is full.
    full_queue_policy: FullQueuePolicy
    #: [1048576] the largest message, bytes.
    max_message_size: int
    #: [100] QoS 1 messages awaiting their acknowledgement at once.
    max_inflight: int
    #: [1.0] the first reconnection wait, s (doubling, with jitter).
    backoff_unit: float
    #: [60.0] the longest reconnection wait, s.
    backoff_cap: float
    #: [None] a directory where queued messages survive a restart (the durable outbox).
    outbox_dir: Optional[_Path]
    #: [67108864] the most the outbox holds, bytes.
    outbox_max_bytes: int
    #: ["group"] when the outbox syncs to disk.
    outbox_sync: OutboxSync
    #: [0.0] with "group": how long a sync waits to take more messages along, s.
    outbox_group_commit: float
