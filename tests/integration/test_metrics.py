"""Prometheus metrics: what a scrape says after real traffic.

The in-process tests turn metrics on for the rest of this test process (the
Prometheus registry is per process) and compare readings before and after.
The end-to-end test runs uvicorn with two worker processes sharing
``PROMETHEUS_MULTIPROC_DIR`` and scrapes one of them for both.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import RequestFactory

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.exceptions import ChannelFull, DenyConnection
from django_realtime.layers import channel_layers
from django_realtime.middleware import limits
from django_realtime.ops import metrics
from django_realtime.ops.metrics import metrics_view
from django_realtime.testing import WebsocketCommunicator
from tests.servers import ServerProcess

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module", autouse=True)
def enabled() -> None:
    metrics.enable()


def scrape() -> dict[str, float]:
    """Return every sample of the view's answer, by name and labels."""
    response = metrics_view(RequestFactory().get("/metrics"))
    assert response.status_code == 200
    samples = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


class Echo(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        if text_data == "boom":
            raise RuntimeError("boom")
        await self.send(text_data=text_data, bytes_data=bytes_data)


class Picky(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        if self.scope["path"] == "/fail/":
            raise RuntimeError("connect failed")
        raise DenyConnection


async def test_connections_handshakes_messages_and_bytes_are_counted() -> None:
    before = scrape()
    first = WebsocketCommunicator(Echo.as_asgi(), "/ws/")
    second = WebsocketCommunicator(Echo.as_asgi(), "/ws/")
    assert (await first.connect())[0]
    assert (await second.connect())[0]
    await first.send_to(text_data="héllo")  # 6 bytes in UTF-8
    assert await first.receive_from() == "héllo"
    await second.send_to(bytes_data=b"\x00" * 10)
    assert await second.receive_from() == b"\x00" * 10
    during = scrape()
    assert (
        during["realtime_connections_open"] - before.get("realtime_connections_open", 0)
        == 2
    )
    await first.disconnect()
    await second.disconnect()
    refused = WebsocketCommunicator(Picky.as_asgi(), "/no/")
    assert (await refused.connect())[0] is False
    failed = WebsocketCommunicator(Picky.as_asgi(), "/fail/")
    with pytest.raises(RuntimeError, match="connect failed"):
        await failed.connect()
    after = scrape()
    assert delta(before, after, 'realtime_handshakes_total{outcome="accepted"}') == 2
    assert delta(before, after, 'realtime_handshakes_total{outcome="refused"}') == 1
    assert delta(before, after, 'realtime_handshakes_total{outcome="failed"}') == 1
    assert delta(before, after, 'realtime_messages_total{direction="in"}') == 2
    assert delta(before, after, 'realtime_messages_total{direction="out"}') == 2
    assert delta(before, after, 'realtime_message_bytes_total{direction="in"}') == 16
    assert delta(before, after, 'realtime_message_bytes_total{direction="out"}') == 16
    assert after["realtime_connections_open"] == before.get(
        "realtime_connections_open", 0
    )
    handler = (
        'realtime_handler_duration_seconds_count{consumer="tests.integration.test_metrics.Echo",'
        'handler="websocket_receive"}'
    )
    assert delta(before, after, handler) == 2


async def test_layer_sends_are_timed_and_capacity_drops_counted(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "metered": {
            "BACKEND": "django_realtime.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1},
        },
    }
    metered = channel_layers["metered"]
    before = scrape()
    channel = await metered.new_channel()
    await metered.group_add("g", channel)
    await metered.group_send("g", {"type": "a"})
    await metered.group_send("g", {"type": "b"})  # over capacity: dropped
    with pytest.raises(ChannelFull):  # raised, and counted
        await metered.send(channel, {"type": "c"})
    after = scrape()
    sends = (
        'realtime_layer_send_duration_seconds_count{layer="metered",'
        'operation="group_send"}'
    )
    assert delta(before, after, sends) == 2
    drops = 'realtime_layer_capacity_drops_total{layer="metered"}'
    assert delta(before, after, drops) == 2


def test_limits_and_slow_clients_are_pushed_from_their_counters() -> None:
    before = scrape()
    limits.stats.rate_limited_closes += 3
    limits.stats.refused_over_capacity += 2
    after = scrape()
    assert delta(before, after, 'realtime_rate_limited_total{action="closed"}') == 3
    assert (
        delta(before, after, 'realtime_handshakes_total{outcome="over_capacity"}') == 2
    )


# A real server: two uvicorn workers, one multiprocess directory.


def scrape_url(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()  # type: ignore[no-any-return]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_two_workers_are_scraped_as_one(tmp_path: Path) -> None:
    import websockets

    directory = tmp_path / "prom"
    directory.mkdir()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    server = ServerProcess(
        "uvicorn",
        "tests.metrics_project:application",
        env,
        tmp_path / "log",
        options=("--workers=2",),
    )
    try:

        async def hold(count: int) -> list[float]:
            sockets = [
                await websockets.connect(server.url("/ws/echo/")) for _ in range(count)
            ]
            for ws in sockets:
                await ws.send("x")
                assert await ws.recv() == "x"
            # Each worker pushes its counters once a second.
            await asyncio.sleep(1.5)
            readings = []
            for _ in range(4):
                # The kernel hands the scrapes to either worker.
                text = await asyncio.to_thread(scrape_url, server.port)
                match = re.search(r"^realtime_connections_open (\S+)$", text, re.M)
                assert match is not None, text
                readings.append(float(match.group(1)))
            for ws in sockets:
                await ws.close()
            return readings

        # Six connections, over both workers (they share the socket).
        assert asyncio.run(hold(6)) == [6, 6, 6, 6]
        pids = {path.stem.rsplit("_", 1)[-1] for path in directory.glob("gauge*.db")}
        assert len(pids) == 2, pids
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("installed", "fix"),
    [
        (True, "Metrics are off: set REALTIME['METRICS'] = True."),
        (False, "install prometheus-client (python -m pip install "),
    ],
)
def test_metrics_off_answers_404_with_the_fix_that_applies(
    monkeypatch: pytest.MonkeyPatch, installed: bool, fix: str
) -> None:
    monkeypatch.setattr(metrics, "_metrics", None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: (
            real_find_spec(name, *args)
            if installed or name != "prometheus_client"
            else None
        ),
    )

    response = metrics_view(RequestFactory().get("/metrics"))

    assert response.status_code == 404
    assert fix in response.content.decode()
