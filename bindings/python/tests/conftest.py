"""Fixtures: one mode-sim subprocess for the whole session (free ports, admin API on, console on
its stdin pipe), and a factory of devices that are closed after each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import mode
from simproc import KEYS, ROOT, Sim, wait_until

__all__ = ["KEYS", "ROOT", "Sim", "wait_until"]


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    running = Sim(tmp_path_factory.mktemp("sim"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(params=["mqtt", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_device(sim: Sim) -> Iterator[Callable[..., mode.Device]]:
    made: list[mode.Device] = []

    def make(transport: str = "mqtt", device_id: int = 1001, **options: Any) -> mode.Device:
        merged = sim.device_options(transport)
        merged.update(options)
        device = mode.Device(device_id, KEYS[device_id], **merged)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close(timeout=2)


@pytest.fixture
def python() -> str:
    return sys.executable
