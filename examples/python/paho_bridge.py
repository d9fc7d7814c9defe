#!/usr/bin/env python3
"""A device that keeps its own MQTT client (paho-mqtt) and lets libmode do the protocol:
`mode.Session` names the topics, encodes what the device publishes and interprets what arrives;
its DDP mirror stays true by revision. No socket is libmode's here.

    python examples/python/paho_bridge.py --port 1883 [--run-for 10] [--set color='"red"']
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

import mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device-id", type=int, default=1001)
    parser.add_argument("--key", default="v1.demo-device-1001")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--run-for", type=float, default=0, help="seconds to run (0: until Ctrl-C)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="write a DDP key once up")
    parser.add_argument("--bulk", default=None, metavar="LABEL", help="send one bulk request to LABEL once up")
    args = parser.parse_args()

    session = mode.Session(args.device_id)
    if args.bulk:
        session.watch_bulk_responses(args.bulk)  # so the first SUBSCRIBE includes its responses
    lock = threading.Lock()  # paho calls back on its network thread; the session is not shared
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set(str(args.device_id), args.key)

    def publish(out: "tuple[str, bytes, int]") -> None:
        topic, payload, qos = out
        client.publish(topic, payload, qos=qos)

    def on_connect(client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            print(f"refused: {reason}", flush=True)
            return
        with lock:
            subscriptions = session.subscriptions()
            session.on_subscribed()  # the reload that follows is the new truth
        client.subscribe([(topic, 0) for topic in subscriptions])
        print(f"subscribed {' '.join(subscriptions)}", flush=True)
        with lock:
            publish(session.event("bridgeUp", {"via": "paho-mqtt"}))
            for item in args.set:
                key, value = item.split("=", 1)
                publish(session.kv_set(key, json.loads(value)))
            if args.bulk:
                request_id, out = session.bulk_request(args.bulk, {"hello": "module"})
                print(f"bulk request {request_id}", flush=True)
                publish(out)

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with lock:
            try:
                incoming = session.handle(message.topic, message.payload)
            except mode.ProtocolError as err:
                print(f"bad message on {message.topic}: {err}", flush=True)
                return
            if isinstance(incoming, mode.Command):
                print(f"command {incoming.action} {json.dumps(incoming.parameters)}", flush=True)
                publish(session.event("commandDone", {"action": incoming.action}))
            elif isinstance(incoming, mode.BulkResponse):
                print(f"bulk response {incoming.status} {json.dumps(incoming.payload)}", flush=True)
            elif isinstance(incoming, list):
                for change in incoming:
                    if change.deleted:
                        print(f"kv {change.key} deleted", flush=True)
                    else:
                        print(f"kv {change.key} = {json.dumps(change.value)}", flush=True)
                print(f"mirror rev {session.kv_rev}: {json.dumps(session.kv_snapshot())}", flush=True)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    try:
        if args.run_for:
            time.sleep(args.run_for)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
        print("bye", flush=True)


if __name__ == "__main__":
    main()
