"""The example project deployed with DEBUG off, on real servers.

It refuses to start without a secret key of its own, and keeps ``/metrics``
to staff users and the networks of ``METRICS_ALLOWED_NETWORKS``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.example.test_chat_e2e import (
    MEMBER,
    STARTUP_TIMEOUT,
    Browser,
    Serve,
    ServerProcess,
    example_db,
    example_env,
    http_get,
    ready,
    serve,
)

__all__ = ["example_db", "serve"]  # fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.parametrize("server", ["runserver", "uvicorn"])
def test_with_debug_off_a_server_refuses_to_start_with_the_development_key(
    example_db: Path, tmp_path: Path, server: str
) -> None:
    process = ServerProcess(
        server,
        example_env(example_db, DJANGO_DEBUG="0", DJANGO_SECRET_KEY=""),
        tmp_path / "server.log",
    )
    try:
        status = process.process.wait(timeout=STARTUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{server} started with the development key:\n{process.output}")

    assert status != 0
    assert (
        "ImproperlyConfigured: Expected a secret key of your own in "
        "DJANGO_SECRET_KEY with DEBUG off (DJANGO_DEBUG=0), got the development key."
    ) in process.output


def scrape(browser: Browser) -> tuple[int, str]:
    page = browser.request("/metrics")
    return page.status, page.text


def test_metrics_are_for_staff_and_hidden_from_everyone_else(serve: Serve) -> None:
    server = serve("uvicorn", DJANGO_DEBUG="0")
    staff, member = Browser(server.address), Browser(server.address)
    staff.log_in("bob")
    member.log_in(MEMBER)

    anonymous_status, anonymous_text = http_get(f"http://{server.address}/metrics")
    member_status, member_text = scrape(member)
    staff_status, staff_text = scrape(staff)

    assert (anonymous_status, anonymous_text) == (404, "Not found.\n")
    assert (member_status, member_text) == (404, "Not found.\n")
    assert staff_status == 200
    assert "realtime_connections_open" in staff_text


def test_metrics_are_for_anyone_on_an_allowed_network(serve: Serve) -> None:
    allowed = serve(
        "uvicorn", wait=False, DJANGO_DEBUG="0", METRICS_ALLOWED_NETWORKS="127.0.0.0/8"
    )
    elsewhere = serve(
        "uvicorn",
        wait=False,
        DJANGO_DEBUG="0",
        METRICS_ALLOWED_NETWORKS="10.0.0.0/8,::1",
    )
    ready(allowed, elsewhere)

    status, text = http_get(f"http://{allowed.address}/metrics")
    refused = http_get(f"http://{elsewhere.address}/metrics")

    assert status == 200
    assert "realtime_handshakes_total" in text
    assert refused == (404, "Not found.\n")
