"""The RabbitMQ layer while the broker restarts mid-stream.

The broker's application is stopped and started again with ``rabbitmqctl``
(quicker than restarting the node). Whatever happens in a test, the
fixture starts it again before the next test runs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from django_realtime.exceptions import ChannelLayerError
from django_realtime.layers.rabbitmq import RabbitMQChannelLayer
from tests.integration.layers.conftest import rabbitmq_config

# The broker is shared: under pytest-xdist these tests run on one worker.
pytestmark = pytest.mark.xdist_group("rabbitmq")

# Reconnecting waits up to 2 s between attempts.
TIMEOUT = 15.0


def test_under_xdist_the_restart_runs_in_the_rabbitmq_group(
    request: pytest.FixtureRequest,
) -> None:
    # Stopping the broker beside other RabbitMQ tests would fail them: if an
    # upgrade of pytest or pytest-xdist stops honouring xdist_group (as
    # pytest 9.2 with xdist 3.8 did), this says so instead of random failures.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        assert request.node.nodeid.endswith("@rabbitmq"), request.node.nodeid


def rabbitmqctl(*args: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120
    )


@pytest.fixture
def broker() -> Iterator[None]:
    """Let the test stop the broker; start it again afterwards, always."""
    rabbitmq_config("unused.")  # skip (or fail, under CI) if it is down
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH: the broker cannot be restarted.")
    yield
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., RabbitMQChannelLayer]]:
    prefix = f"drt{uuid.uuid4().hex[:8]}."
    config = rabbitmq_config(prefix)
    made: list[RabbitMQChannelLayer] = []

    def make(**options: Any) -> RabbitMQChannelLayer:
        layer = RabbitMQChannelLayer(**{**config, **options})
        made.append(layer)
        return layer

    yield make
    for layer in made:
        await layer.close()


async def test_a_broker_restart_mid_stream_reports_every_failure_and_recovers(
    broker: None, make: Callable[..., RabbitMQChannelLayer]
) -> None:
    receiver, sender = make(capacity=10_000), make(capacity=10_000)
    member = await receiver.new_channel()
    await receiver.group_add("room", member)
    received: list[int] = []
    reported: list[int] = []
    # The errors of the sends that raised.
    failed: dict[int, str] = {}
    restarted = asyncio.Event()
    after_restart: list[int] = []
    streaming, arrived = asyncio.Event(), asyncio.Event()

    async def receive_all() -> None:
        while True:
            try:
                received.append((await receiver.receive("jobs"))["n"])
            except ChannelLayerError:
                await asyncio.sleep(0.1)  # the broker is down: try again
                continue
            if len(received) >= 20:
                streaming.set()
            arrived.set()

    async def send_all() -> None:
        n = 0
        while len(after_restart) < 20:
            try:
                await sender.send("jobs", {"type": "job", "n": n})
            except ChannelLayerError as error:
                failed[n] = str(error)
            else:
                reported.append(n)
                if restarted.is_set():
                    after_restart.append(n)
            n += 1
            await asyncio.sleep(0.005)

    receiving = asyncio.create_task(receive_all())
    sending = asyncio.create_task(send_all())
    try:
        async with asyncio.timeout(TIMEOUT):
            await streaming.wait()
        await asyncio.to_thread(rabbitmqctl, "stop_app")

        # While it is down, every operation says so at once.
        for operation in (
            sender.group_send("room", {"type": "lost"}),
            sender.group_add("room", "other"),
            sender.send(member, {"type": "lost"}),
        ):
            with pytest.raises(ChannelLayerError, match="RabbitMQ"):
                await operation

        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")
        restarted.set()
        async with asyncio.timeout(TIMEOUT):
            await sending
            # The receiver reconnected on its own and consumes again.
            while not set(after_restart) <= set(received):
                arrived.clear()
                await arrived.wait()

        # The holder declared its queue and its membership again.
        await sender.group_send("room", {"type": "after.restart"})
        async with asyncio.timeout(TIMEOUT):
            assert await receiver.receive(member) == {"type": "after.restart"}
    finally:
        receiving.cancel()
        sending.cancel()
        await asyncio.gather(receiving, sending, return_exceptions=True)

    assert failed, "no send failed: the broker was not down while sending"
    assert all("RabbitMQ" in error for error in failed.values())
    # Nothing arrived twice or out of order, and nothing arrived whose send
    # was refused outright; only a send cut off before the broker confirmed
    # it may have arrived unreported.
    assert received == sorted(set(received))
    unreported = set(received) - set(reported)
    assert all("may not have been sent" in failed[n] for n in unreported), unreported
