"""mode.Engine driven by simulated time and a simulated broker (no sockets, no sleeps), and
mode.Mirror: the protocol without IO."""

from __future__ import annotations

import json
from typing import Any

import pytest

import mode

DEVICE = 1001
COMMAND, KV, EVENT = (f"/devices/{DEVICE}/{kind}" for kind in ("command", "kv", "event"))


class Broker:
    """A broker in memory that carries out the engine's transmits: it accepts connections while
    `up`, acknowledges QoS 1 publishes when `acks` (else holds them), and records what reached it."""

    def __init__(self) -> None:
        self.up = True
        self.acks = True
        self.connected = False
        self.received: list[tuple[int, str, bytes, int]] = []
        self.held: list[int] = []
        self.subscriptions: list[list[str]] = []
        self.log: list[str] = []

    def run(self, engine: mode.Engine, now: int) -> None:
        """Carries out every transmit until the engine has nothing more to do."""
        while (transmit := engine.poll_transmit()) is not None:
            self.log.append(transmit[0])
            if transmit[0] == "connect":
                if self.up:
                    self.connected = True
                    engine.connected(now)
                else:
                    engine.disconnected("network", "connection refused", now)
            elif transmit[0] == "subscribe":
                self.subscriptions.append(transmit[1])
                engine.subscribed(now)
            elif transmit[0] == "publish":
                _, id, topic, payload, qos = transmit
                self.received.append((id, topic, payload, qos))
                if self.acks or qos == 0:
                    engine.delivered(id, now)
                else:
                    self.held.append(id)
            elif transmit[0] == "disconnect":
                self.connected = False
                engine.disconnected("network", "closed by the broker after DISCONNECT", now)
            elif transmit[0] == "abort":
                self.connected = False

    def restart(self, engine: mode.Engine, now: int) -> None:
        """The broker goes away: every unacknowledged publish is lost with the connection."""
        self.connected = False
        self.held.clear()
        engine.disconnected("network", "connection reset by peer", now)

    def events_sent(self) -> list[str]:
        return [json.loads(payload)["eventType"] for _, topic, payload, _ in self.received if topic == EVENT]


def events(engine: mode.Engine) -> list[mode.EngineEvent]:
    out = []
    while (event := engine.poll_event()) is not None:
        out.append(event)
    return out


def new_engine(now: int = 0, **options: Any) -> mode.Engine:
    settings: dict[str, Any] = {"seed": 7, "backoff_jitter": 0.0, "backoff_unit_ms": 100}
    settings.update(options)
    return mode.Engine(DEVICE, now, **settings)


def reload(rev: int, items: dict[str, object]) -> bytes:
    return json.dumps({"action": "reload", "rev": rev, "numItems": len(items),
                       "items": [{"key": k, "value": v} for k, v in items.items()]}).encode()


def test_an_engine_connects_subscribes_publishes_and_reports_each_ack() -> None:
    engine, broker = new_engine(), Broker()
    first = engine.send_event("boot", {"n": 2**80})
    second = engine.kv_set("color", "red")
    assert (first, second) == (1, 2)
    broker.run(engine, 10)
    assert broker.log == ["connect", "subscribe", "publish", "publish"]
    assert broker.subscriptions == [[COMMAND, KV]]
    assert broker.received[0][1:] == (EVENT, b'{"eventType":"boot","eventData":{"n":1208925819614629174706176}}', 1)
    assert broker.received[1][1:] == (KV, b'{"action":"set","key":"color","value":"red"}', 1)
    assert events(engine) == [("connected",), ("delivered", first), ("delivered", second)]
    assert engine.is_connected and engine.pending == 0
    engine.handle_publish(KV, reload(3, {"color": "red"}), 11)
    engine.handle_publish(COMMAND, '{"action":"go","parameters":{"n":18446744073709551617}}', 12)
    engine.handle_publish(f"/devices/{DEVICE}/unknown", b"{}", 13)
    engine.handle_publish(COMMAND, b"not json", 14)
    (kv, command, error) = events(engine)
    assert kv[0] == "kv" and kv[1:3] == (3, True)
    assert [(c.key, c.value) for c in kv[3]] == [("color", "red")]
    assert command == ("command", mode.Command("go", {"n": 2**64 + 1}))
    assert error[0] == "error" and error[1] == COMMAND
    assert engine.kv_get("color") == "red" and engine.kv_snapshot() == {"color": "red"} and engine.kv_rev == 3
    assert engine.kv_get("missing", 0) == 0
    stats = engine.stats()
    assert (stats["messages_queued"], stats["messages_acked"], stats["commands_received"]) == (2, 2, 1)


def test_unacknowledged_messages_are_sent_again_in_order_after_a_disconnect() -> None:
    engine, broker = new_engine(max_inflight=2), Broker()
    broker.acks = False
    ids = [engine.send_event(f"e{n}") for n in range(4)]
    broker.run(engine, 0)
    assert broker.events_sent() == ["e0", "e1"], "the in-flight window holds two"
    broker.restart(engine, 50)
    (disconnected,) = [e for e in events(engine) if e[0] == "disconnected"]
    assert disconnected[1:3] == ("network", "connection reset by peer")
    broker.acks = True
    engine.handle_timeout(engine.poll_timeout() or 0)
    broker.run(engine, 150)
    assert broker.events_sent() == ["e0", "e1", "e0", "e1", "e2", "e3"]
    assert [id for id, *_ in broker.received[2:]] == ids, "ids are kept across the re-send"
    assert [e[1] for e in events(engine) if e[0] == "delivered"] == ids
    assert broker.subscriptions == [[COMMAND, KV]] * 2, "resubscribed on the new connection"
    assert engine.stats()["reconnects"] == 1


def test_the_backoff_wait_is_reported_and_no_attempt_comes_before_it() -> None:
    engine, broker = new_engine(backoff_unit_ms=100, backoff_cap_ms=1000), Broker()
    broker.up = False
    now = 0
    waits = []
    for _ in range(5):
        broker.run(engine, now)
        (event,) = events(engine)
        assert event[0] == "disconnected" and event[1] == "network"
        retry_in = event[3]
        assert retry_in is not None
        due = engine.poll_timeout()
        assert due == now + retry_in, "the wait reported is the wait kept"
        engine.handle_timeout(due - 1)
        assert engine.poll_transmit() is None, "no attempt before the wait is over"
        now = due
        engine.handle_timeout(now)
        waits.append(retry_in)
    assert waits == [100, 200, 300, 500, 800], "Fibonacci in units of backoff_unit_ms"
    assert engine.stats()["connection_attempts"] == 6
    broker.up = True
    broker.run(engine, now)
    assert events(engine) == [("connected",)]


def test_a_bulk_request_times_out_at_its_deadline_and_a_late_answer_is_not_a_reply() -> None:
    engine, broker = new_engine(watchdog_ms=0), Broker()
    broker.run(engine, 0)
    events(engine)
    message_id, request_id = engine.bulk_request("echo", {"q": 1}, now_ms=1000, timeout_ms=500)
    broker.run(engine, 1000)
    assert broker.subscriptions[-1] == [f"/devices/{DEVICE}/bulkData/echo/response"], "subscribed before the request"
    assert broker.received[-1][0] == message_id
    assert json.loads(broker.received[-1][2])["requestId"] == request_id
    assert engine.poll_timeout() == 1500
    engine.handle_timeout(1499)
    assert events(engine) == [("delivered", message_id)]
    engine.handle_timeout(1500)
    assert events(engine) == [("bulk_timeout", request_id)]
    assert engine.poll_timeout() is None
    engine.handle_publish(f"/devices/{DEVICE}/bulkData/echo/response",
                          json.dumps({"requestId": request_id, "status": "OK", "payload": {"q": 1}}), 1600)
    (answer,) = events(engine)
    assert answer[0] == "bulk_response"
    _, label, response, is_reply = answer
    assert (label, is_reply) == ("echo", False)
    assert isinstance(response, mode.BulkResponse) and (response.status, response.payload) == ("OK", {"q": 1})


def test_a_bulk_request_answered_in_time_is_a_reply() -> None:
    engine, broker = new_engine(), Broker()
    broker.run(engine, 0)
    _, request_id = engine.bulk_request("echo", now_ms=0, timeout_ms=500)
    broker.run(engine, 0)
    events(engine)
    engine.handle_publish(f"/devices/{DEVICE}/bulkData/echo/response",
                          json.dumps({"requestId": request_id, "status": "OK", "payload": 1}), 10)
    (answer,) = events(engine)
    assert answer[0] == "bulk_response" and answer[3] is True
    engine.handle_timeout(600)
    assert events(engine) == []


def test_close_delivers_what_is_queued_then_unsubscribes_and_disconnects() -> None:
    engine, broker = new_engine(), Broker()
    broker.run(engine, 0)
    events(engine)
    last = engine.send_event("bye")
    engine.close(5000, 100)
    with pytest.raises(mode.ClosedError, match="closed"):
        engine.send_event("too late")
    broker.run(engine, 100)
    assert broker.log[-3:] == ["publish", "unsubscribe", "disconnect"]
    assert events(engine) == [("delivered", last), ("disconnected", "closed", "closed by the application", None),
                              ("closed", 0)]
    assert engine.is_closed and engine.poll_timeout() is None


def test_close_gives_up_at_its_deadline_and_reports_what_was_unsent() -> None:
    engine, broker = new_engine(), Broker()
    broker.up = False
    broker.run(engine, 0)
    events(engine)
    stuck = engine.send_event("never")
    engine.close(2000, 10)
    assert engine.poll_timeout() == 100, "still trying to deliver before the deadline"
    now = 10
    while not engine.is_closed:
        now = engine.poll_timeout() or now
        engine.handle_timeout(now)
        broker.run(engine, now)
    assert now == 2000
    dropped = [e for e in events(engine) if e[0] in ("dropped", "closed")]
    assert dropped == [("dropped", stuck, EVENT, "closed", "still unsent when the connection closed"),
                       ("closed", 1)]


def test_the_journal_and_restore_carry_unconfirmed_messages_to_a_new_engine() -> None:
    engine, broker = new_engine(journal=True), Broker()
    broker.acks = False
    a, b = engine.send_event("a"), engine.send_event("b")
    broker.run(engine, 0)
    engine.delivered(a, 1)
    store: dict[int, tuple[int, str, bytes, int]] = {}
    while (change := engine.poll_journal()) is not None:
        if change[0] == "added":
            store[change[1]] = change[1:]
        else:
            del store[change[1]]
    assert list(store) == [b]
    again, broker = new_engine(journal=True), Broker()
    again.restore(list(store.values()))
    c = again.send_event("c")
    assert c == b + 1, "ids continue after the restored ones"
    broker.run(again, 0)
    assert [(id, json.loads(p)["eventType"]) for id, _, p, _ in broker.received] == [(b, "b"), (c, "c")]
    with pytest.raises(mode.ModeError, match="before any send"):
        again.restore([])


def test_a_full_queue_refuses_or_drops_the_oldest_as_configured() -> None:
    engine = new_engine(queue_size=2)
    engine.send_event("a")
    engine.send_event("b")
    with pytest.raises(mode.QueueFullError, match="queue is full"):
        engine.send_event("c")
    dropping = new_engine(queue_size=2, full_queue="drop-oldest")
    first = dropping.send_event("a")
    dropping.send_event("b")
    dropping.send_event("c")
    assert events(dropping) == [("dropped", first, EVENT, "queue_full", "dropped to make room in a full queue")]


def test_a_refused_message_is_dropped_and_the_rest_go_on() -> None:
    engine, broker = new_engine(), Broker()
    broker.acks = False
    refused, kept = engine.kv_set("k", 1), engine.send_event("x")
    broker.run(engine, 0)
    engine.failed(refused, "invalid key", 5)
    engine.delivered(kept, 6)
    assert [e for e in events(engine) if e[0] != "connected"] == [
        ("dropped", refused, KV, "refused", "refused by the cloud: invalid key"), ("delivered", kept)]
    assert engine.stats()["pending"] == 0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda e: e.send_event("e", {}, qos=2), ValueError, "qos 2 is not possible"),
        (lambda e: e.kv_set("", 1), mode.InvalidArgumentError, "key"),
        (lambda e: e.kv_set("k", b"raw"), TypeError, "bytes is not JSON"),
        (lambda e: e.send_event("e", {1: 2}), TypeError, "keys must be str"),
        (lambda e: e.send_data(b"x" * 2000), mode.InvalidArgumentError, "max_message_size"),
        (lambda e: e.disconnected("closed", "x", 10), ValueError, 'use "auth", "tls" or "network"'),
        (lambda e: e.handle_timeout(5), ValueError, "now_ms 5 is earlier than 10"),
        (lambda e: e.bulk_request("echo", now_ms=10, timeout_ms=0), ValueError, "timeout_ms is 0"),
        (lambda e: e.restore([(0, EVENT, b"", 1)]), ValueError, "id 0 is 0 or given twice"),
    ],
)
def test_misuse_raises_an_exception_that_says_what_to_do(call: object, error: type, match: str) -> None:
    engine = new_engine(10, max_message_size=1000)
    with pytest.raises(error, match=match):
        call(engine)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"queue_size": 0}, "queue_size is 0"),
        ({"max_inflight": 0}, "max_inflight is 0"),
        ({"backoff_unit_ms": 0}, "backoff_unit_ms is 0"),
        ({"backoff_jitter": 1.5}, "backoff_jitter is 1.5"),
        ({"full_queue": "block"}, 'full_queue "block" is unknown'),
    ],
)
def test_a_setting_that_cannot_work_is_a_config_error(options: dict[str, Any], match: str) -> None:
    with pytest.raises(mode.ConfigError, match=match):
        new_engine(**options)


def test_the_mirror_applies_by_revision() -> None:
    mirror = mode.Mirror()
    assert mirror.reloads == 0
    mirror.apply_json('{"action":"reload","rev":10,"items":[{"key":"k","value":{"deep":[1,2]}}]}')
    assert mirror["k"] == {"deep": [1, 2]} and len(mirror) == 1 and "k" in mirror
    (deleted,) = mirror.apply_json(b'{"action":"delete","rev":12,"key":"k"}')
    assert deleted.deleted and deleted.previous == {"deep": [1, 2]} and deleted.value is None
    assert mirror.apply_json(b'{"action":"set","rev":11,"key":"k","value":"late"}') == []
    assert "k" not in mirror and mirror.get("k", 0) == 0
    (added,) = mirror.apply_json(b'{"action":"set","rev":13,"key":"n","value":1e3}')
    assert added.value == 1000.0 and isinstance(added.value, float)
    assert mirror.keys() == ["n"] and mirror.snapshot() == {"n": 1000.0} and mirror.rev == 13
    with pytest.raises(KeyError):
        mirror["k"]
    with pytest.raises(mode.ProtocolError, match="kv sync"):
        mirror.apply_json(b'{"action":"set"}')
