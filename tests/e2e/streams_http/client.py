"""A client of the HTTP stream transports that goes to a different server each time.

:class:`RoundRobinClient` sends each request to the next of its servers
(no affinity at all, as behind a round-robin balancer) and keeps what a
client keeps: its client id, the CSRF token, and each stream's position.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from typing import Any

import requests

PREFIX = "/realtime/open/"


class RoundRobinClient:
    """Speak the HTTP transports to ``bases`` (``http://host:port``), in turn."""

    def __init__(self, bases: Sequence[str], prefix: str = PREFIX) -> None:
        self.bases = list(bases)
        self.prefix = prefix
        self.http = requests.Session()
        self.turn = 0
        self.client: str | None = None
        self.csrf: str | None = None
        self.positions: dict[str, list[Any]] = {}
        self.next_id = 0

    def base(self) -> str:
        base = self.bases[self.turn % len(self.bases)]
        self.turn += 1
        return base

    def _params(self) -> dict[str, str]:
        params = {"positions": json.dumps(self.positions)}
        if self.client is not None:
            params["client"] = self.client
        return params

    def _took(self, body: dict[str, Any]) -> None:
        self.client = body["client"]
        self.csrf = body.get("csrf", self.csrf)

    def track(self, frame: dict[str, Any]) -> None:
        """Move the position of the stream ``frame`` is about, if it says one."""
        if frame["kind"] in ("publication", "lost", "subscribed"):
            self.positions[frame["stream"]] = [frame["epoch"], frame["offset"]]

    def poll(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Return the frames of one long-poll (on the next server)."""
        params = {**self._params(), "timeout": str(timeout)}
        response = self.http.get(
            self.base() + self.prefix + "poll", params=params, timeout=timeout + 10
        )
        assert response.status_code == 200, response.text
        body = response.json()
        self._took(body)
        frames: list[dict[str, Any]] = body["frames"]
        for frame in frames:
            self.track(frame)
        return frames

    def post_raw(
        self, data: bytes, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """Send ``data`` as a POST (on the next server); return the response."""
        sent = {"Content-Type": "application/json"}
        if self.csrf is not None:
            sent["X-CSRFToken"] = self.csrf
        if self.client is not None:
            sent["X-Realtime-Client"] = self.client
        sent.update(headers or {})
        return self.http.post(
            self.base() + self.prefix, data=data, headers=sent, timeout=30
        )

    def post(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        """Send one frame; return its answer's frames."""
        self.next_id += 1
        frame = {**frame, "id": self.next_id}
        response = self.post_raw(json.dumps(frame).encode())
        assert response.status_code == 200, response.text
        body = response.json()
        self._took(body)
        frames: list[dict[str, Any]] = body["frames"]
        for answer in frames:
            self.track(answer)
        return frames

    def subscribe(self, stream: str) -> list[dict[str, Any]]:
        return self.post({"kind": "subscribe", "stream": stream})

    def request(self, kind: str, data: Any) -> list[dict[str, Any]]:
        return self.post({"kind": "request", "type": kind, "data": data})

    def events(
        self, base: str, timeout: float = 10.0
    ) -> Generator[tuple[str, Any], None, None]:
        """Yield the (event, data) of an SSE stream on ``base``, from the positions."""
        url = base + self.prefix + "events"
        response = self.http.get(
            url, params=self._params(), stream=True, timeout=timeout
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/event-stream"
        event = "message"
        with response:
            for raw in response.iter_lines(decode_unicode=True):
                line = raw if isinstance(raw, str) else raw.decode()
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = json.loads(line[len("data: ") :])
                    if event == "client":
                        self._took(data)
                    elif event == "message":
                        self.track(data)
                    yield event, data
                    event = "message"
