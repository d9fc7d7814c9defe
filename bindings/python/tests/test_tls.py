"""TLS end to end against mode-sim with a private CA (tests/tls/make-certs.sh): the HTTP
transport over HTTPS + wss://, MQTT over wss://, mutual TLS on MQTT and HTTPS with a client
certificate and key; a missing or wrong client certificate and a wrong host name each say
which. Also: ``info()`` finds the REST API from ``host`` with the HTTP transport and says which
setting it needs otherwise; a malformed message from the cloud is a warning on the ``mode``
logger and the device goes on."""

from __future__ import annotations

import logging
import pathlib
import threading
from collections.abc import Iterator
from typing import Any, Optional

import pytest

import mode
from simproc import KEYS, Sim, make_certs, wait_until

FAST = {"backoff_unit": 0.05, "backoff_cap": 0.5, "connect_timeout": 5.0, "request_timeout": 5.0}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _start(tmp_path_factory: pytest.TempPathFactory, certs: pathlib.Path, *extra: str) -> Iterator[Sim]:
    running = Sim(tmp_path_factory.mktemp("tls-sim"),
                  ("--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"), *extra))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def tls_sim(tmp_path_factory: pytest.TempPathFactory, certs: pathlib.Path) -> Iterator[Sim]:
    """TLS on every listener, no client certificates asked for."""
    yield from _start(tmp_path_factory, certs)


@pytest.fixture(scope="module")
def mtls_sim(tmp_path_factory: pytest.TempPathFactory, certs: pathlib.Path) -> Iterator[Sim]:
    """TLS on every listener, client certificates of the test CA required."""
    yield from _start(tmp_path_factory, certs, "--client-ca", str(certs / "ca.pem"))


def device(sim: Sim, certs: pathlib.Path, transport: str, host: str = "localhost",
           client: Optional[str] = "client", **options: Any) -> mode.Device:
    """Device 1001 over TLS to ``host`` (the server certificate names localhost), trusting the
    test CA, presenting ``client``.pem/.key of the test PKI (None: no certificate)."""
    port = {"mqtt": sim.tls_ports["MQTT/TLS"], "mqtt-websocket": sim.tls_ports["MQTT/wss"],
            "http": sim.tls_ports["HTTPS"]}[transport]
    if client is not None:
        options.update(client_cert=str(certs / f"{client}.pem"), client_key=str(certs / f"{client}.key"))
    return mode.Device(1001, KEYS[1001], transport=transport, host=host, port=port,
                       ca_file=str(certs / "ca.pem"), **FAST, **options)


def sends_and_receives(sim: Sim, dev: mode.Device, name: str) -> None:
    with dev:
        dev.send_event(name, {"over": dev.transport})
        wait_until(lambda: sim.events(name), what=f"the {name} event")
        sim.console(f'command 1001 {{"action":"{name}","parameters":{{}}}}')
        assert next(dev.commands(timeout=10)).action == name


def test_the_http_transport_works_over_https_and_wss_with_a_private_ca(tls_sim: Sim, certs: pathlib.Path) -> None:
    # host and port name the HTTPS server: the REST URL is derived, so info() needs nothing more.
    dev = device(tls_sim, certs, "http", client=None)
    sends_and_receives(tls_sim, dev, "py-https")
    with device(tls_sim, certs, "http", client=None) as again:
        assert again.info()["id"] == 1001


def test_mqtt_over_wss_works_with_a_private_ca(tls_sim: Sim, certs: pathlib.Path) -> None:
    sends_and_receives(tls_sim, device(tls_sim, certs, "mqtt-websocket", client=None), "py-wss")


def test_mutual_tls_on_mqtt_and_https_with_a_client_certificate_and_key(mtls_sim: Sim, certs: pathlib.Path) -> None:
    https = f"https://localhost:{mtls_sim.tls_ports['HTTPS']}"
    mqtt = device(mtls_sim, certs, "mqtt", api_url=https)
    sends_and_receives(mtls_sim, mqtt, "py-mtls-mqtt")
    with device(mtls_sim, certs, "mqtt", api_url=https) as again:
        assert again.info()["id"] == 1001  # REST over HTTPS with the certificate
    sends_and_receives(mtls_sim, device(mtls_sim, certs, "http"), "py-mtls-https")


def first_failure(dev: mode.Device) -> str:
    """The reason of the device's first disconnect (it never connects)."""
    reasons: list[Optional[str]] = []
    failed = threading.Event()

    @dev.on_connection
    def _(connected: bool, reason: Optional[str]) -> None:
        reasons.append(None if connected else reason)
        failed.set()

    try:
        dev.connect(timeout=None)
        assert failed.wait(10), "no connection attempt ended"
    finally:
        dev.close(timeout=0)
    assert reasons[0] is not None, "it connected"
    return reasons[0]


@pytest.mark.parametrize("transport", ["mqtt", "http"])
def test_a_missing_client_certificate_says_so(mtls_sim: Sim, certs: pathlib.Path, transport: str) -> None:
    reason = first_failure(device(mtls_sim, certs, transport, client=None))
    assert "requires a client certificate and none was sent" in reason, reason
    assert "client_cert" in reason, reason
    # And connect() gives up with the same words.
    with pytest.raises(mode.TimeoutError, match="requires a client certificate and none was sent"):
        device(mtls_sim, certs, transport, client=None).connect(timeout=1)


@pytest.mark.parametrize("transport", ["mqtt", "http"])
def test_a_client_certificate_of_another_ca_says_so(mtls_sim: Sim, certs: pathlib.Path, transport: str) -> None:
    reason = first_failure(device(mtls_sim, certs, transport, client="other-client"))
    assert "refused our client certificate: it is not issued by a CA the server trusts" in reason, reason


@pytest.mark.parametrize("transport", ["mqtt", "mqtt-websocket", "http"])
def test_a_wrong_host_name_says_so(tls_sim: Sim, certs: pathlib.Path, transport: str) -> None:
    reason = first_failure(device(tls_sim, certs, transport, host="127.0.0.1", client=None))
    assert "certificate is not valid for the host name" in reason, reason
    assert "127.0.0.1" in reason, reason


def test_info_without_a_rest_url_names_the_setting_to_give(sim: Sim) -> None:
    # host names the MQTT broker only: info() must not guess (nor ask the real cloud).
    with mode.Device(1001, KEYS[1001], host="127.0.0.1", port=sim.mqtt_port, plain=True, **FAST) as dev:
        with pytest.raises(mode.ConfigError, match="no REST API URL.*set api_url") as raised:
            dev.info()
        assert "MQTT 127.0.0.1" in str(raised.value)
    # With the HTTP transport host and port are the REST API.
    http_port = int(sim.http_url.rsplit(":", 1)[1])
    with mode.Device(1001, KEYS[1001], transport="http", host="127.0.0.1", port=http_port, plain=True,
                     **FAST) as dev:
        assert dev.info()["id"] == 1001


@pytest.mark.parametrize("transport", ["mqtt", "http"])
def test_a_malformed_message_from_the_cloud_is_a_warning_and_the_device_goes_on(
    sim: Sim, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "mode" and r.levelno == logging.WARNING and "malformed" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="mode"), \
            mode.Device(1001, KEYS[1001], **sim.device_options(transport)) as dev:
        for channel in ("command", "kv"):
            answer = sim.admin_raw("POST", f"/admin/devices/1001/publish/{channel}", b'{"action": 42')
            assert answer["delivered"] >= 1
            wait_until(lambda: any(channel in w for w in warnings()), what=f"the warning for {channel}")
        assert len(warnings()) == 2, warnings()
        assert "1001/command" in warnings()[0] and "1001/kv" in warnings()[1], warnings()
        sim.console('command 1001 {"action":"after","parameters":{}}')
        assert next(dev.commands(timeout=10)).action == "after"
        assert dev.connected
