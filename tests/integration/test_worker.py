"""The Worker and ``runworker``: channel messages reach one instance per channel."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_realtime.exceptions import ConsumerError
from django_realtime.layers import InMemoryChannelLayer
from django_realtime.worker import Worker

MANAGE = Path(__file__).resolve().parents[1] / "runserver_project" / "manage.py"
WAIT = 5.0
MEMORY = "django_realtime.layers.InMemoryChannelLayer"


class EchoApp:
    """A channel application: reply to ``reply_to`` for each message.

    ``gate`` holds every reply until the test opens it.
    """

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self.layer = layer
        self.scopes: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.handling = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        instance = len(self.scopes)
        while True:
            message = await receive()
            self.handling.set()
            if message.get("fail"):
                raise RuntimeError(f"asked to fail on {message['text']!r}")
            if message.get("send"):
                await send({"type": "websocket.send", "text": "nope"})
            await self.gate.wait()
            await self.layer.send(
                message["reply_to"],
                {
                    "type": "reply",
                    "text": message["text"],
                    "channel": scope["channel"],
                    "instance": instance,
                },
            )


@pytest.fixture
def layer() -> InMemoryChannelLayer:
    return InMemoryChannelLayer()


@pytest.fixture
def app(layer: InMemoryChannelLayer) -> EchoApp:
    return EchoApp(layer)


@pytest.fixture
async def worker(
    app: EchoApp, layer: InMemoryChannelLayer
) -> AsyncIterator[tuple[Worker, asyncio.Task[None]]]:
    worker = Worker(app, ["tasks", "other"], layer, shutdown_timeout=WAIT)
    task = asyncio.create_task(worker.run())
    yield worker, task
    worker.stop()
    await asyncio.wait_for(asyncio.shield(task), WAIT * 2)


async def ask(
    layer: InMemoryChannelLayer, channel: str, text: str, **extra: Any
) -> dict[str, Any]:
    """Send ``text`` to ``channel`` and return the reply."""
    reply_to = await layer.new_channel("reply.")
    await layer.send(
        channel, {"type": "task", "text": text, "reply_to": reply_to, **extra}
    )
    return await asyncio.wait_for(layer.receive(reply_to), WAIT)


async def test_message_on_a_channel_reaches_the_app_which_replies(
    worker: tuple[Worker, asyncio.Task[None]],
    layer: InMemoryChannelLayer,
    app: EchoApp,
) -> None:
    reply = await ask(layer, "tasks", "hello")

    assert reply["text"] == "hello"
    assert app.scopes == [{"type": "channel", "channel": "tasks"}]


async def test_one_instance_per_channel_handles_messages_in_order(
    worker: tuple[Worker, asyncio.Task[None]],
    layer: InMemoryChannelLayer,
    app: EchoApp,
) -> None:
    reply_to = await layer.new_channel("reply.")
    for number in range(5):
        await layer.send(
            "tasks", {"type": "task", "text": str(number), "reply_to": reply_to}
        )
    other = await ask(layer, "other", "elsewhere")
    replies = [await asyncio.wait_for(layer.receive(reply_to), WAIT) for _ in range(5)]

    assert [reply["text"] for reply in replies] == ["0", "1", "2", "3", "4"]
    assert {reply["instance"] for reply in replies} == {1}
    assert other["channel"] == "other"
    assert sorted(scope["channel"] for scope in app.scopes) == ["other", "tasks"]


async def test_stop_lets_a_message_in_flight_finish(
    app: EchoApp, layer: InMemoryChannelLayer
) -> None:
    worker = Worker(app, ["tasks"], layer, shutdown_timeout=WAIT)
    running = asyncio.create_task(worker.run())
    app.gate.clear()
    reply_to = await layer.new_channel("reply.")
    await layer.send("tasks", {"type": "task", "text": "slow", "reply_to": reply_to})
    await asyncio.wait_for(app.handling.wait(), WAIT)

    worker.stop()
    await asyncio.sleep(0)  # Let run() see the stop before the gate opens.
    assert not running.done()
    app.gate.set()
    await asyncio.wait_for(running, WAIT)

    reply = await asyncio.wait_for(layer.receive(reply_to), WAIT)
    assert reply["text"] == "slow"


async def test_stop_gives_up_after_the_deadline_and_counts_what_was_left(
    app: EchoApp, layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(app, ["tasks"], layer, shutdown_timeout=0.05)
    running = asyncio.create_task(worker.run())
    app.gate.clear()
    for text in ("stuck", "waiting"):
        await layer.send("tasks", {"type": "task", "text": text, "reply_to": "r"})
    await asyncio.wait_for(app.handling.wait(), WAIT)

    with caplog.at_level(logging.WARNING, logger="django_realtime.worker"):
        worker.stop()
        await asyncio.wait_for(running, WAIT)

    assert "1 message(s) were interrupted while being handled" in caplog.text
    # The worker never took the second message: it is still in the layer.
    assert (await asyncio.wait_for(layer.receive("tasks"), WAIT))["text"] == "waiting"


async def test_a_busy_instance_leaves_the_next_message_to_another_worker(
    app: EchoApp, layer: InMemoryChannelLayer
) -> None:
    busy = Worker(app, ["tasks"], layer, shutdown_timeout=0.05)
    running = [asyncio.create_task(busy.run())]
    app.gate.clear()
    await layer.send("tasks", {"type": "task", "text": "long", "reply_to": "r"})
    await asyncio.wait_for(app.handling.wait(), WAIT)

    free_app = EchoApp(layer)
    free = Worker(free_app, ["tasks"], layer, shutdown_timeout=WAIT)
    running.append(asyncio.create_task(free.run()))
    try:
        reply = await ask(layer, "tasks", "next")
    finally:
        busy.stop()
        free.stop()
        await asyncio.wait_for(asyncio.gather(*running), WAIT)

    assert reply["text"] == "next"
    assert free_app.scopes, "the free worker should have handled the message"


async def test_stop_sends_taken_but_unstarted_messages_back_to_their_channel(
    app: EchoApp, layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(app, ["tasks"], layer, shutdown_timeout=0.05, max_pending=2)
    running = asyncio.create_task(worker.run())
    app.gate.clear()
    for text in ("stuck", "second", "third"):
        await layer.send("tasks", {"type": "task", "text": text, "reply_to": "r"})
    await asyncio.wait_for(app.handling.wait(), WAIT)
    await asyncio.sleep(0.05)  # let the worker take its max_pending

    with caplog.at_level(logging.INFO, logger="django_realtime.worker"):
        worker.stop()
        await asyncio.wait_for(running, WAIT)

    back = [
        (await asyncio.wait_for(layer.receive("tasks"), WAIT))["text"] for _ in "xy"
    ]
    assert back == ["second", "third"]
    assert "sent 2 received but unstarted message(s) back" in caplog.text


def test_max_pending_cannot_be_negative(
    app: EchoApp, layer: InMemoryChannelLayer
) -> None:
    with pytest.raises(ValueError, match="max_pending must be 0 or more, got -1"):
        Worker(app, ["tasks"], layer, max_pending=-1)


async def test_failed_instance_is_logged_and_replaced_for_the_next_message(
    worker: tuple[Worker, asyncio.Task[None]],
    layer: InMemoryChannelLayer,
    app: EchoApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="django_realtime.worker"):
        await layer.send("tasks", {"type": "task", "text": "boom", "fail": True})
        reply = await ask(layer, "tasks", "after")

    assert reply["text"] == "after"
    assert reply["instance"] == 2
    assert "Application instance for channel 'tasks' failed" in caplog.text
    assert "asked to fail on 'boom'" in caplog.text


async def test_messages_waiting_behind_a_failure_go_to_the_new_instance(
    app: EchoApp, layer: InMemoryChannelLayer
) -> None:
    worker = Worker(app, ["tasks"], layer, shutdown_timeout=WAIT)
    reply_to = await layer.new_channel("reply.")
    await layer.send("tasks", {"type": "task", "text": "boom", "fail": True})
    for text in ("a", "b"):
        await layer.send("tasks", {"type": "task", "text": text, "reply_to": reply_to})
    running = asyncio.create_task(worker.run())
    try:
        replies = [
            await asyncio.wait_for(layer.receive(reply_to), WAIT) for _ in range(2)
        ]
    finally:
        worker.stop()
        await asyncio.wait_for(running, WAIT)

    assert [reply["text"] for reply in replies] == ["a", "b"]


async def test_message_without_type_is_dropped_with_an_error(
    app: EchoApp, layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    class UntypedFirst:
        """Hand out one untyped message (the layer refuses to store one)."""

        fed = False

        async def receive(self, channel: str, /) -> dict[str, Any]:
            if not self.fed:
                self.fed = True
                return {"text": "no type"}
            return await layer.receive(channel)

    worker = Worker(app, ["tasks"], UntypedFirst())
    running = asyncio.create_task(worker.run())
    try:
        with caplog.at_level(logging.ERROR, logger="django_realtime.worker"):
            reply = await ask(layer, "tasks", "typed")
    finally:
        worker.stop()
        await asyncio.wait_for(running, WAIT)

    assert reply["text"] == "typed"
    assert "without a 'type' string" in caplog.text
    assert "['text']" in caplog.text


async def test_app_that_sends_asgi_messages_fails_with_a_clear_error(
    worker: tuple[Worker, asyncio.Task[None]],
    layer: InMemoryChannelLayer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="django_realtime.worker"):
        await layer.send("tasks", {"type": "task", "text": "x", "send": True})
        await ask(layer, "tasks", "next")

    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any(isinstance(error, ConsumerError) for error in errors)
    assert "Reply through the channel layer" in caplog.text


async def test_layer_error_ends_run_after_shutting_down(app: EchoApp) -> None:
    class BrokenLayer:
        async def receive(self, channel: str, /) -> dict[str, Any]:
            raise ConnectionError("redis went away")

    worker = Worker(app, ["tasks"], BrokenLayer())

    with pytest.raises(ConnectionError, match="redis went away"):
        await asyncio.wait_for(worker.run(), WAIT)


async def test_worker_cannot_run_twice_at_once(
    worker: tuple[Worker, asyncio.Task[None]],
) -> None:
    running, _ = worker
    await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="already running"):
        await running.run()


def test_worker_needs_channels_and_a_layer(
    app: EchoApp, layer: InMemoryChannelLayer
) -> None:
    with pytest.raises(ValueError, match="at least one channel"):
        Worker(app, [], layer)
    with pytest.raises(ValueError, match="got None"):
        Worker(app, ["tasks"], None)


# The command.


def test_runworker_without_the_layer_alias_is_a_command_error(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": MEMORY}}

    with pytest.raises(CommandError, match=r"no 'jobs' alias.*--layer"):
        call_command("runworker", "tasks", "--layer", "jobs")


def test_runworker_with_layers_turned_off_is_a_command_error(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {}

    with pytest.raises(CommandError, match="runworker needs a channel layer"):
        call_command("runworker", "tasks")


def test_runworker_with_an_unimportable_backend_is_a_command_error(
    settings: Any,
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "no.such.Layer"}}

    with pytest.raises(CommandError, match=r"'default' is unusable.*no\.such"):
        call_command("runworker", "tasks")


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def redis() -> None:
    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 and CI=true.")
        pytest.skip("Redis is not reachable on 127.0.0.1:6379.")


async def read_until(stream: asyncio.StreamReader, text: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"Expected {text!r}, the output ended:\n{seen}")
        seen.append(line)
        if text in line:
            return


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_runworker_process_handles_redis_messages_and_exits_0_on_signal(
    redis: None, sig: signal.Signals
) -> None:
    from channels_redis.core import RedisChannelLayer

    prefix = f"test-runworker-{uuid.uuid4().hex}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MANAGE),
        "runworker",
        "tasks",
        "--shutdown-timeout",
        "2",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.runserver_project.settings",
            "REALTIME_TEST_REDIS_PREFIX": prefix,
            "PYTHONUNBUFFERED": "1",
        },
    )
    assert process.stdout is not None
    seen: list[str] = []
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:6379"], prefix=prefix)
    try:
        await asyncio.wait_for(
            read_until(process.stdout, "Worker receiving on tasks", seen), 20
        )
        reply_to = await layer.new_channel()
        await layer.send(
            "tasks", {"type": "echo", "reply_to": reply_to, "text": "over redis"}
        )
        reply = await asyncio.wait_for(layer.receive(reply_to), 20)

        assert reply["text"] == "over redis"
        assert reply["pid"] == process.pid

        process.send_signal(sig)
        await asyncio.wait_for(read_until(process.stdout, "Worker stopped.", seen), 20)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert any(f"Got {sig.name}" in line for line in seen)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await layer.flush()


async def test_instance_that_returns_is_warned_about_and_restarted(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[str] = []

    async def one_shot(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        handled.append(message["text"])
        await layer.send(message["reply_to"], {"type": "done"})

    worker = Worker(one_shot, ["tasks"], layer)
    running = asyncio.create_task(worker.run())
    reply_to = await layer.new_channel("reply.")
    try:
        with caplog.at_level(logging.WARNING, logger="django_realtime.worker"):
            for text in ("first", "second"):
                await layer.send(
                    "tasks", {"type": "task", "text": text, "reply_to": reply_to}
                )
                await asyncio.wait_for(layer.receive(reply_to), WAIT)
    finally:
        worker.stop()
        await asyncio.wait_for(running, WAIT)

    assert handled == ["first", "second"]
    assert "should keep receiving until cancelled" in caplog.text
