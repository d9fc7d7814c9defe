"""The durable outbox from Python (``outbox_dir=``): QoS 1 events accepted while the cloud is
unreachable survive the device being closed and made again, and reach the cloud in order, with
nothing lost and nothing reported unrecovered."""

from __future__ import annotations

import pathlib
import socket

import pytest

import mode
from simproc import KEYS, Sim, wait_until


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_events_queued_offline_survive_a_restart_and_arrive_in_order(sim: Sim, tmp_path: pathlib.Path) -> None:
    outbox = str(tmp_path / "outbox")
    offline = sim.device_options("mqtt")
    offline["port"] = unused_port()  # nothing listens: every event stays in the outbox
    kind = "outbox-restart"
    first = mode.Device(1001, KEYS[1001], outbox_dir=outbox, **offline).connect(timeout=None)
    try:
        for i in range(20):
            first.send_event(kind, {"i": i}, qos=1)
        assert first.stats().pending == 20
    finally:
        # Closing gives up on what is queued and says so; the outbox keeps it for next time.
        with pytest.raises(mode.TimeoutError, match="20 messages"):
            first.close(timeout=0)
    assert sim.events(kind) == []

    second = mode.Device(1001, KEYS[1001], outbox_dir=outbox, **sim.device_options("mqtt")).connect()
    try:
        events = wait_until(lambda: len(sim.events(kind)) >= 20 and sim.events(kind), what="the 20 events")
        assert [e["eventData"]["i"] for e in events] == list(range(20))
        wait_until(lambda: second.stats().pending == 0, what="every event acknowledged")
        assert second.stats().outbox_unrecovered == 0
    finally:
        second.close(timeout=2)
