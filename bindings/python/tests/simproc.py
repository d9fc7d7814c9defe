"""A mode-sim subprocess for the tests and the benchmark: free ports, the admin API on, its
console on a stdin pipe, its banner parsed for the addresses; with TLS (``make_certs`` writes a
private PKI) on every listener, and client certificates required if asked."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
import urllib.request
from typing import Any, Callable, Optional

ROOT = pathlib.Path(__file__).resolve().parents[3]
ADMIN_KEY = "test-admin-key"
KEYS = {1001: "v1.demo-device-1001", 1002: "v1.demo-device-1002"}


def sim_binary() -> str:
    explicit = os.environ.get("MODE_SIM")
    if explicit:
        return explicit
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "mode-sim")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def mode_threads() -> int:
    """Library threads by name (the IO runtime's "mode-io", the "mode-dispatch" thread)."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                names.append(comm.read().strip())
        except FileNotFoundError:  # it ended while we listed
            pass
    return sum(name.startswith("mode-") for name in names)


def settled_mode_threads() -> int:
    """``mode_threads()`` once it held still for 0.2 s (new threads name themselves only once
    they run; an earlier test's may still be ending)."""
    last, since = mode_threads(), time.monotonic()
    while time.monotonic() - since < 0.2:
        time.sleep(0.01)
        now = mode_threads()
        if now != last:
            last, since = now, time.monotonic()
    return last


class Sim:
    """A running mode-sim: its ports, its console, its admin API."""

    def __init__(self, workdir: pathlib.Path, extra_args: tuple[str, ...] = (), mqtt_port: int = 0) -> None:
        """``mqtt_port`` 0: a free port; a port of a killed simulator brings it back there."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path = workdir / "sim.out"
        self.err_path = workdir / "sim.err"
        binary = sim_binary()
        if not os.path.exists(binary):
            raise RuntimeError(f"mode-sim not found at {binary}: run `cargo build -p mode-sim` "
                               "(with the same CARGO_TARGET_DIR) or set MODE_SIM to the binary")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "--mqtt-port", str(mqtt_port), "--ws-port", "0", "--http-port", "0",
                 "--tls-port", "0", "--wss-port", "0", "--https-port", "0",
                 "--admin-key", ADMIN_KEY, *extra_args],
                stdin=subprocess.PIPE, stdout=out, stderr=err,
            )
        banner = wait_until(self._banner, 30, "the mode-sim banner")
        self.mqtt_port: int = banner[0]
        self.http_url: str = banner[1]
        self.ws_url: str = banner[2]
        # With --tls-cert: the TLS twins' ports (the certificate names localhost).
        self.tls_ports: dict[str, int] = {}
        for line in self.out_path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] in ("MQTT/TLS", "MQTT/wss", "HTTPS"):
                address = fields[1].split("://")[-1].split("/")[0]
                self.tls_ports[fields[0]] = int(address.rsplit(":", 1)[1])

    def _banner(self) -> Optional[tuple[int, str, str]]:
        if self.proc.poll() is not None:
            raise RuntimeError(f"mode-sim exited: {self.err_path.read_text()}")
        mqtt = http = ws = None
        for line in self.out_path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "MQTT":
                mqtt = int(fields[1].rsplit(":", 1)[1])
            elif len(fields) >= 2 and fields[0] == "HTTP" and fields[1].startswith("http"):
                http = fields[1]
            elif len(fields) >= 2 and fields[0] == "MQTT/WebSocket":
                ws = fields[1]
        if mqtt and http and ws:
            return mqtt, http, ws
        return None

    def console(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        return self.admin_raw(method, path, None if body is None else json.dumps(body).encode())

    def admin_raw(self, method: str, path: str, data: Optional[bytes]) -> Any:
        """The admin API with ``data`` sent as it is (e.g. a malformed message to publish)."""
        request = urllib.request.Request(
            self.http_url + path, data=data, method=method,
            headers={"Authorization": f"ModeCloud {ADMIN_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def events(self, event_type: str) -> list[dict[str, Any]]:
        """Events of `event_type` the cloud recorded, as home events."""
        return [r["event"] for r in self.admin("GET", "/admin/records/events")
                if r["event"]["eventType"] == event_type]

    def device_options(self, transport: str) -> dict[str, Any]:
        options: dict[str, Any] = {"transport": transport, "plain": True, "api_url": self.http_url,
                                   "backoff_unit": 0.05, "backoff_cap": 0.5}
        if transport == "mqtt":
            options.update(host="127.0.0.1", port=self.mqtt_port)
        elif transport in ("mqtt-websocket", "mqtt-ws"):
            options.update(mqtt_ws_url=self.ws_url)
        return options

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut: no goodbye to any client."""
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def close(self) -> None:
        # The console first: the simulator waits for its stdin to end.
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def fleet_sim(workdir: pathlib.Path, count: int) -> "tuple[Sim, list[tuple[int, str]]]":
    """A mode-sim with ``count`` more devices than the demo's, and their ``(id, key)``: with
    ``--devices N --devices-csv FILE`` when this mode-sim has them, else through a generated
    configuration (the demo project plus the devices, as ``mode-sim/examples/demo.toml``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = workdir / "devices.csv"
    has_flag = "--devices-csv" in subprocess.run([sim_binary(), "--help"], capture_output=True,
                                                  text=True).stdout
    if has_flag:
        sim = Sim(workdir, ("--devices", str(count), "--devices-csv", str(csv_path)))
        return sim, read_devices_csv(csv_path)
    demo = (ROOT / "mode-sim" / "examples" / "demo.toml").read_text()
    devices = [(100_000 + i, f"v1.fleet-device-{100_000 + i}") for i in range(count)]
    extra = "".join(
        f'\n[[project.device]]\nid = {i}\napi_key = "{key}"\nname = "fleet {i}"\n'
        f'tag = "fleet"\ndevice_class = "sensor"\nhome_id = 10\n' for i, key in devices)
    config = workdir / "fleet.toml"
    config.write_text(f"max_connections = {count + 64}\n" + demo + extra)
    csv_path.write_text("device_id,api_key,project_id,home_id\n"
                        + "".join(f"{i},{key},1,10\n" for i, key in devices))
    return Sim(workdir, ("--config", str(config))), devices


def read_devices_csv(path: pathlib.Path) -> "list[tuple[int, str]]":
    """``(device_id, api_key)`` of each row of a ``device_id,api_key,...`` CSV."""
    rows = path.read_text().splitlines()
    return [(int(row.split(",")[0]), row.split(",")[1]) for row in rows[1:] if row.strip()]


def make_certs(directory: pathlib.Path) -> pathlib.Path:
    """Writes the TLS tests' private PKI (tests/tls/make-certs.sh: ca.pem, server.pem/.key for
    localhost, client.pem/.key and other-client.pem/.key for device 1001) into ``directory``."""
    subprocess.run(["bash", str(ROOT / "tests" / "tls" / "make-certs.sh"), str(directory)], check=True)
    return directory
