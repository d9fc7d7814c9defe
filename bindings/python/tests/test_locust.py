"""mode.locust under Locust itself: a headless master and two worker processes drive 1,000
devices of a mode-sim (examples/python/locustfile.py), and Locust's counts must be what the
simulator recorded."""

from __future__ import annotations

import collections
import csv
import json
import importlib.util
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from simproc import ROOT, fleet_sim

# Looked up, not imported: importing locust monkey-patches this whole process for gevent.
if importlib.util.find_spec("locust") is None:
    pytest.skip("mode.locust needs locust: pip install 'mode-sdk[locust]'", allow_module_level=True)

DEVICES = 1000
RUN_SECONDS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stats_rows(path: pathlib.Path) -> "dict[tuple[str, str], dict[str, str]]":
    with open(path, newline="") as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


SHAPE = f"""
import collections
from locust import LoadTestShape, events

fired = collections.Counter()


per_device = collections.Counter()


@events.request.add_listener
def count(request_type, exception, context=None, **kw):
    fired[(request_type, exception is None)] += 1
    if request_type == "EVENT":
        per_device[(context or {{}}).get("device_id")] += 1


@events.quitting.add_listener
def report(environment, **kw):
    import json, os
    print("fired:", dict(fired), flush=True)
    print("per_device:", json.dumps(per_device), flush=True)


class RunThenStop(LoadTestShape):
    # {DEVICES} users for {RUN_SECONDS} s, then none for 5 s: the workers stop their users
    # (finishing the send in flight) and report while the master still listens; then the end.
    def tick(self):
        run_time = self.get_run_time()
        if run_time < {RUN_SECONDS}:
            return ({DEVICES}, 500)
        if run_time < {RUN_SECONDS} + 5:
            return (0, 1000)
        return None
"""


@pytest.mark.timeout(90)
def test_a_distributed_locust_run_of_1000_devices_reports_what_the_cloud_recorded(tmp_path: pathlib.Path) -> None:
    sim, creds = fleet_sim(tmp_path / "sim", DEVICES)
    procs: list[subprocess.Popen[bytes]] = []
    (tmp_path / "shape.py").write_text(SHAPE)
    try:
        env = dict(os.environ, MODE_DEVICES_CSV=str(tmp_path / "sim" / "devices.csv"))
        port = free_port()
        files = f"{ROOT / 'examples' / 'python' / 'locustfile.py'},{tmp_path / 'shape.py'}"
        locust = [sys.executable, "-m", "locust", "-f", files]
        started = time.monotonic()

        def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
            with open(tmp_path / f"{name}.out", "wb") as out:
                proc = subprocess.Popen(locust + args, env=env, stdout=out, stderr=subprocess.STDOUT)
            procs.append(proc)
            return proc

        master = start("master", ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                                  "--expect-workers", "2", "--headless", "--stop-timeout", "10",
                                  "--host", f"mqtt://127.0.0.1:{sim.mqtt_port}", "--csv", str(tmp_path / "locust")])
        workers = [start(f"worker{n}", ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)])
                   for n in range(2)]
        code = master.wait(timeout=75)
        for worker in workers:
            worker.wait(timeout=10)
        took = time.monotonic() - started
        log = (tmp_path / "master.out").read_text()
        workers_log = "".join((tmp_path / f"worker{n}.out").read_text() for n in range(2))
        assert code == 0, log[-3000:] + workers_log[-3000:]
        assert "Traceback" not in workers_log, workers_log[-3000:]

        stats = stats_rows(tmp_path / "locust_stats.csv")
        connects = stats[("CONNECT", "connect")]
        events = stats[("EVENT", "locust")]
        writes = stats[("KV_SET", "locust")]
        assert int(connects["Request Count"]) == DEVICES and int(connects["Failure Count"]) == 0
        assert int(events["Failure Count"]) == 0 and int(writes["Failure Count"]) == 0

        # What the simulator recorded: every acknowledged send, from 1,000 distinct devices.
        recorded = [e for e in sim.events("locust")]
        kv_ops = [op for op in sim.admin("GET", "/admin/records/kvOps")
                  if op["source"] == "device" and op["update"].get("key") == "locust"]
        (tmp_path / "recorded.json").write_text(json.dumps(recorded))
        sent = collections.Counter((e["originDeviceId"], e["eventData"]["n"]) for e in recorded)
        duplicates = sum(c - 1 for c in sent.values())
        assert int(events["Request Count"]) == len(recorded), f"{duplicates} recorded twice"
        assert int(writes["Request Count"]) == len(kv_ops)
        per_device = collections.Counter(str(e["originDeviceId"]) for e in recorded)
        per_device.update(str(op["deviceId"]) for op in kv_ops)
        assert set(per_device) == {str(device_id) for device_id, _ in creds}, "each user is its own device"
        # About one send per user per second (constant_pacing(1)) for the run.
        sends = len(recorded) + len(kv_ops)
        assert sends > DEVICES * RUN_SECONDS * 0.5, sends
        print(f"locust: {sends} sends in {RUN_SECONDS} s ({sends / RUN_SECONDS:.0f}/s), "
              f"event median {events['Median Response Time']} ms, p95 {events['95%']} ms, "
              f"whole test {took:.1f} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        sim.close()
