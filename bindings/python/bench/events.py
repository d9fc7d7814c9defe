#!/usr/bin/env python3
"""Events per second from Python: `mode.Device.send_event` against the same events published
with paho-mqtt, to the same mode-sim, in one run. Each figure is N events from the first send
until the last is acknowledged (QoS 1: PUBACK) or written (QoS 0), JSON encoding included on
both sides. Build the extension and the simulator in release mode first:

    (cd bindings/python && maturin develop --release) && cargo build --release -p mode-sim
    python bindings/python/bench/events.py [--events 20000]
"""

from __future__ import annotations

import argparse
import os
import json
import pathlib
import sys
import tempfile
import threading
import time
import uuid

import paho.mqtt
import paho.mqtt.client as mqtt

import mode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from simproc import KEYS, Sim, sim_binary  # noqa: E402


def bench_mode(sim: Sim, n: int, qos: int, kind: str) -> float:
    with mode.Device(1001, KEYS[1001], host="127.0.0.1", port=sim.mqtt_port, plain=True,
                     api_url=sim.http_url, queue_size=max(n, 10_000)) as device:
        base = device.stats().messages_acked
        started = time.perf_counter()
        for i in range(n):
            device.send_event(kind, {"i": i, "v": 1.5}, qos)
        while device.stats().messages_acked - base < n:
            time.sleep(0.0005)
        return time.perf_counter() - started


def bench_paho(sim: Sim, n: int, qos: int, kind: str) -> float:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311,
                         clean_session=True)
    client.username_pw_set("1002", KEYS[1002])
    client.max_inflight_messages_set(100)  # the same window as mode's default
    done = threading.Event()
    published = 0
    connected = threading.Event()

    def on_publish(*_args: object) -> None:
        nonlocal published
        published += 1
        if published == n:
            done.set()

    client.on_publish = on_publish
    client.on_connect = lambda *_args: connected.set()
    client.connect("127.0.0.1", sim.mqtt_port, keepalive=60)
    client.loop_start()
    assert connected.wait(10), "paho did not connect"
    topic = "/devices/1002/event"
    started = time.perf_counter()
    for i in range(n):
        payload = json.dumps({"eventType": kind, "eventData": {"i": i, "v": 1.5}}).encode()
        client.publish(topic, payload, qos=qos)
    assert done.wait(600), f"paho published {published} of {n}"
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    n = args.events
    if "MODE_SIM" not in os.environ:  # the release simulator when built: it must not be the limit
        release = pathlib.Path(sim_binary()).parents[1] / "release" / "mode-sim"
        os.environ["MODE_SIM"] = str(release if release.exists() else sim_binary())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sim = Sim(pathlib.Path(tmp))
        try:
            for qos in (0, 1):
                run = uuid.uuid4().hex[:6]
                t_mode = bench_mode(sim, n, qos, f"bench-mode-{run}")
                t_paho = bench_paho(sim, n, qos, f"bench-paho-{run}")
                recorded = {r["event"]["eventType"] for r in sim.admin("GET", "/admin/records/events")}
                assert f"bench-mode-{run}" in recorded and (qos == 0 or f"bench-paho-{run}" in recorded)
                rows.append((qos, t_mode, t_paho))
        finally:
            sim.close()
    print(f"\n{n} events per run, one mode-sim, Python {sys.version.split()[0]}, mode {mode.__version__}, paho-mqtt {paho.mqtt.__version__}, sim {os.environ['MODE_SIM']}")
    print(f"| {'QoS':>3} | {'mode.Device ev/s':>16} | {'paho-mqtt ev/s':>14} | {'ratio':>5} |")
    print(f"|{'-' * 5}|{'-' * 18}|{'-' * 16}|{'-' * 7}|")
    for qos, t_mode, t_paho in rows:
        print(f"| {qos:>3} | {n / t_mode:>16,.0f} | {n / t_paho:>14,.0f} | {t_paho / t_mode:>5.1f} |")


if __name__ == "__main__":
    main()
