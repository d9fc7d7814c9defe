"""mode.AsyncDevice on both transports: every method as a coroutine, handlers on the loop,
`async for` over commands, and a loop that keeps ticking while the device waits."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any, Callable

import pytest

import mode
from simproc import KEYS, Sim, wait_until


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def until(changed: asyncio.Event, holds: Callable[[], bool], timeout: float = 10.0) -> None:
    """Waits until ``holds()``, checked again each time a handler sets ``changed`` (handlers
    run on this loop, so no change comes between the check and the wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not holds():
        changed.clear()
        left = deadline - loop.time()
        assert left > 0, f"{holds} did not hold within {timeout} s"
        try:
            await asyncio.wait_for(changed.wait(), left)
        except asyncio.TimeoutError:
            pass  # the assertion above reports it


def test_every_async_method_works(sim: Sim, transport: str) -> None:
    kind = unique("async")
    key = unique("akey")
    loop_threads: set[int] = set()
    handled: list[Any] = []

    async def main() -> None:
        device = mode.AsyncDevice(1001, KEYS[1001], **sim.device_options(transport))
        changed = asyncio.Event()

        @device.on_command
        async def on_command(command: mode.Command) -> None:  # coroutine handlers are awaited
            loop_threads.add(threading.get_ident())
            await device.send_event(kind, {"answer": command.parameters["n"]})
            handled.append(command)
            changed.set()

        @device.on_kv_change
        def on_kv(change: mode.KvChange) -> None:
            loop_threads.add(threading.get_ident())
            handled.append(change)
            changed.set()

        async with device:
            assert device.connected
            await device.send_event(kind, {"big": 2**90})
            await device.kv.set(key, {"v": 1})
            await until(changed, lambda: device.kv.get(key) == {"v": 1})
            await device.kv.delete(key)
            await until(changed, lambda: key not in device.kv)
            info = await device.info()
            assert info["id"] == 1001
            if transport == "mqtt":
                await device.send_bulk_data("echo", b"\x00\x01", qos=1)
                response = await device.bulk_request("echo", {"q": 2**70}, timeout=10)
                assert response.payload == {"q": 2**70}
            sim.console(f'command 1001 {{"action":"{kind}","parameters":{{"n":{2**64}}}}}')
            async for command in device.commands(timeout=10):
                assert command.action == kind
                break
            await until(changed, lambda: any(isinstance(h, mode.Command) for h in handled))
            assert device.stats().messages_queued >= 3

    asyncio.run(main())
    assert loop_threads == {threading.get_ident()}, "handlers run on the event loop's thread"
    events = wait_until(lambda: len(sim.events(kind)) == 2 and sim.events(kind), what="both events")
    assert {"big": 2**90} in [e["eventData"] for e in events]
    assert {"answer": 2**64} in [e["eventData"] for e in events]


def test_async_waits_end_when_what_they_wait_for_comes_not_at_their_timeout(sim: Sim, transport: str) -> None:
    # As the threaded test: a missed wake-up still succeeds, at the 30 s timeout.
    async def main() -> None:
        device = mode.AsyncDevice(1001, KEYS[1001], **sim.device_options(transport))
        started = time.monotonic()
        await device.connect(timeout=30)
        assert time.monotonic() - started < 10, "connect() returned at its timeout"
        action = unique("wake")
        started = time.monotonic()
        sim.console(f'command 1001 {{"action":"{action}","parameters":{{}}}}')
        async for command in device.commands(timeout=30):
            assert command.action == action
            break
        assert time.monotonic() - started < 10, "commands() returned at its timeout"

        async def read() -> list[mode.Command]:
            return [c async for c in device.commands(timeout=30)]

        reader = asyncio.ensure_future(read())
        started = time.monotonic()
        await device.close()
        assert await asyncio.wait_for(reader, 30) == []
        assert time.monotonic() - started < 10, "commands() ended at its timeout, not at the close"

    asyncio.run(main())


def test_waiting_never_blocks_the_event_loop(sim: Sim) -> None:
    async def main() -> float:
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        async with mode.AsyncDevice(1001, KEYS[1001], **sim.device_options("mqtt")) as device:
            task = asyncio.ensure_future(ticker())
            for _ in range(10):
                await device.info()
                response = await device.bulk_request("echo", {"n": 1}, timeout=10)
                assert response.status == "OK"
            # Half a second of waiting for commands that do not come.
            assert [c async for c in device.commands(timeout=0.5)] == []
            task.cancel()
        assert len(ticks) > 20
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        return max(gaps)

    assert asyncio.run(main()) < 0.5


def test_async_handler_errors_are_logged_and_the_device_keeps_running(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    kind = unique("async-alive")

    async def main() -> None:
        device = mode.AsyncDevice(1001, KEYS[1001], **sim.device_options("mqtt"))
        got: list[str] = []
        changed = asyncio.Event()

        class Logged(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                changed.set()  # the device logs on the loop's thread, where handlers run

        logged = Logged()

        @device.on_command
        async def broken(command: mode.Command) -> None:
            raise ValueError(f"async boom {command.action}")

        @device.on_command
        def sync_broken(command: mode.Command) -> None:
            raise KeyError("sync boom")

        @device.on_command
        def record(command: mode.Command) -> None:
            got.append(command.action)
            changed.set()

        logging.getLogger("mode").addHandler(logged)
        try:
            async with device:
                sim.console('command 1001 {"action":"one","parameters":{}}')
                # Both broken handlers have logged (each log record sets `changed`).
                await until(changed, lambda: got == ["one"]
                            and len([r for r in caplog.records if "raised" in r.getMessage()]) >= 2)
                await device.send_event(kind, {})
        finally:
            logging.getLogger("mode").removeHandler(logged)

    with caplog.at_level(logging.ERROR, logger="mode"):
        asyncio.run(main())
    wait_until(lambda: sim.events(kind), what="the event after the errors")
    raised = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(raised) == 2


def test_async_connect_with_a_wrong_key_raises_auth_error(sim: Sim) -> None:
    async def main() -> None:
        device = mode.AsyncDevice(1001, "v1.wrong", **sim.device_options("http"))
        with pytest.raises(mode.AuthError):
            await device.connect(timeout=10)

    asyncio.run(main())


def test_async_commands_end_when_the_device_closes(sim: Sim) -> None:
    async def main() -> list[mode.Command]:
        device = mode.AsyncDevice(1002, KEYS[1002], **sim.device_options("mqtt"))
        await device.connect()

        async def read() -> list[mode.Command]:
            return [c async for c in device.commands()]

        reader = asyncio.ensure_future(read())
        # Let the reader reach its wait for the next command (one pass of the loop is enough:
        # nothing else runs), then close under it.
        await asyncio.sleep(0)
        await device.close()
        return await asyncio.wait_for(reader, 5)

    assert asyncio.run(main()) == []
