"""The stream fault run over SSE and long-polling, with no affinity.

Clients of both HTTP transports read two streams through a round-robin
proxy over two server processes (uvicorn and daphne, history in Redis),
each request on a new connection, while the test publishes and breaks
things: it drops every connection, pauses a process, kills one and starts
another, and cuts the servers' Redis connections. Each client does what
``realtime.js`` does: it resumes from its positions, and starts again with
a new client id when a request fails. At the end every client has every
message once, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from django_realtime.streams.stores.redis import RedisHistoryStore
from tests.e2e.streams_http.conftest import APPLICATION
from tests.e2e.streams_http.proxy import RoundRobinProxy, proxying
from tests.servers import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

STREAMS = ("open.f1", "open.f2")
MESSAGES = 240  # per stream
PREFIX = "/realtime/open/"


class FaultClient(threading.Thread):
    """One HTTP-transport client that starts again after any failure."""

    def __init__(self, kind: str, base: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.kind = kind
        self.base = base
        self.stop = stop
        self.positions: dict[str, list[Any]] = {}
        # The positions of what was processed, kept across restarts.
        self._resume: dict[str, list[Any]] = {}
        self.received: dict[str, list[int]] = {stream: [] for stream in STREAMS}
        self.lost_frames: list[dict[str, Any]] = []
        self.restarts = 0
        self.errors: list[str] = []
        self.client: str | None = None
        self.csrf = ""
        self.http = requests.Session()
        self.http.headers["Connection"] = "close"  # a new connection each time

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._session()
            except (requests.RequestException, ValueError, KeyError) as exc:
                self.errors.append(repr(exc)[:200])
            self.restarts += 1
            self.client = None
            time.sleep(0.1)  # a backoff, as the browser client has

    def _take(self, frame: dict[str, Any]) -> None:
        kind, stream = frame["kind"], frame.get("stream")
        if kind == "publication":
            self.received[stream].append(frame["offset"])
        elif kind == "lost":
            self.lost_frames.append(frame)
        if kind in ("publication", "lost", "subscribed"):
            self.positions[stream] = [frame["epoch"], frame["offset"]]

    def _get(self, path: str, **params: str) -> requests.Response:
        query = {"positions": json.dumps(self.positions), **params}
        if self.client:
            query["client"] = self.client
        return self.http.get(
            self.base + PREFIX + path, params=query, timeout=10, stream=path == "events"
        )

    def _session(self) -> None:
        self.positions = {}  # a new client id lists no streams yet
        response = self._get("poll", timeout="0")
        response.raise_for_status()
        body = response.json()
        self.client, self.csrf = body["client"], body["csrf"]
        for n, stream in enumerate(STREAMS, 1):
            frame: dict[str, Any] = {"kind": "subscribe", "id": n, "stream": stream}
            if stream in self._resume:
                epoch, offset = self._resume[stream]
                frame["since"] = {"epoch": epoch, "offset": offset}
            answer = self.http.post(
                self.base + PREFIX,
                data=json.dumps(frame),
                headers={"X-CSRFToken": self.csrf, "X-Realtime-Client": self.client},
                timeout=10,
            )
            answer.raise_for_status()
            body = answer.json()
            self.client = body["client"]
            for reply in body["frames"]:
                if reply["kind"] == "subscribed" and stream in self._resume:
                    assert reply["recovered"], reply
                self._take(reply)
            self._resume[stream] = self.positions[stream]
        if self.kind == "poll":
            while not self.stop.is_set():
                response = self._get("poll", timeout="2")
                response.raise_for_status()
                body = response.json()
                self.client = body["client"]
                for frame in body["frames"]:
                    self._take(frame)
                    self._resume[frame["stream"]] = self.positions[frame["stream"]]
        else:
            response = self._get("events")
            response.raise_for_status()
            with response:
                event = "message"
                for line in response.iter_lines(decode_unicode=True):
                    if self.stop.is_set():
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "message":
                            self._take(data)
                            self._resume[data["stream"]] = self.positions[
                                data["stream"]
                            ]
                        elif event == "close":
                            return
                        event = "message"


class Backends:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.count = env, logs, 0
        self.processes = [self.start(kind) for kind in ("uvicorn", "daphne")]

    def start(self, kind: str) -> ServerProcess:
        self.count += 1
        return ServerProcess(
            kind, APPLICATION, self.env, self.logs / f"{self.count}.log"
        )

    def replace(self, index: int, proxy: RoundRobinProxy) -> None:
        old = self.processes[index]
        old.kill()
        self.processes[index] = self.start(old.kind)
        proxy.backends = [process.port for process in self.processes]


@pytest.fixture
def backends(server_env: dict[str, str], tmp_path: Path) -> Iterator[Backends]:
    started = Backends(server_env, tmp_path)
    try:
        yield started
    finally:
        for process in started.processes:
            process.kill()


def _publish(prefix: str, done: threading.Event) -> None:
    async def main() -> None:
        store = RedisHistoryStore(prefix=prefix, client_name="faults-publisher")
        try:
            for n in range(MESSAGES):
                for stream in STREAMS:
                    publication = await store.publish(stream, json.dumps({"n": n}))
                    assert publication.offset == n + 1
                await asyncio.sleep(0.05)
        finally:
            await store.close()
            done.set()

    asyncio.run(main())


def _cut_redis(prefix: str) -> int:
    client = redis.Redis()
    killed = 0
    for entry in client.client_list():
        if entry.get("name", "").startswith(f"{prefix}-streams-"):
            killed += client.client_kill_filter(_id=entry["id"])
    client.close()
    return killed


def test_http_clients_lose_nothing_and_get_nothing_twice_through_faults(
    backends: Backends, redis_prefix: str
) -> None:
    stop, published = threading.Event(), threading.Event()
    cuts: list[int] = []
    with proxying([p.port for p in backends.processes]) as proxy:
        base = f"http://127.0.0.1:{proxy.port}"
        clients = [FaultClient(kind, base, stop) for kind in ("sse", "poll") * 3]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            len(c._resume) < len(STREAMS) for c in clients
        ):
            time.sleep(0.05)  # the clients are other threads
        publisher = threading.Thread(target=_publish, args=(redis_prefix, published))
        publisher.start()
        faults = [
            lambda: proxy.drop(),
            lambda: _pause(backends.processes[0], 1.5),
            lambda: backends.replace(1, proxy),
            lambda: cuts.append(_cut_redis(redis_prefix)),
            lambda: proxy.drop(),
        ]
        for fault in faults:
            time.sleep(1.5)  # the faults' pacing, not a wait for a state
            fault()
        publisher.join(60)
        assert published.is_set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            len(c.received[s]) < MESSAGES for c in clients for s in STREAMS
        ):
            time.sleep(0.1)  # the clients are other threads
        stop.set()
        proxy.drop()
    for client in clients:
        for stream in STREAMS:
            assert client.received[stream] == list(range(1, MESSAGES + 1)), (
                client.kind,
                stream,
                client.errors[-5:],
            )
        assert client.lost_frames == []
    assert sum(client.restarts for client in clients) > 0  # the faults were felt
    assert cuts[0] > 0  # the servers' Redis connections were cut


def _pause(process: ServerProcess, seconds: float) -> None:
    os.kill(process.pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(process.pid, signal.SIGCONT)
