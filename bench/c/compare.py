#!/usr/bin/env python3
"""Issue 15's C benchmarks side by side in one run, printed as markdown tables (scripts/bench).

Builds bench/c/*.c against target/release/libmode.so (build it first: cargo build --release
-p mode-ffi -p mode-sim; MODE_BENCH_LIB=DIR takes libmode.so and mode-sim from DIR instead, e.g.
a copy that a concurrent build cannot replace mid-run), starts a local mosquitto broker and mode-sim on free ports, then:
  throughput: one device, libmode vs libmosquitto, QoS 0 and 1, in alternating pairs (each first
              in every other pair); the ratio is the median of the pairs' ratios, with its range,
              since one run swings with the neighbours on this machine and drift hits a pair alike;
  profile:    bench/c/profile.sh on each broker: syscalls, context switches and instructions per event;
  fleet:      fleet_mosquitto at each --fleet size on both brokers, plain TCP, and TLS with a
              context per client and with one shared SSL_CTX (the broker restarted for each run).
mode-sim gets its devices from `--devices N --devices-csv FILE` when it has those flags, else
from a generated --config file and CSV. Without the mosquitto broker its rows are skipped.
Standard library only.
"""
import argparse
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
LIB = os.environ.get("MODE_BENCH_LIB", os.path.join(TARGET, "release"))  # libmode.so and mode-sim
OUT = os.path.join(TARGET, "c-bench")
SRC = os.path.join(ROOT, "bench", "c")
WARN = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]


def raise_fd_limit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build():
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(os.path.join(LIB, "libmode.so")):
        sys.exit(f"compare.py: {LIB}/libmode.so is missing: cargo build --release -p mode-ffi")
    cc = lambda name, *args: subprocess.run(
        ["gcc", *WARN, "-o", os.path.join(OUT, name), os.path.join(SRC, name + ".c"), *args], check=True)
    cc("events_libmode", "-I", os.path.join(ROOT, "include"), f"-L{LIB}", "-lmode", f"-Wl,-rpath,{LIB}", "-pthread")
    cc("events_mosquitto", "-lmosquitto", "-pthread")
    cc("fleet_mosquitto", "-lmosquitto", "-lssl", "-lcrypto")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"compare.py: {what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"compare.py: {what} is not listening on {port}")


class Mosquitto:
    """Debian's broker on a free plain port and a free TLS port (the certificates of tests/tls)."""
    name = "mosquitto"

    def __init__(self, work, certs):
        self.port, self.tls_port = free_port(), free_port()
        conf = os.path.join(work, "mosquitto.conf")
        with open(conf, "w") as f:
            # `user`: stay who we are (as root it would become `mosquitto` and not read the key)
            f.write(f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
                    f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    f"listener {self.tls_port} 127.0.0.1\nallow_anonymous true\n"
                    f"certfile {certs}/server.pem\nkeyfile {certs}/server.key\n")
        self.log = open(os.path.join(work, "mosquitto.log"), "w")
        self.proc = subprocess.Popen([shutil.which("mosquitto"), "-c", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)
        wait_port(self.port, self.proc, "mosquitto")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


class ModeSim:
    """mode-sim with N devices, on free ports; `first` is the device the throughput runs use."""
    name = "mode-sim"

    def __init__(self, work, certs, devices, csv):
        sim = os.path.join(LIB, "mode-sim")
        args = [sim, "--mqtt-port", "0", "--ws-port", "0", "--http-port", "0", "--tls-port", "0",
                "--wss-port", "0", "--https-port", "0", "--tls-cert", f"{certs}/server.pem",
                "--tls-key", f"{certs}/server.key"]
        flags = subprocess.run([sim, "--help"], capture_output=True, text=True).stdout
        if "--devices-csv" in flags:
            args += ["--devices", str(devices), "--devices-csv", csv]
        else:  # until mode-sim makes them itself: a project of N devices and their CSV
            args += ["--config", write_fleet(work, devices, csv)]
        self.out_path = os.path.join(work, "sim.out")
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=self.out,
                                     stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
        for _ in range(600):
            text = open(self.out_path).read()
            ports = {m[0]: int(m[1]) for m in re.findall(r"^  (MQTT|MQTT/TLS) +127\.0\.0\.1:(\d+)", text, re.M)}
            if "MQTT" in ports and "MQTT/TLS" in ports and os.path.exists(csv) and os.path.getsize(csv) > 0:
                break
            if self.proc.poll() is not None:
                sys.exit(f"compare.py: mode-sim exited with {self.proc.returncode}")
            time.sleep(0.1)
        else:
            sys.exit("compare.py: mode-sim printed no MQTT ports")
        self.port, self.tls_port = ports["MQTT"], ports["MQTT/TLS"]
        wait_port(self.port, self.proc, "mode-sim")

    def stop(self):
        self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait()
        self.out.close()


def write_fleet(work, n, csv):
    toml = os.path.join(work, f"fleet-{n}.toml")
    with open(toml, "w") as t, open(csv, "w") as c:
        t.write('[[project]]\nid = 1\n\n[[project.home]]\nid = 10\nname = "fleet"\n\n')
        c.write("device_id,api_key\n")
        for i in range(n):
            d = 100000 + i
            t.write(f'[[project.device]]\nid = {d}\napi_key = "v1.fleet-{d}"\nhome_id = 10\n\n')
            c.write(f"{d},v1.fleet-{d}\n")
    return toml


def first_device(csv):
    with open(csv) as f:
        f.readline()
        device, key = f.readline().strip().split(",")[:2]
    return device, key


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    line = [l for l in p.stdout.splitlines() if "=" in l][-1]
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def throughput(broker, device, key, args):
    print(f"\n### One device, {args.events:,} events of 60 bytes, {args.pairs} alternating pairs, {broker.name} broker "
          f"(libmosquitto {args.mosquitto_loop})\n")
    print("| QoS | libmode events/s (median, range) | libmosquitto events/s (median, range) | "
          "ratio libmode/libmosquitto (median of pairs, range) |")
    print("|---|---|---|---|")
    for qos in (0, 1):
        ours, theirs = [], []
        mode_cmd = [os.path.join(OUT, "events_libmode"), "127.0.0.1", str(broker.port), device, key, str(qos), str(args.events)]
        mosq_cmd = [os.path.join(OUT, "events_mosquitto"), "127.0.0.1", str(broker.port), device, key, str(qos),
                    str(args.events), args.mosquitto_loop]
        for i in range(args.pairs):
            if i % 2 == 0:
                ours.append(float(run(mode_cmd)["events_per_s"]))
                theirs.append(float(run(mosq_cmd)["events_per_s"]))
            else:
                theirs.append(float(run(mosq_cmd)["events_per_s"]))
                ours.append(float(run(mode_cmd)["events_per_s"]))
        ratios = [a / b for a, b in zip(ours, theirs)]
        rng = lambda xs, f: f"{f(statistics.median(xs))} ({f(min(xs))}-{f(max(xs))})"
        num = lambda x: f"{x:,.0f}"
        print(f"| {qos} | {rng(ours, num)} | {rng(theirs, num)} | **{statistics.median(ratios):.2f}** "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)
        if args.verbose:
            print(f"<!-- qos {qos} libmode {ours} libmosquitto {theirs} -->")


FLEET_HEAD = ("| broker | TLS | devices | ramp devices/s | RSS KiB/device | heap KiB/device | threads | "
              "fds/device | QoS 1 events/s across min(N,1000) | broker RSS KiB/device |")


def fleet_row(broker, tls, n, csv, args):
    cmd = [os.path.join(OUT, "fleet_mosquitto"), "--devices", str(n), "--events", str(args.fleet_events),
           "--broker-pid", str(broker.proc.pid)]
    if csv:
        cmd += ["--csv", csv]
    if tls == "none":
        cmd += ["--host", "127.0.0.1", "--port", str(broker.port)]
    else:
        cmd += ["--host", "localhost", "--port", str(broker.tls_port), "--ca", os.path.join(args.certs, "ca.pem")]
        if tls == "shared-ctx":
            cmd += ["--shared-ctx"]
    r = run(cmd)
    devices = r["devices"] + (f" (of {n}: fd limit)" if r["fd_limit_at"] != "0" else "")
    print(f"| {broker.name} | {tls} | {devices} | {float(r['ramp_devices_per_s']):,.0f} | {r['rss_kib_per_device']} | "
          f"{r['heap_kib_per_device']} | {r['threads']} | {r['fds_per_device']} | {float(r['events_per_s']):,.0f} | "
          f"{r['broker_rss_kib_per_device']} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--fleet", default="1000,10000", help="device counts of the fleet runs ('' for none)")
    ap.add_argument("--fleet-events", type=int, default=50, help="QoS 1 events per device in the fleet runs")
    ap.add_argument("--tls", default="none,ctx-per-client,shared-ctx")
    ap.add_argument("--tls-fleet", type=int, default=1000, help="device count of the TLS fleet runs")
    ap.add_argument("--only", choices=["throughput", "fleet"])
    ap.add_argument("--mosquitto-loop", choices=["threaded", "inline"], default="threaded")
    ap.add_argument("--no-profile", action="store_true", help="skip profile.sh's syscall and instruction counts")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    raise_fd_limit()
    build()
    work = tempfile.mkdtemp(prefix="c-bench-")
    args.certs = os.path.join(work, "certs")
    subprocess.run([os.path.join(ROOT, "tests", "tls", "make-certs.sh"), args.certs], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    have_mosquitto = shutil.which("mosquitto") is not None
    if not have_mosquitto:
        print("(no mosquitto broker: its rows are skipped; scripts/bench installs it)")
    sizes = [int(s) for s in args.fleet.split(",") if s]
    try:
        if args.only != "fleet":
            csv = os.path.join(work, "devices-1.csv")
            brokers = ([Mosquitto(work, args.certs)] if have_mosquitto else []) + [ModeSim(work, args.certs, 1, csv)]
            device, key = first_device(csv)
            try:
                for broker in brokers:
                    login = (device, key) if broker.name == "mode-sim" else ("1001", key)
                    throughput(broker, *login, args)
                    if not args.no_profile:
                        print(f"\n### Per event, counted (bench/c/profile.sh), {broker.name} broker\n", flush=True)
                        subprocess.run([os.path.join(SRC, "profile.sh"), "127.0.0.1", str(broker.port), *login], check=True)
            finally:
                for broker in brokers:
                    broker.stop()
        if args.only != "throughput" and sizes:
            print(f"\n### Fleet: libmosquitto, every client on one epoll thread ({args.fleet_events} QoS 1 events per "
                  "device for the events column)\n")
            print(FLEET_HEAD)
            print("|---" * (FLEET_HEAD.count("|") - 1) + "|")
            runs = [(n, "none") for n in sizes] + [(args.tls_fleet, t) for t in args.tls.split(",") if t != "none"]
            for make in ([lambda: Mosquitto(work, args.certs)] if have_mosquitto else []) + [None]:
                for n, tls in runs:
                    csv = os.path.join(work, f"devices-{n}.csv")
                    broker = make() if make else ModeSim(work, args.certs, n, csv)
                    try:
                        fleet_row(broker, tls, n, None if make else csv, args)
                    finally:
                        broker.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
