"""mode.Device against a mode-sim subprocess, on MQTT and on HTTP."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Callable

import pytest

import mode
from simproc import Sim, mode_threads, settled_mode_threads, wait_until

MakeDevice = Callable[..., mode.Device]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_connect_reports_the_connection_to_handlers(make_device: MakeDevice, transport: str) -> None:
    device = make_device(transport)
    seen: list[tuple[bool, Any]] = []
    device.on_connection(lambda up, reason: seen.append((up, reason)))
    with device:
        assert device.connected
        wait_until(lambda: (True, None) in seen, what="the connection handler")
    assert not device.connected


def test_events_reach_the_cloud_with_exact_integers(sim: Sim, make_device: MakeDevice, transport: str) -> None:
    kind = unique("exact")
    data = {"big": 2**80 + 1, "negative": -(2**70), "f": 1.5, "list": [1, None, True, "x"], "obj": {"a": {}}}
    with make_device(transport) as device:
        device.send_event(kind, data)
        device.send_event(kind, None, qos=0)
        events = wait_until(lambda: len(sim.events(kind)) == 2 and sim.events(kind), what="two events")
    assert events[0]["eventData"] == data
    assert events[0]["originDeviceId"] == 1001
    assert events[1]["eventData"] == {}


def test_commands_reach_handlers_and_the_pull_iterator(sim: Sim, make_device: MakeDevice, transport: str) -> None:
    device = make_device(transport)
    got: list[mode.Command] = []

    @device.on_command
    def handle(command: mode.Command) -> None:
        got.append(command)

    assert handle is not None  # the decorator returns the function
    with device:
        action = unique("act")
        sim.console(f'command 1001 {{"action":"{action}","parameters":{{"n":{2**65},"s":"x"}}}}')
        pulled = next(iter(device.commands(timeout=10)))
        assert pulled.action == action
        assert pulled.parameters == {"n": 2**65, "s": "x"}
        assert isinstance(pulled.parameters["n"], int)
        wait_until(lambda: got, what="the command handler")
        assert got[0] == pulled
        # An empty stream ends after its timeout.
        started = time.monotonic()
        assert list(device.commands(timeout=0.3)) == []
        assert time.monotonic() - started < 2


def test_waits_end_when_what_they_wait_for_comes_not_at_their_timeout(
    sim: Sim, make_device: MakeDevice, transport: str
) -> None:
    # A wait that missed its wake-up would still succeed, at its timeout: 30 s here, so taking
    # under 10 s means it woke on the notification (or the close).
    device = make_device(transport)
    started = time.monotonic()
    device.connect(timeout=30)
    assert time.monotonic() - started < 10, "connect() returned at its timeout"
    action = unique("wake")
    started = time.monotonic()
    sim.console(f'command 1001 {{"action":"{action}","parameters":{{}}}}')
    assert next(device.commands(timeout=30)).action == action
    assert time.monotonic() - started < 10, "commands() returned at its timeout"
    ended = threading.Event()
    reader = threading.Thread(target=lambda: (list(device.commands(timeout=30)), ended.set()))
    reader.start()
    started = time.monotonic()
    device.close()
    assert ended.wait(30)
    assert time.monotonic() - started < 10, "commands() ended at its timeout, not at the close"
    reader.join()


def test_kv_set_and_delete_change_the_mirror_and_call_the_handler(make_device: MakeDevice, transport: str) -> None:
    device = make_device(transport)
    changes: list[mode.KvChange] = []
    device.on_kv_change(changes.append)
    key = unique("key")
    with device:
        device.kv.set(key, {"n": 2**64 + 7, "l": [1.25]})
        wait_until(lambda: key in device.kv, what="the key in the mirror")
        assert device.kv[key] == {"n": 2**64 + 7, "l": [1.25]}
        assert dict(device.kv)[key] == device.kv[key]
        assert len(device.kv) >= 1 and key in list(device.kv)
        assert isinstance(device.kv.rev, int)
        device.kv.delete(key)
        wait_until(lambda: key not in device.kv, what="the key deleted")
        with pytest.raises(KeyError):
            device.kv[key]
        assert device.kv.get(key, "gone") == "gone"
    mine = [c for c in changes if c.key == key]
    assert [c.deleted for c in mine] == [False, True]
    assert mine[1].previous == {"n": 2**64 + 7, "l": [1.25]}


def test_kv_changes_from_the_cloud_reach_the_mirror(sim: Sim, make_device: MakeDevice, transport: str) -> None:
    key = unique("cloud")
    with make_device(transport) as device:
        sim.console(f"kv 1001 {key} [1, 2, {2**70}]")
        wait_until(lambda: device.kv.get(key) == [1, 2, 2**70], what="the cloud's write")
        sim.console(f"kv-delete 1001 {key}")
        wait_until(lambda: key not in device.kv, what="the cloud's delete")


def test_info_is_the_cloud_device_object(make_device: MakeDevice, transport: str) -> None:
    with make_device(transport) as device:
        info = device.info()
    assert info["id"] == 1001
    assert info["homeId"] == 10


def test_stats_count_what_was_sent(make_device: MakeDevice, transport: str) -> None:
    with make_device(transport) as device:
        for i in range(5):
            device.send_event(unique("stat"), {"i": i})
        wait_until(lambda: device.stats().messages_acked >= 5, what="acknowledgements")
        stats = device.stats()
    assert isinstance(stats, mode.Stats)
    assert stats.messages_queued >= 5
    assert stats.connection_attempts >= 1


def test_bulk_data_and_bulk_requests_over_mqtt(sim: Sim, make_device: MakeDevice) -> None:
    with make_device("mqtt") as device:
        payload = unique("blob").encode() + bytes(range(256))
        device.send_bulk_data("echo", payload, qos=1)
        response = device.bulk_request("echo", {"ask": 2**66}, timeout=10)
        assert response.status == "OK"
        assert response.payload == {"ask": 2**66}
        assert response.request_id
        missing = device.bulk_request("no-such-label", {}, timeout=10)
        assert missing.status == "INVALID_BULK_DATA_LABEL"
        # MODE requires the request's payload to be an object: refused before it is sent.
        with pytest.raises(mode.InvalidArgumentError, match="must be a JSON object"):
            device.bulk_request("echo", [1, 2], timeout=10)
        records = wait_until(
            lambda: [r for r in sim.admin("GET", "/admin/records/bulkData?encoding=hex")
                     if r["data"] == payload.hex()],
            what="the bulk data record",
        )
    assert records[0]["label"] == "echo"


def test_bulk_data_over_http_says_it_needs_mqtt(make_device: MakeDevice) -> None:
    with make_device("http") as device:
        with pytest.raises(mode.UnsupportedError, match="MQTT"):
            device.send_bulk_data("echo", b"x")
        with pytest.raises(mode.UnsupportedError):
            device.bulk_request("echo", {}, timeout=2)


def test_mqtt_over_websocket_sends_events(sim: Sim, make_device: MakeDevice) -> None:
    kind = unique("ws")
    with make_device("mqtt-websocket") as device:
        device.send_event(kind, {"x": 1})
        wait_until(lambda: sim.events(kind), what="the event over WebSocket")


def test_the_older_spellings_of_the_naming_table_still_work(sim: Sim, make_device: MakeDevice) -> None:
    # "mqtt-ws" is "mqtt-websocket", ws_url= is mqtt_ws_url= (without it the URL would be
    # wss://, which the simulator does not serve).
    with make_device("mqtt-ws", mqtt_ws_url=None, ws_url=sim.ws_url) as device:
        assert device.transport == "mqtt-websocket"
        device.connect(timeout=10)
    # tls=False is plain=True: the simulator's MQTT port speaks no TLS, so this connects only
    # if the older spelling is taken.
    with make_device("mqtt", plain=False, tls=False) as device:
        device.connect(timeout=10)


def test_a_wrong_key_raises_auth_error(sim: Sim, transport: str) -> None:
    device = mode.Device(1001, "v1.wrong", **sim.device_options(transport))
    with pytest.raises(mode.AuthError, match="device 1001"):
        device.connect(timeout=10)
    with pytest.raises(mode.ClosedError):
        device.connect()


def test_an_unreachable_cloud_raises_timeout_error() -> None:
    device = mode.Device(1001, "v1.key", host="127.0.0.1", port=1, plain=True, backoff_unit=0.05)
    with pytest.raises(mode.TimeoutError, match="did not connect"):
        device.connect(timeout=0.5)
    assert isinstance(mode.TimeoutError("x"), TimeoutError)


def test_bad_arguments_raise_errors_that_say_what_to_do(make_device: MakeDevice) -> None:
    with pytest.raises(ValueError, match="transport"):
        mode.Device(1001, "k", transport="carrier-pigeon")
    with pytest.raises(mode.ConfigError, match="API key is empty"):
        mode.Device(1001, "")
    with pytest.raises(ValueError, match="client_cert and client_key"):
        mode.Device(1001, "k", client_cert="c.pem")
    with make_device() as device:
        with pytest.raises(ValueError, match="qos 2"):
            device.send_event("x", {}, qos=2)
        with pytest.raises(TypeError, match="dict"):
            device.send_event("x", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="set is not JSON"):
            device.send_event("x", {"s": {1}})
        with pytest.raises(ValueError, match="NaN"):
            device.kv.set("k", float("nan"))
        with pytest.raises(mode.InvalidArgumentError, match="event type"):
            device.send_event("", {})
        with pytest.raises(mode.InvalidArgumentError, match="empty"):
            device.kv.set("", 1)


def test_close_is_idempotent_and_later_calls_raise_closed_error(make_device: MakeDevice, transport: str) -> None:
    device = make_device(transport)
    device.connect()
    device.close()
    device.close()
    with pytest.raises(mode.ClosedError):
        device.send_event("late", {})
    with pytest.raises(mode.ModeError):
        device.info()
    assert list(device.commands(timeout=5)) == []  # ends at once: the device is closed


def test_the_device_reconnects_after_the_cloud_drops_it(sim: Sim, make_device: MakeDevice, transport: str) -> None:
    device = make_device(transport)
    states: list[bool] = []
    device.on_connection(lambda up, _reason: states.append(up))
    with device:
        sim.console("drop 1001")
        wait_until(lambda: states.count(True) >= 2, what="the reconnection")
        kind = unique("after-drop")
        device.send_event(kind, {})
        wait_until(lambda: sim.events(kind), what="an event after the reconnect")
    assert False in states


def test_a_handler_that_raises_is_logged_and_the_device_keeps_running(
    sim: Sim, make_device: MakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    device = make_device()
    later: list[str] = []

    @device.on_command
    def broken(command: mode.Command) -> None:
        raise RuntimeError(f"boom on {command.action}")

    device.on_command(lambda command: later.append(command.action))
    with caplog.at_level(logging.ERROR, logger="mode"), device:
        sim.console('command 1001 {"action":"first","parameters":{}}')
        sim.console('command 1001 {"action":"second","parameters":{}}')
        wait_until(lambda: later == ["first", "second"], what="both commands past the broken handler")
        kind = unique("still-alive")
        device.send_event(kind, {})
        wait_until(lambda: sim.events(kind), what="an event after the exceptions")
    messages = [r for r in caplog.records if r.name == "mode" and "raised" in r.getMessage()]
    assert len(messages) == 2
    assert messages[0].exc_info is not None and "boom on first" in str(messages[0].exc_info[1])


def test_handlers_may_call_every_method_of_the_device(sim: Sim, make_device: MakeDevice, transport: str) -> None:
    device = make_device(transport)
    results: dict[str, Any] = {}
    done = threading.Event()
    key = unique("reentrant")

    @device.on_command
    def handle(command: mode.Command) -> None:
        device.send_event(command.action, {"echo": command.parameters})
        device.kv.set(key, 1)
        results["info"] = device.info()
        results["stats"] = device.stats()
        results["kv"] = dict(device.kv)
        if transport == "mqtt":
            results["bulk"] = device.bulk_request("echo", {"from": "handler"}, timeout=10)
        done.set()

    with device:
        action = unique("re")
        sim.console(f'command 1001 {{"action":"{action}","parameters":{{"x":1}}}}')
        assert done.wait(20)
        wait_until(lambda: sim.events(action), what="the handler's event")
        wait_until(lambda: device.kv.get(key) == 1, what="the handler's kv write")
    assert results["info"]["id"] == 1001
    if transport == "mqtt":
        assert results["bulk"].payload == {"from": "handler"}


def test_a_handler_may_close_its_own_device(sim: Sim, make_device: MakeDevice) -> None:
    device = make_device()
    closed = threading.Event()

    @device.on_command
    def handle(_command: mode.Command) -> None:
        device.close(timeout=2)
        closed.set()

    with device:
        sim.console('command 1001 {"action":"close-yourself","parameters":{}}')
        assert closed.wait(10)
    with pytest.raises(mode.ClosedError):
        device.send_event("x", {})


def test_a_send_waiting_for_queue_room_ends_with_closed_error_when_the_device_closes() -> None:
    # Never connects (port 1): the first event fills the queue, the second waits for room,
    # with no end but the close, which must wake it at once.
    device = mode.Device(1001, "v1.key", host="127.0.0.1", port=1, plain=True, backoff_unit=0.05,
                         queue_size=1, full_queue_policy="block")
    device.connect(timeout=None)
    device.send_event("fills-the-queue", {})
    outcome: list[BaseException] = []

    def waits_for_room() -> None:
        try:
            device.send_event("waits-for-room", {})
        except BaseException as err:  # noqa: BLE001 - checked below
            outcome.append(err)

    sender = threading.Thread(target=waits_for_room)
    sender.start()
    started = time.monotonic()
    with pytest.raises(mode.TimeoutError, match="undelivered|not delivered"):
        device.close(timeout=0)
    sender.join(30)
    assert not sender.is_alive(), "the send still waits after the close"
    assert time.monotonic() - started < 10
    assert len(outcome) == 1 and isinstance(outcome[0], mode.ClosedError), outcome


def test_a_blocking_call_ends_with_closed_error_when_the_native_client_shuts_down() -> None:
    # The native wait's own way out (what `Device.close` reaches after the core client closed,
    # and a dropped client without close): a shutdown wakes a wait the core would not end (a
    # bulk request to a cloud that never answers, 60 s). Had the shutdown come before the call
    # reached its wait, the call fails at once too: either way, ClosedError within seconds.
    device = mode.Device(1001, "v1.key", host="127.0.0.1", port=1, plain=True, backoff_unit=0.05)
    device.connect(timeout=None)
    outcome: list[BaseException] = []

    def request() -> None:
        try:
            device.bulk_request("nobody", {}, timeout=60)
        except BaseException as err:  # noqa: BLE001 - checked below
            outcome.append(err)

    caller = threading.Thread(target=request)
    caller.start()
    started = time.monotonic()
    device._native.shutdown(0.0)
    caller.join(30)
    assert not caller.is_alive(), "the call still waits after the shutdown"
    assert time.monotonic() - started < 10
    assert len(outcome) == 1 and isinstance(outcome[0], mode.ClosedError), outcome
    device.close(timeout=0)


def test_ten_threads_send_at_once(sim: Sim, make_device: MakeDevice, transport: str) -> None:
    kind = unique("threads")
    per_thread = 100 if transport == "mqtt" else 20
    device = make_device(transport)
    device.connect()
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def send(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                device.send_event(kind, {"thread": n, "i": i})
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    device.close(timeout=30)
    events = wait_until(lambda: len(sim.events(kind)) == 10 * per_thread and sim.events(kind),
                        timeout=20, what="every thread's events")
    for n in range(10):
        mine = [e["eventData"]["i"] for e in events if e["eventData"]["thread"] == n]
        assert mine == list(range(per_thread)), "each thread's events arrive in its order"


def test_a_full_queue_raises_queue_full_error_under_the_error_policy(sim: Sim) -> None:
    # Never connected (nothing listens on port 1): the queue fills and stays full.
    device = mode.Device(1001, "v1.key", host="127.0.0.1", port=1, plain=True, queue_size=2,
                         full_queue_policy="error", backoff_unit=0.05)
    device.connect(timeout=None)
    try:
        device.send_event("a", {})
        device.send_event("b", {})
        with pytest.raises(mode.QueueFullError, match="queue_size"):
            device.send_event("c", {})
    finally:
        with pytest.raises(mode.TimeoutError, match="not delivered"):
            device.close(timeout=0.2)


def test_the_device_repr_and_json_of_values(make_device: MakeDevice) -> None:
    device = make_device()
    assert "not connected" in repr(device)
    with device:
        assert "connected" in repr(device)
        assert json.loads(json.dumps(device.kv.snapshot())) == device.kv.snapshot()


def test_core_logs_reach_the_mode_logger(make_device: MakeDevice, caplog: pytest.LogCaptureFixture) -> None:
    # The simulator refuses keys with spaces (400); over HTTP the refusal is mode-core's to log.
    with caplog.at_level(logging.INFO, logger="mode"):
        with make_device("http") as device:
            device.kv.set("not a valid key", 1)
            wait_until(
                lambda: any(r.name == "mode.core" and "refused" in r.getMessage() for r in caplog.records),
                what="mode-core's warning in logging",
            )
    refused = [r for r in caplog.records if r.name == "mode.core" and "refused" in r.getMessage()]
    assert refused[0].levelno == logging.WARNING
    assert "v1.demo-device-1001" not in caplog.text, "the API key never shows in a log"


def test_a_forgotten_device_and_runtime_stop_their_threads(sim: Sim) -> None:
    import gc

    # The default runtime's two threads stay for the process (other tests' devices share it).
    mode.default_runtime()
    before = settled_mode_threads()
    runtime = mode.Runtime()
    device = mode.Device(1002, "v1.demo-device-1002", runtime=runtime, **sim.device_options("mqtt"))
    device.connect()
    assert settled_mode_threads() == before + 2  # the runtime's IO thread and its dispatcher
    del device, runtime
    gc.collect()
    wait_until(lambda: mode_threads() == before, what="the forgotten runtime's threads to end")


def test_a_forgotten_device_on_the_default_runtime_costs_no_thread(sim: Sim) -> None:
    import gc

    mode.default_runtime()
    before = settled_mode_threads()
    device = mode.Device(1002, "v1.demo-device-1002", **sim.device_options("mqtt"))
    device.connect()
    assert mode_threads() == before
    del device
    gc.collect()
    # Forgotten, it disconnects: the simulator sees no live connection of 1002 any more.
    wait_until(lambda: sim.admin("GET", "/admin/devices/1002/connections")["live"] == 0,
               what="the forgotten device to disconnect")


def test_closing_while_other_threads_wait_fails_their_calls_cleanly(make_device: MakeDevice) -> None:
    device = make_device("mqtt")
    device.connect()
    outcomes: list[BaseException] = []
    stop = threading.Event()
    # Every thread has finished one round trip, so each is inside the library's waits, round
    # after round, when the device closes: the event waited for, not a pause.
    served = threading.Barrier(5)

    def wait_forever() -> None:
        try:
            device.bulk_request("echo", {}, timeout=5)
            served.wait(10)
            while not stop.is_set():
                device.bulk_request("echo", {}, timeout=5)
                device.info()
        except BaseException as err:  # noqa: BLE001 - what ends the loop is the point
            outcomes.append(err)

    threads = [threading.Thread(target=wait_forever) for _ in range(4)]
    for t in threads:
        t.start()
    served.wait(10)
    device.close(timeout=1)
    stop.set()
    for t in threads:
        t.join(10)
    assert all(isinstance(e, mode.ModeError) for e in outcomes), outcomes
