"""Whole processes: the examples end to end, a clean interpreter exit with live devices, and
Ctrl-C during a blocking wait."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid

from simproc import KEYS, ROOT, Sim, wait_until

EXAMPLES = ROOT / "examples" / "python"


def run_script(code: str, timeout: float = 30) -> "tuple[subprocess.CompletedProcess[str], float]":
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)
    return done, time.monotonic() - started


def test_the_interpreter_exits_cleanly_with_connected_devices(sim: Sim) -> None:
    options = {t: sim.device_options(t) for t in ("mqtt", "http")}
    done, took = run_script(f"""
        import threading, time, mode
        devices = [mode.Device(1001, {KEYS[1001]!r}, **{options['mqtt']!r}),
                   mode.Device(1002, {KEYS[1002]!r}, **{options['http']!r})]
        for d in devices:
            d.on_command(lambda c: time.sleep(0.5))
            d.on_kv_change(lambda c: None)
            d.connect()
        sender = threading.Thread(target=lambda: [devices[0].send_event("exit-test", {{}}) for _ in range(2000)], daemon=True)
        sender.start()
        print("up", flush=True)
        # no close(): the interpreter must still exit promptly and without a crash
    """)
    assert done.returncode == 0, done.stderr
    assert "up" in done.stdout
    assert took < 15, f"exit took {took:.1f} s"
    assert "Fatal" not in done.stderr and "panicked" not in done.stderr, done.stderr


def test_an_exit_while_a_handler_runs_is_clean(sim: Sim) -> None:
    options = sim.device_options("mqtt")
    action = f"slow-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, mode
        d = mode.Device(1001, {KEYS[1001]!r}, **{options!r})
        d.on_command(lambda c: (print("handling", flush=True), time.sleep(1), d.send_event("late", {{}})))
        d.connect()
        print("up", flush=True)
        time.sleep(1.5)
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    sim.console(f'command 1001 {{"action":"{action}","parameters":{{}}}}')
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Fatal" not in err and "panicked" not in err, err


def test_ctrl_c_interrupts_a_blocking_wait() -> None:
    # Nothing listens on port 1: with a queue of one under "block", the second send waits.
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import mode
        d = mode.Device(1001, "v1.key", host="127.0.0.1", port=1, plain=True, queue_size=1, backoff_unit=0.05)
        d.connect(timeout=None)
        d.send_event("fills-the-queue", {})
        print("blocking", flush=True)
        try:
            d.send_event("waits-for-room", {})
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "blocking"
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert "interrupted" in out, err
    assert time.monotonic() - started < 3
    assert proc.returncode == 0, err


def test_the_device_example_sends_events_and_answers_commands(sim: Sim) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "device.py"), "--port", str(sim.mqtt_port),
         "--api-url", sim.http_url, "--count", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("sent heartbeat") for line in lines):
        lines.append(proc.stdout.readline())
    action = f"blink-{uuid.uuid4().hex[:8]}"
    sim.console(f'command 1001 {{"action":"{action}","parameters":{{"times":3}}}}')
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"command {action} {{'times': 3}}" in out
    assert "kv lastCommand = " in out
    assert "sent heartbeat 3" in out
    wait_until(lambda: any(e["eventData"] == {"action": action} for e in sim.events("commandDone")),
               what="the example's answer")


def read_rest(proc: "subprocess.Popen[str]") -> "tuple[str, str]":
    """The rest of the output of a process whose stdout was read line by line, and its stderr,
    once it ended. (communicate() would skip what readline() already buffered.)"""
    assert proc.stdout is not None and proc.stderr is not None
    with proc:  # closes the pipes and waits
        out = proc.stdout.read()
        err = proc.stderr.read()
    return out, err


def test_the_paho_bridge_keeps_ddp_state_with_its_own_mqtt_client(sim: Sim) -> None:
    key = f"bridge-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "paho_bridge.py"), "--port", str(sim.mqtt_port),
         "--run-for", "4", "--set", f"{key}={json.dumps({'n': 2**70})}", "--bulk", "echo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("subscribe /devices/1001/command /devices/1001/kv"), first
    lines = [first]
    while not lines[-1].startswith("connected"):  # subscribed: a command now reaches it
        lines.append(proc.stdout.readline())
        assert lines[-1], "".join(lines)
    action = f"bridged-{uuid.uuid4().hex[:8]}"
    sim.console(f'command 1001 {{"action":"{action}","parameters":{{"n":{2**65}}}}}')
    while not lines[-1].startswith(f"kv {key} = "):  # written, so the delete comes after
        lines.append(proc.stdout.readline())
        assert lines[-1], "".join(lines)
    sim.console(f"kv-delete 1001 {key}")
    rest, err = read_rest(proc)
    out = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert f'command {action} {{"n": {2**65}}}' in out
    assert f"kv {key} = {json.dumps({'n': 2**70})}" in out
    assert f"kv {key} deleted" in out
    assert 'bulk response OK {"hello": "module"}' in out, out
    assert "mirror rev" in out and out.rstrip().endswith("bye")
    assert "closed, 0 unsent" in out
    assert sim.events("bridgeUp")
    wait_until(lambda: any(e["eventData"] == {"action": action} for e in sim.events("commandDone")),
               what="the bridge's answer")


def test_the_paho_bridge_loses_no_qos1_event_across_five_broker_restarts(tmp_path: pathlib.Path) -> None:
    events, restarts = 600, 5
    data = tmp_path / "data"  # the cloud's records outlive each kill
    broker = Sim(tmp_path / "run0", ("--data-dir", str(data)))
    port = broker.mqtt_port
    broker.console('kv 1001 color "red"')  # something for every reload to carry
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "paho_bridge.py"), "--port", str(port), "--events", str(events),
         "--interval-ms", "5", "--backoff-unit-ms", "50", "--backoff-cap-ms", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []

    def read_until(prefix: str, count: int) -> None:
        """Reads the bridge's output until `count` more lines start with `prefix`."""
        seen = 0
        while seen < count:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, f"the bridge ended early: {''.join(lines)}{proc.stderr.read()}"  # type: ignore[union-attr]
            lines.append(line)
            seen += line.startswith(prefix)

    try:
        for restart in range(1, restarts + 1):
            read_until("connected", 1)
            read_until("progress:", 2)  # events flowing on this connection
            broker.kill()
            broker = Sim(tmp_path / f"run{restart}", ("--data-dir", str(data)), mqtt_port=port)
        rest, err = read_rest(proc)
        out = "".join(lines) + rest
        assert proc.returncode == 0, err
        summary = [line for line in out.splitlines() if line.startswith("sent ")]
        assert summary and summary[0].startswith(f"sent {events} events, {events} delivered, "), out
        connects = out.splitlines().count("connected")
        reloads = sum(line.startswith("kv reload rev ") for line in out.splitlines())
        waits = re.findall(r"^disconnected: network: .*; retry in (\d+) ms$", out, re.MULTILINE)
        assert connects >= restarts + 1, out
        assert reloads == connects, f"{reloads} reloads for {connects} connections"
        assert len(waits) >= restarts and all(0 < int(ms) <= 200 for ms in waits), waits
        honoured = re.findall(r"^connect after (\d+) ms, backoff (\d+) ms$", out, re.MULTILINE)
        assert len(honoured) >= restarts, out
        assert all(int(waited) >= int(backoff) for waited, backoff in honoured), honoured
        assert "closed, 0 unsent" in out
        got = {e["eventData"]["n"] for e in broker.events("tick")}
        assert set(range(1, events + 1)) - got == set(), "QoS 1 events lost"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        broker.close()
