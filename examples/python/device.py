#!/usr/bin/env python3
"""A MODE device in Python: sends an event every second, answers commands, prints every change
of its DDP key-value mirror. Against a local mode-sim:

    cargo run -p mode-sim                     # prints its ports, devices and keys
    python examples/python/device.py --port 1883              # MQTT
    python examples/python/device.py --transport http --api-url http://127.0.0.1:8080

then, on mode-sim's console: `command 1001 {"action":"blink","parameters":{"times":3}}` or
`kv 1001 color "red"`. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import logging
import time

import mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device-id", type=int, default=1001)
    parser.add_argument("--key", default="v1.demo-device-1001", help="the device's API key")
    parser.add_argument("--transport", choices=["mqtt", "mqtt-websocket", "http"], default="mqtt")
    parser.add_argument("--host", default="127.0.0.1", help="MQTT host")
    parser.add_argument("--port", type=int, default=1883, help="MQTT port")
    parser.add_argument("--api-url", default="http://127.0.0.1:8080", help="REST base URL")
    parser.add_argument("--mqtt-ws-url", default=None, help="MQTT-over-WebSocket URL")
    parser.add_argument("--tls", action="store_true", help="use TLS (the real cloud)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    options: mode.DeviceOptions = {"transport": args.transport, "plain": not args.tls, "api_url": args.api_url}
    if args.transport == "mqtt":
        options.update({"host": args.host, "port": args.port})
    elif args.transport == "mqtt-websocket" and args.mqtt_ws_url:
        options["mqtt_ws_url"] = args.mqtt_ws_url
    device = mode.Device(args.device_id, args.key, **options)

    @device.on_command
    def on_command(command: mode.Command) -> None:
        print(f"command {command.action} {command.parameters}", flush=True)
        # Calling the device from a handler is fine: answer, and remember it in the DDP.
        device.send_event("commandDone", {"action": command.action})
        device.kv.set("lastCommand", command.action)

    @device.on_kv_change
    def on_kv_change(change: mode.KvChange) -> None:
        if change.deleted:
            print(f"kv {change.key} deleted (was {change.previous!r})", flush=True)
        else:
            print(f"kv {change.key} = {change.value!r}", flush=True)

    @device.on_connection
    def on_connection(connected: bool, reason: "str | None") -> None:
        print("connected" if connected else f"disconnected: {reason}", flush=True)

    with device:
        print(f"device {args.device_id} is up; mirror: {dict(device.kv)}", flush=True)
        sent = 0
        try:
            while args.count == 0 or sent < args.count:
                device.send_event("heartbeat", {"n": sent, "uptime": time.monotonic()})
                sent += 1
                print(f"sent heartbeat {sent}", flush=True)
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        print(f"stats: {device.stats()}", flush=True)


if __name__ == "__main__":
    main()
