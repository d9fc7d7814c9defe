"""mode.Session and mode.Mirror: the protocol without IO (no sockets here)."""

from __future__ import annotations

import json

import pytest

import mode


def test_a_session_lists_its_topics_and_encodes_what_the_device_sends() -> None:
    session = mode.Session(1001, request_seed=7)
    assert session.device_id == 1001
    assert session.subscriptions() == ["/devices/1001/command", "/devices/1001/kv"]
    topic, payload, qos = session.event("boot", {"n": 2**80, "f": 0.5})
    assert (topic, qos) == ("/devices/1001/event", 1)
    assert json.loads(payload) == {"eventType": "boot", "eventData": {"n": 2**80, "f": 0.5}}
    assert b"1208925819614629174706176" in payload  # exact digits, no float on the way
    assert session.kv_set("k", [1, None]) == ("/devices/1001/kv", b'{"action":"set","key":"k","value":[1,null]}', 1)
    assert session.kv_delete("k") == ("/devices/1001/kv", b'{"action":"delete","key":"k"}', 1)
    assert session.bulk_data("echo", b"\x00", qos=0) == ("/devices/1001/bulkData/echo", b"\x00", 0)


def test_a_bulk_request_watches_its_label_and_its_response_is_recognised() -> None:
    session = mode.Session(1001, request_seed=1)
    request_id, (topic, payload, qos) = session.bulk_request("echo", {"q": 1})
    assert topic == "/devices/1001/bulkData/echo/request" and qos == 1
    assert json.loads(payload)["requestId"] == request_id
    assert "/devices/1001/bulkData/echo/response" in session.subscriptions()
    response = session.handle(
        "/devices/1001/bulkData/echo/response",
        json.dumps({"requestId": request_id, "status": "OK", "payload": {"q": 1}}),
    )
    assert isinstance(response, mode.BulkResponse)
    assert (response.request_id, response.status, response.payload) == (request_id, "OK", {"q": 1})


def test_handle_classifies_commands_kv_sync_and_strangers() -> None:
    session = mode.Session(1001)
    session.on_subscribed()
    command = session.handle("/devices/1001/command", b'{"action":"go","parameters":{"n":18446744073709551617}}')
    assert command == mode.Command("go", {"n": 2**64 + 1})
    reload = b'{"action":"reload","rev":5,"numItems":2,"items":[{"key":"a","value":1},{"key":"b","value":"x"}]}'
    changes = session.handle("/devices/1001/kv", reload)
    assert isinstance(changes, list) and [c.key for c in changes] == ["a", "b"]
    assert session.kv_snapshot() == {"a": 1, "b": "x"} and session.kv_rev == 5
    assert session.handle("/devices/1001/kv", b'{"action":"set","rev":4,"key":"a","value":9}') == []
    assert session.kv_get("a") == 1
    assert session.handle("/devices/1002/command", b"{}") is None
    with pytest.raises(mode.ProtocolError, match="command"):
        session.handle("/devices/1001/command", b"not json")


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


def test_values_that_are_not_json_are_refused() -> None:
    session = mode.Session(1)
    with pytest.raises(TypeError, match="bytes is not JSON"):
        session.kv_set("k", b"raw")
    with pytest.raises(TypeError, match="keys must be str"):
        session.event("e", {1: 2})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="qos"):
        session.event("e", {}, qos=2)
    with pytest.raises(mode.InvalidArgumentError, match="label"):
        session.bulk_data("a/b", b"")
    assert json.loads(session.kv_set("k", (1, True, None))[1])["value"] == [1, True, None]
