#!/usr/bin/env python3
"""Issue 15's C benchmarks side by side in one run, printed as markdown tables (scripts/bench).

Builds bench/c/*.c against target/release/libmode.so (build it first: cargo build --release
-p mode-ffi -p mode-sim; MODE_BENCH_LIB=DIR takes libmode.so and mode-sim from DIR instead, e.g.
a copy that a concurrent build cannot replace mid-run, with the matching mode.h in DIR/include if
the tree's is changing too), starts a local mosquitto broker and mode-sim on free ports, then:
  throughput: one device, libmode vs libmosquitto, QoS 0 and 1, in alternating pairs (each first
              in every other pair); the ratio is the median of the pairs' ratios, with its range,
              since one run swings with the neighbours on this machine and drift hits a pair alike;
  profile:    bench/c/profile.sh on each broker: syscalls, context switches and instructions per event;
  fleet:      fleet_libmode (every device on one runtime) and fleet_mosquitto (every client on one
              epoll thread) at each --fleet size on both brokers, plain TCP, and at --tls-fleet
              with TLS (libmode: the runtime's one rustls configuration; libmosquitto: a context
              per client and one shared SSL_CTX), in one table; the two libraries take turns
              going first, and every run gets a fresh broker (its RSS growth is the run's).
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
# mode.h beside a pinned copy (MODE_BENCH_LIB/include/mode.h), else the tree's
INCLUDE = os.path.join(LIB, "include") if os.path.exists(os.path.join(LIB, "include", "mode.h")) else os.path.join(ROOT, "include")
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
    cc("events_libmode", "-I", INCLUDE, f"-L{LIB}", "-lmode", f"-Wl,-rpath,{LIB}", "-pthread")
    cc("events_mosquitto", "-lmosquitto", "-pthread")
    cc("fleet_mosquitto", "-lmosquitto", "-lssl", "-lcrypto")
    cc("fleet_libmode", "-I", INCLUDE, f"-L{LIB}", "-lmode", f"-Wl,-rpath,{LIB}", "-pthread")


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


FLEET_HEAD = ("| broker | library | TLS | devices | ramp devices/s | RSS KiB/device | heap KiB/device | threads | "
              "fds/device | QoS 1 events/s across min(N,1000) | broker RSS KiB/device |")


def fleet_row(broker, lib, tls, n, csv, args):
    """One run of fleet_libmode or fleet_mosquitto against a fresh `broker`, as a table row."""
    program = {"libmode": "fleet_libmode", "libmosquitto": "fleet_mosquitto"}[lib]
    cmd = [os.path.join(OUT, program), "--devices", str(n), "--events",
           str(args.fleet_events), "--broker-pid", str(broker.proc.pid)]
    if lib == "libmode":
        cmd += ["--io-threads", str(args.io_threads)]
    if csv:
        cmd += ["--csv", csv]
    if tls == "none":
        cmd += ["--host", "127.0.0.1", "--port", str(broker.port)]
    else:
        cmd += ["--host", "localhost", "--port", str(broker.tls_port), "--ca", os.path.join(args.certs, "ca.pem")]
        if tls == "shared-ctx":
            cmd += ["--shared-ctx"]
    try:
        r = run(cmd)
    except SystemExit as failure:  # one failed run is a row of the table, not the end of it
        why = " ".join(str(failure).split())[-300:].replace("|", "/")
        print(f"| {broker.name} | {lib} | {tls} | {n}: **failed**: {why} |" + " |" * 7, flush=True)
        return
    notes = []
    if r["fd_limit_at"] != "0":
        notes.append(f"of {n}: fd limit")
    if r.get("connect_failures", "0") != "0":
        notes.append(f"{r['connect_failures']} failed attempts, retried")
    devices = r["devices"] + (f" ({'; '.join(notes)})" if notes else "")
    print(f"| {broker.name} | {lib} | {r['tls']} | {devices} | {float(r['ramp_devices_per_s']):,.0f} | "
          f"{r['rss_kib_per_device']} | {r['heap_kib_per_device']} | {r['threads']} | {r['fds_per_device']} | "
          f"{float(r['events_per_s']):,.0f} | {r['broker_rss_kib_per_device']} |", flush=True)
    if args.verbose:
        print(f"<!-- {' '.join(cmd)}: {r} -->")


def fleet_runs(sizes, args, turn):
    """(devices, [(library, tls), ...]) per group: the libraries of a group run back to back,
    the first of each group in turn libmode and libmosquitto (from `turn` on), so that a drift in the machine
    does not always favour one."""
    libs = [lib for lib in args.fleet_libs.split(",") if lib]
    tls = [t for t in args.tls.split(",") if t != "none"]
    groups = [(n, [(lib, "none") for lib in libs]) for n in sizes]
    if tls and args.tls_fleet:
        pairs = ([("libmode", "shared-config")] if "libmode" in libs else []) + \
                [("libmosquitto", t) for t in tls if "libmosquitto" in libs]
        groups.append((args.tls_fleet, pairs))
    for i, (n, pairs) in enumerate(groups, turn):
        yield n, (pairs if i % 2 == 0 else pairs[::-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--fleet", default="1000,10000", help="device counts of the fleet runs ('' for none)")
    ap.add_argument("--fleet-events", type=int, default=50, help="QoS 1 events per device in the fleet runs")
    ap.add_argument("--tls", default="none,ctx-per-client,shared-ctx",
                    help="libmosquitto's TLS variants at --tls-fleet (libmode runs TLS when any is named)")
    ap.add_argument("--fleet-libs", default="libmode,libmosquitto", help="which fleet programs run")
    ap.add_argument("--io-threads", type=int, default=1, help="fleet_libmode's runtime IO threads")
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
            print(f"\n### Fleet: libmode, every device on one runtime ({args.io_threads} IO thread(s) and one callback "
                  f"thread); libmosquitto, every client on one epoll thread ({args.fleet_events} QoS 1 events per "
                  "device for the events column; a fresh broker for every run)\n")
            print(FLEET_HEAD)
            print("|---" * (FLEET_HEAD.count("|") - 1) + "|")
            makers = ([lambda: Mosquitto(work, args.certs)] if have_mosquitto else []) + [None]
            for turn, make in enumerate(makers):
                for n, pairs in fleet_runs(sizes, args, turn):
                    for lib, tls in pairs:
                        csv = os.path.join(work, f"devices-{n}.csv")
                        broker = make() if make else ModeSim(work, args.certs, n, csv)
                        try:
                            fleet_row(broker, lib, tls, n, None if make else csv, args)
                        finally:
                            broker.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
