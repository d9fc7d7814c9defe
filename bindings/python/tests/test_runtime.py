"""mode.Runtime: many devices on one IO thread and one dispatcher, against a mode-sim with 100
generated devices: routing, isolation of a slow handler, bounded threads, and the free order."""

from __future__ import annotations

import collections
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import mode
from simproc import Sim, fleet_sim, mode_threads, settled_mode_threads, wait_until

FLEET = 100


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sim, list[tuple[int, str]]]]:
    sim, devices = fleet_sim(tmp_path_factory.mktemp("fleet"), FLEET)
    try:
        yield sim, devices
    finally:
        sim.close()


def connect_all(devices: "list[mode.Device]", timeout: float = 30) -> None:
    for device in devices:
        device.connect(timeout=None)
    wait_until(lambda: all(d.connected and d.kv.rev is not None for d in devices), timeout,
               what=f"{len(devices)} devices to connect")


def command(sim: Sim, device_id: int, action: str, **parameters: Any) -> None:
    body = {"action": action, "parameters": parameters}
    sim.console(f"command {device_id} {mode_json(body)}")


def mode_json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def test_a_hundred_devices_share_two_threads_and_each_gets_only_its_own_commands(
    fleet: tuple[Sim, list[tuple[int, str]]],
) -> None:
    sim, creds = fleet
    tasks_before = len(os.listdir("/proc/self/task"))
    named_before = settled_mode_threads()
    got: dict[int, list[str]] = collections.defaultdict(list)
    with mode.Runtime(io_threads=1) as runtime:
        devices = []
        for device_id, key in creds:
            device = mode.Device(device_id, key, runtime=runtime, **sim.device_options("mqtt"))
            device.on_command(lambda c, i=device_id: got[i].append(c.action))
            devices.append(device)
        connect_all(devices)
        # One IO thread and one dispatcher for the hundred, whatever else the process runs.
        assert mode_threads() == named_before + 2
        assert len(os.listdir("/proc/self/task")) <= tasks_before + 2
        assert runtime.devices == FLEET
        tag = uuid.uuid4().hex[:6]
        for device_id, _ in creds:
            command(sim, device_id, f"for-{device_id}-{tag}")
        wait_until(lambda: sum(len(v) for v in got.values()) >= FLEET, 20, what="every command")
        time.sleep(0.2)  # a misrouted duplicate would show up now
        assert {i: v for i, v in got.items()} == {i: [f"for-{i}-{tag}"] for i, _ in creds}
        assert all(d.stats().notifications_dropped == 0 for d in devices)
    assert all(d.closed for d in devices)
    wait_until(lambda: mode_threads() == named_before, what="the runtime's threads to end")


def test_handlers_of_all_devices_run_on_one_thread_in_order_per_device(
    fleet: tuple[Sim, list[tuple[int, str]]],
) -> None:
    sim, creds = fleet
    threads: set[int] = set()
    got: dict[int, list[int]] = collections.defaultdict(list)
    with mode.Runtime() as runtime:
        devices = []
        for device_id, key in creds[:10]:
            device = mode.Device(device_id, key, runtime=runtime, **sim.device_options("mqtt"))

            def handle(c: mode.Command, i: int = device_id) -> None:
                threads.add(threading.get_ident())
                got[i].append(c.parameters["n"])

            device.on_command(handle)
            devices.append(device)
        connect_all(devices)
        for n in range(20):
            for device_id, _ in creds[:10]:
                command(sim, device_id, "seq", n=n)
        wait_until(lambda: sum(len(v) for v in got.values()) == 200, 20, what="200 commands")
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert all(got[i] == list(range(20)) for i, _ in creds[:10]), dict(got)


def test_a_slow_handler_of_one_device_does_not_stall_the_connection_of_another(
    fleet: tuple[Sim, list[tuple[int, str]]],
) -> None:
    sim, creds = fleet
    (slow_id, slow_key), (other_id, other_key) = creds[10], creds[11]
    # Keepalive 1 s: a connection whose IO waited for the 4 s handler would be dropped (the
    # simulator closes it after 1.5 keepalives of silence, the client's watchdog too).
    options = dict(sim.device_options("mqtt"), keepalive=1.0)
    handled: list[tuple[str, float]] = []
    sleeping = threading.Event()
    with mode.Runtime() as runtime:
        slow = mode.Device(slow_id, slow_key, runtime=runtime, **options)
        other = mode.Device(other_id, other_key, runtime=runtime, **options)

        @slow.on_command
        def sleep_in_handler(c: mode.Command) -> None:
            sleeping.set()
            time.sleep(4)
            handled.append(("slow", time.monotonic()))

        other.on_command(lambda c: handled.append((c.action, time.monotonic())))
        connect_all([slow, other])
        accepted = sim.admin("GET", f"/admin/devices/{other_id}/connections")["accepted"]
        command(sim, slow_id, "sleep")
        wait_until(sleeping.is_set, what="the slow handler to start")
        started = time.monotonic()
        tag = uuid.uuid4().hex[:8]
        command(sim, other_id, f"during-{tag}")
        other.send_event(f"during-{tag}", {})
        # While the handler sleeps: the other device receives its command and gets its event
        # to the cloud, on the IO thread.
        wait_until(lambda: other.stats().commands_received >= 1, 2, what="the command to arrive")
        wait_until(lambda: sim.events(f"during-{tag}"), 2, what="the event to reach the cloud")
        assert time.monotonic() - started < 3
        time.sleep(max(0.0, started + 3.5 - time.monotonic()))  # 3.5 keepalives into the sleep
        assert other.connected and slow.connected
        wait_until(lambda: len(handled) == 2, 5, what="both handlers")
        # Its handler runs after the slow one (one dispatcher), and nothing was lost.
        assert [h[0] for h in handled] == ["slow", f"during-{tag}"]
        assert other.stats().reconnects == 0 and slow.stats().reconnects == 0
        assert sim.admin("GET", f"/admin/devices/{other_id}/connections")["accepted"] == accepted


def test_a_device_closes_while_the_others_run(fleet: tuple[Sim, list[tuple[int, str]]]) -> None:
    sim, creds = fleet
    got: list[int] = []
    with mode.Runtime() as runtime:
        devices = [mode.Device(i, k, runtime=runtime, **sim.device_options("mqtt")) for i, k in creds[20:25]]
        for device in devices:
            device.on_command(lambda c, i=device.device_id: got.append(i))
        connect_all(devices)
        devices[0].close()
        del devices[0]
        assert runtime.devices == 4
        for device in devices:
            command(sim, device.device_id, "still-here")
        wait_until(lambda: sorted(got) == sorted(d.device_id for d in devices), what="the others' commands")
        # A device closed from its own handler, while the others run.
        closing = devices[0]
        returned = threading.Event()
        closing.on_command(lambda c: (closing.close(timeout=1), returned.set()))
        command(sim, closing.device_id, "close-yourself")
        # It cannot wait for the dispatcher it runs on: the handler returns at once.
        assert returned.wait(3), "close() from the device's own handler hung"
        assert closing.closed
        command(sim, devices[1].device_id, "after")
        wait_until(lambda: got.count(devices[1].device_id) == 2, what="a command after the close")


def test_closing_the_runtime_closes_its_devices_and_refuses_new_ones(
    fleet: tuple[Sim, list[tuple[int, str]]],
) -> None:
    sim, creds = fleet
    runtime = mode.Runtime()
    devices = [mode.Device(i, k, runtime=runtime, **sim.device_options("mqtt")) for i, k in creds[30:33]]
    connect_all(devices)
    for device in devices:
        device.send_event("before-runtime-close", {})
    runtime.close()
    assert runtime.closed and runtime.devices == 0
    assert all(d.closed and not d.connected for d in devices)
    with pytest.raises(mode.ClosedError):
        devices[0].send_event("after", {})
    with pytest.raises(mode.ClosedError):
        mode.Device(creds[33][0], creds[33][1], runtime=runtime, **sim.device_options("mqtt"))
    runtime.close()  # idempotent
    # What was queued before the close was delivered by it.
    ids = {str(d.device_id) for d in devices}
    recorded = {str(e.get("originDeviceId")) for e in sim.events("before-runtime-close")}
    assert ids <= recorded, recorded


def test_closing_the_runtime_from_a_handler_does_not_hang(fleet: tuple[Sim, list[tuple[int, str]]]) -> None:
    sim, creds = fleet
    runtime = mode.Runtime()
    device = mode.Device(creds[40][0], creds[40][1], runtime=runtime, **sim.device_options("mqtt"))
    returned = threading.Event()
    device.on_command(lambda c: (runtime.close(timeout=1), returned.set()))
    connect_all([device])
    command(sim, device.device_id, "close-the-runtime")
    assert returned.wait(3), "Runtime.close() from a handler hung"
    assert runtime.closed and device.closed


def test_a_runtime_outlives_its_python_object_while_devices_use_it(
    fleet: tuple[Sim, list[tuple[int, str]]],
) -> None:
    import gc

    sim, creds = fleet
    named_before = settled_mode_threads()
    runtime = mode.Runtime()
    device = mode.Device(creds[41][0], creds[41][1], runtime=runtime, **sim.device_options("mqtt"))
    del runtime
    gc.collect()
    got: list[str] = []
    device.on_command(lambda c: got.append(c.action))
    connect_all([device])
    command(sim, device.device_id, "still-works")
    wait_until(lambda: got == ["still-works"], what="the command")
    device.close()
    del device
    gc.collect()
    wait_until(lambda: mode_threads() == named_before, what="the runtime's threads to end")


def test_devices_without_a_runtime_share_the_default_one(fleet: tuple[Sim, list[tuple[int, str]]]) -> None:
    sim, creds = fleet
    devices = [mode.Device(i, k, **sim.device_options("mqtt")) for i, k in creds[50:60]]
    try:
        assert all(d.runtime is mode.default_runtime() for d in devices)
        named = settled_mode_threads()
        connect_all(devices)
        assert mode_threads() == named
    finally:
        for device in devices:
            device.close()


def test_the_interpreter_exits_cleanly_with_devices_on_runtimes_and_a_handler_asleep(
    fleet: tuple[Sim, list[tuple[int, str]]], tmp_path: pathlib.Path,
) -> None:
    sim, creds = fleet
    options = sim.device_options("mqtt")
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent(f"""
        import time, mode
        creds = {creds[70:90]!r}
        options = {options!r}
        rt = mode.Runtime()
        on_rt = [mode.Device(i, k, runtime=rt, **options) for i, k in creds[:10]]
        on_default = [mode.Device(i, k, **options) for i, k in creds[10:]]
        on_rt[0].on_command(lambda c: (print("asleep", flush=True), time.sleep(30)))
        for d in on_rt + on_default:
            d.connect()
        print("up", flush=True)
        time.sleep(1)
        # no close(), a handler asleep: the exit must not hang or crash
    """))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    command(sim, creds[70][0], "sleep")
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    assert "asleep" in out, "the handler ran"
    assert "Fatal" not in err and "panicked" not in err, err
    # Not held up by the handler asleep for 30 s (the closes give up on it after 1 s, the
    # runtime's close after 5 s).
    assert time.monotonic() - started < 15
