"""Which SIGTERM handlers the drain takes over, and which it leaves alone."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from django_realtime._compat import asyncio as asyncio_compat
from django_realtime.ops import drain_signal


def _servers_handler(signum: int, frame: FrameType | None) -> None:
    """A server's SIGTERM handler, as Twisted or uvicorn installs one."""


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start with nothing taken over; put SIGTERM's handler back afterwards."""
    for name, value in [
        ("_server_handler", None),
        ("_start", None),
        ("_received", False),
        ("_stopped", False),
    ]:
        monkeypatch.setattr(drain_signal, name, value)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_python_handler_is_taken_over_and_kept_to_stop_the_server(fresh) -> None:
    signal.signal(signal.SIGTERM, _servers_handler)

    assert drain_signal.take_over(lambda: True)

    assert signal.getsignal(signal.SIGTERM) is drain_signal._on_sigterm
    assert drain_signal._server_handler is _servers_handler


def test_sigterm_read_by_an_event_loop_is_left_to_the_loop_with_a_warning(
    fresh, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
        placeholder = signal.getsignal(signal.SIGTERM)

        assert not drain_signal.take_over(lambda: True)

        assert signal.getsignal(signal.SIGTERM) is placeholder
        loop.remove_signal_handler(signal.SIGTERM)
    finally:
        loop.close()
    assert drain_signal._server_handler is None
    assert "loop.add_signal_handler()" in caplog.text
    assert "run `manage.py drain` before stopping it" in caplog.text


def test_on_a_python_outside_the_checked_versions_sigterm_is_left_alone(
    fresh, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncio_compat, "SUPPORTED", False)
    signal.signal(signal.SIGTERM, _servers_handler)

    assert not drain_signal.take_over(lambda: True)

    assert signal.getsignal(signal.SIGTERM) is _servers_handler
    assert drain_signal._server_handler is None
    assert "SIGTERM does not drain" in caplog.text
    assert "_servers_handler" in caplog.text
    assert "checked: Python >= 3.11, < 3.14" in caplog.text


def test_taking_over_twice_keeps_the_servers_handler(fresh) -> None:
    signal.signal(signal.SIGTERM, _servers_handler)
    assert drain_signal.take_over(lambda: True)

    assert drain_signal.take_over(lambda: False)

    assert drain_signal._server_handler is _servers_handler
