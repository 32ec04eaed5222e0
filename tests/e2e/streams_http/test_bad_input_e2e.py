"""Bad input to the HTTP transports: a 4xx with a JSON error, and nothing lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from django.core import signing

from tests.e2e.streams_http.client import PREFIX, RoundRobinClient
from tests.e2e.streams_http.conftest import APPLICATION, base
from tests.servers import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess("uvicorn", APPLICATION, server_env, tmp_path / "log")
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def client(server: ServerProcess) -> RoundRobinClient:
    client = RoundRobinClient([base(server)])
    client.poll(timeout=0)
    (subscribed,) = client.subscribe("open.keep")
    assert subscribed["kind"] == "subscribed"
    return client


def _error(response: object, status: int, code: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["Content-Type"] == "application/json"  # type: ignore[attr-defined]
    assert response.json()["error"] == code  # type: ignore[attr-defined]
    assert response.json()["message"]  # type: ignore[attr-defined]


def _still_flows(client: RoundRobinClient, n: int) -> None:
    (reply,) = client.request("publish", {"stream": "open.keep", "data": {"n": n}})
    assert reply["kind"] == "reply"
    frames = client.poll()
    assert [f["data"]["n"] for f in frames if f["kind"] == "publication"][-1] == n


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_body"),
        (b"[1, 2]", 400, "bad_body"),
        (b"\xff\xfe", 400, "bad_body"),
        (
            json.dumps({"kind": "ping", "id": 1, "pad": "x" * 70_000}).encode(),
            413,
            "too_large",
        ),
    ],
    ids=["not-json", "not-an-object", "not-utf8", "too-large"],
)
def test_a_bad_post_body_gets_a_json_error_and_the_streams_keep_flowing(
    client: RoundRobinClient, body: bytes, status: int, code: str
) -> None:
    _error(client.post_raw(body), status, code)
    _still_flows(client, 1)


def test_a_post_without_the_csrf_token_is_refused(client: RoundRobinClient) -> None:
    _error(
        client.post_raw(b'{"kind":"ping","id":1}', {"X-CSRFToken": "wrong" * 8}),
        403,
        "csrf_failed",
    )
    _still_flows(client, 2)


def test_an_unknown_client_id_is_refused(client: RoundRobinClient) -> None:
    _error(
        client.post_raw(b'{"kind":"ping","id":1}', {"X-Realtime-Client": "forged"}),
        400,
        "client_unknown",
    )
    response = client.http.get(
        client.bases[0] + PREFIX + "poll", params={"client": "forged", "timeout": "0"}
    )
    _error(response, 400, "client_unknown")
    _still_flows(client, 3)


def test_an_expired_client_id_is_refused(client: RoundRobinClient) -> None:
    # The servers' secret and salt; made 61 s ago.
    payload = {"c": "0123456789abcdef", "b": "x", "s": ["open.keep"]}
    with mock.patch("time.time", return_value=signing.time.time() - 61):  # type: ignore[attr-defined]
        token = signing.dumps(
            payload,
            salt="django_realtime.streams.http.client:tests.e2e.streams_http.app.Open",
        )
    _error(
        client.post_raw(b'{"kind":"ping","id":1}', {"X-Realtime-Client": token}),
        410,
        "client_expired",
    )
    _still_flows(client, 4)


def test_a_client_id_of_another_session_is_refused(
    client: RoundRobinClient, server: ServerProcess
) -> None:
    other = RoundRobinClient([base(server)])
    assert other.http.get(base(server) + "/login/bob/").status_code == 200
    other.poll(timeout=0)
    other.client = client.client
    _error(other.post_raw(b'{"kind":"ping","id":1}'), 403, "client_mismatch")
    _still_flows(client, 5)


def test_an_unsubscribe_of_a_stream_never_subscribed_is_refused(
    client: RoundRobinClient,
) -> None:
    body = b'{"kind":"unsubscribe","id":9,"stream":"open.never"}'
    _error(client.post_raw(body), 409, "not_subscribed")
    response = client.http.get(
        client.bases[0] + PREFIX + "poll",
        params={
            "client": client.client or "",
            "positions": json.dumps({"open.never": None}),
            "timeout": "0",
        },
    )
    _error(response, 409, "not_subscribed")
    _still_flows(client, 6)


def test_a_request_from_another_origin_is_refused(client: RoundRobinClient) -> None:
    _error(
        client.post_raw(b'{"kind":"ping","id":1}', {"Origin": "https://evil.example"}),
        403,
        "origin_not_allowed",
    )
    response = client.http.get(
        client.bases[0] + PREFIX + "poll",
        params={"timeout": "0"},
        headers={"Origin": "https://evil.example"},
    )
    _error(response, 403, "origin_not_allowed")
    _still_flows(client, 7)


def test_bad_positions_and_timeouts_are_refused(client: RoundRobinClient) -> None:
    url = client.bases[0] + PREFIX + "poll"
    for params, code in [
        ({"positions": "{"}, "bad_positions"),
        ({"positions": json.dumps({"open.keep": ["e", "x"]})}, "bad_positions"),
        ({"positions": json.dumps({"open.keep": ["e" * 101, 1]})}, "bad_positions"),
        ({"timeout": "nan"}, "bad_timeout"),
        ({"timeout": "1000"}, "bad_timeout"),
    ]:
        response = client.http.get(
            url, params={"client": client.client or "", "timeout": "0", **params}
        )
        _error(response, 400, code)
    _still_flows(client, 8)


def test_a_wrong_method_is_refused(client: RoundRobinClient) -> None:
    response = client.http.post(client.bases[0] + PREFIX + "poll")
    # Not the CSRF check's 403: the method comes first.
    _error(response, 405, "method_not_allowed")
