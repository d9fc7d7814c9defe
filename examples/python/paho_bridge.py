#!/usr/bin/env python3
"""A device that keeps its own MQTT client (paho-mqtt) and lets libmode's engine do the protocol:
`mode.Engine` decides when to connect (its backoff), what to subscribe to, what to publish and
when to publish it again; paho-mqtt only carries the packets. One thread, no paho thread: the
loop waits in `client.loop()` until the engine's next timer (`poll_timeout`), as firmware would.

    python examples/python/paho_bridge.py --port 1883 [--events 100] [--run-for 10]
                                          [--set color='"red"'] [--bulk LABEL]

With --events N it sends N QoS 1 "tick" events (one per --interval-ms), closes once all are
delivered and prints a summary; every line it prints says what the engine reported.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from typing import Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import mode

# CONNACK codes that mean the credentials are wrong (MQTT 3.1.1: 4, 5; MQTT 5: 134, 135):
# the engine then waits much longer before trying again.
AUTH_REFUSED = {4, 5, 134, 135}


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Bridge:
    """The engine and the paho client of its current connection (a fresh one per connection,
    so paho carries nothing across connections: re-sending is the engine's job)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.engine = mode.Engine(
            args.device_id, now_ms(), seed=random.getrandbits(64), max_inflight=20,
            backoff_unit_ms=args.backoff_unit_ms, backoff_cap_ms=args.backoff_cap_ms,
            # paho's keepalive finds a dead connection; it does not show us its PINGRESPs, so
            # the engine's watchdog would drop a quiet connection that is alive.
            watchdog_ms=0,
        )
        self.client: Optional[mqtt.Client] = None
        self.attempt_open = False  # a connection the engine knows of: report its end once
        self.ids: dict[int, int] = {}  # paho mid -> engine message id, this connection's
        self.early: set[int] = set()  # mids paho confirmed before publish() returned
        self.ticks: set[int] = set()  # message ids of the tick events not yet delivered
        self.sent = self.delivered = self.reloads = 0
        self.closing = False
        self.down_at: Optional[int] = None  # when the last connection ended (ms)
        self.retry_in: Optional[int] = None  # the wait the engine reported then
        self.stop = threading.Event()  # set by SIGINT/SIGTERM; also what an idle wait waits on

    # -- the engine's work, carried out by paho --------------------------------------------------

    def carry_out(self) -> None:
        while (transmit := self.engine.poll_transmit()) is not None:
            if transmit[0] == "connect":
                self.connect()
            elif transmit[0] == "subscribe":
                print(f"subscribe {' '.join(transmit[1])}", flush=True)
                self.paho().subscribe([(topic, 0) for topic in transmit[1]])
            elif transmit[0] == "unsubscribe":
                self.paho().unsubscribe(transmit[1])
            elif transmit[0] == "publish":
                _, id, topic, payload, qos = transmit
                info = self.paho().publish(topic, payload, qos=qos)
                self.ids[info.mid] = id
                if info.mid in self.early:
                    self.on_publish(self.paho(), None, info.mid, None, None)
            elif transmit[0] == "disconnect":
                self.paho().disconnect()  # on_disconnect reports the end
            elif transmit[0] == "abort":
                self.drop()

    def connect(self) -> None:
        if self.down_at is not None:  # shows the engine's backoff honoured: waited >= backoff
            print(f"connect after {now_ms() - self.down_at} ms, backoff {self.retry_in} ms", flush=True)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311,
                             clean_session=True, reconnect_on_failure=False)
        client.username_pw_set(str(self.args.device_id), self.args.key)
        client.max_inflight_messages_set(20)
        client.on_connect = self.on_connect
        client.on_disconnect = self.on_disconnect
        client.on_subscribe = self.on_subscribe
        client.on_publish = self.on_publish
        client.on_message = self.on_message
        self.client, self.ids, self.early = client, {}, set()
        self.attempt_open = True
        try:
            client.connect(self.args.host, self.args.port, keepalive=10)
        except OSError as err:
            self.lost("network", f"connect to {self.args.host}:{self.args.port}: {err}")

    def paho(self) -> mqtt.Client:
        assert self.client is not None, "the engine asks for work only on a connection"
        return self.client

    def drop(self) -> None:
        """Ends the current connection without telling the engine (it asked, or knows)."""
        client, self.client, self.attempt_open = self.client, None, False
        if client is not None:
            client.on_disconnect = None
            client.disconnect()
            sock = client.socket()
            if sock is not None:
                sock.close()

    def lost(self, kind: Any, text: str) -> None:
        if self.attempt_open:
            self.attempt_open = False
            self.down_at = now_ms()
            self.engine.disconnected(kind, text, self.down_at)
        self.drop()

    # -- what paho saw, told to the engine ------------------------------------------------------

    def on_connect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.lost("auth" if reason.value in AUTH_REFUSED else "network", f"CONNACK refused: {reason}")
        else:
            self.engine.connected(now_ms())

    def on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.lost("network", f"connection lost: {reason}")

    def on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _codes: Any, _p: Any) -> None:
        self.engine.subscribed(now_ms())

    def on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        id = self.ids.pop(mid, None)
        if id is None:
            self.early.add(mid)  # paho can confirm a QoS 0 write inside publish()
        else:
            self.engine.delivered(id, now_ms())

    def on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.engine.handle_publish(message.topic, message.payload, now_ms())

    # -- what the engine tells the application --------------------------------------------------

    def report(self) -> None:
        while (event := self.engine.poll_event()) is not None:
            if event[0] == "connected":
                print("connected", flush=True)
                self.on_up()
            elif event[0] == "disconnected":
                _, kind, text, retry_in = event
                self.retry_in = retry_in
                wait = "" if retry_in is None else f"; retry in {retry_in} ms"
                print(f"disconnected: {kind}: {text}{wait}", flush=True)
            elif event[0] == "command":
                command = event[1]
                print(f"command {command.action} {json.dumps(command.parameters)}", flush=True)
                self.engine.send_event("commandDone", {"action": command.action})
            elif event[0] == "kv":
                _, rev, reload, changes = event
                if reload:
                    self.reloads += 1
                    print(f"kv reload rev {rev}", flush=True)
                for change in changes:
                    if change.deleted:
                        print(f"kv {change.key} deleted", flush=True)
                    else:
                        print(f"kv {change.key} = {json.dumps(change.value)}", flush=True)
                print(f"mirror rev {self.engine.kv_rev}: {json.dumps(self.engine.kv_snapshot())}", flush=True)
            elif event[0] == "bulk_response":
                _, label, response, _ = event
                print(f"bulk response {response.status} {json.dumps(response.payload)}", flush=True)
            elif event[0] == "bulk_timeout":
                print(f"bulk request {event[1]} timed out", flush=True)
            elif event[0] == "delivered" and event[1] in self.ticks:
                self.ticks.discard(event[1])
                self.delivered += 1
                if self.delivered % 20 == 0:
                    print(f"progress: {self.delivered} delivered", flush=True)
            elif event[0] == "dropped":
                print(f"dropped {event[1]} ({event[3]}): {event[4]}", flush=True)
            elif event[0] == "error":
                print(f"bad message on {event[1]}: {event[2]}", flush=True)
            elif event[0] == "closed":
                print(f"closed, {event[1]} unsent", flush=True)

    def on_up(self) -> None:
        if self.engine.stats()["reconnects"] > 0:
            return
        self.engine.send_event("bridgeUp", {"via": "paho-mqtt"})
        for item in self.args.set:
            key, value = item.split("=", 1)
            self.engine.kv_set(key, json.loads(value))
        if self.args.bulk:
            _, request_id = self.engine.bulk_request(self.args.bulk, {"hello": "module"}, now_ms=now_ms(),
                                                     timeout_ms=10_000)
            print(f"bulk request {request_id}", flush=True)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        started = now_ms()
        next_tick: Optional[int] = started if args.events else None
        stop_at = started + int(args.run_for * 1000) if args.run_for else None
        while not self.engine.is_closed:
            self.carry_out()
            self.report()
            self.carry_out()  # what the application just sent
            now = now_ms()
            if next_tick is not None and now >= next_tick and not self.closing:
                self.sent += 1
                self.ticks.add(self.engine.send_event("tick", {"n": self.sent}, qos=1))
                next_tick = now + args.interval_ms if self.sent < args.events else None
            finishing = (args.events and self.sent == args.events and self.engine.pending == 0)
            if (finishing or self.stop.is_set() or (stop_at is not None and now >= stop_at)) and not self.closing:
                self.closing = True
                self.engine.close(now + 5000, now)
                continue
            due = [t for t in (self.engine.poll_timeout(), next_tick) if t is not None]
            wait = max(0, min(due) - now) / 1000 if due else 1.0
            if self.client is not None and self.client.socket() is not None:
                self.client.loop(timeout=min(wait, 1.0))
            else:
                self.stop.wait(min(wait, 1.0))  # no connection: nothing to hear until the timer
            self.engine.handle_timeout(now_ms())
        self.drop()
        stats = self.engine.stats()
        if args.events:
            print(f"sent {self.sent} events, {self.delivered} delivered, {stats['connection_attempts']} "
                  f"connection attempts, {stats['reconnects']} reconnects, {self.reloads} reloads", flush=True)
        print("bye", flush=True)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device-id", type=int, default=1001)
    parser.add_argument("--key", default="v1.demo-device-1001")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--run-for", type=float, default=0, help="seconds to run (0: until Ctrl-C or --events)")
    parser.add_argument("--events", type=int, default=0, help="send this many QoS 1 tick events, then close")
    parser.add_argument("--interval-ms", type=int, default=10, help="between tick events")
    parser.add_argument("--backoff-unit-ms", type=int, default=1000, help="the reconnect schedule's unit")
    parser.add_argument("--backoff-cap-ms", type=int, default=60_000, help="the longest reconnect wait")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="write a DDP key once up")
    parser.add_argument("--bulk", default=None, metavar="LABEL", help="send one bulk request to LABEL once up")
    args = parser.parse_args()
    bridge = Bridge(args)

    def stop(_signum: int, _frame: Any) -> None:
        bridge.stop.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    bridge.run()


if __name__ == "__main__":
    main()
