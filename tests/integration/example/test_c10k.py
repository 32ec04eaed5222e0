"""The c10k app: its echo consumer, and ``manage.py testecho``.

The planning and reporting of a run are pure and tested without a loop.
The command runs for real against a WebSocket server in a thread of the
test (the websockets library's, with endpoints that misbehave on purpose),
and, end to end, against uvicorn and daphne serving the example project.
"""

from __future__ import annotations

import errno
import io
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from django_realtime.testing import WebsocketCommunicator
from example_project.c10k.client import ConnectionClosed, HandshakeError
from example_project.c10k.consumers import EchoConsumer
from example_project.c10k.management.commands import testecho
from example_project.c10k.management.commands.testecho import Command as EchoCommand
from example_project.c10k.plan import (
    FD_RESERVE,
    due_clients,
    message_times,
    origin_for,
    parse_port_range,
    payload,
    plan_fd_limit,
    source_addresses_needed,
)
from example_project.c10k.report import (
    Failure,
    LoadStats,
    UnexpectedMessage,
    WrongEcho,
    failure_of,
    percentile,
)
from tests.e2e.example.test_chat_e2e import (
    ROOT,
    SERVER_COMMANDS,
    ServerProcess,
    example_env,
    free_port,
    http_get,
)

INFINITY = resource.RLIM_INFINITY

# -- planning ----------------------------------------------------------------


def test_fd_limit_is_left_alone_when_the_soft_limit_is_enough() -> None:
    assert plan_fd_limit(1000, soft=2000, hard=4000).soft is None
    assert plan_fd_limit(1000, soft=INFINITY, hard=INFINITY).problem is None


def test_fd_limit_soft_is_raised_to_the_hard_limit_when_too_low() -> None:
    plan = plan_fd_limit(10_000, soft=1024, hard=20_000)

    assert plan.soft == 20_000
    assert plan.problem is None


def test_fd_limit_soft_is_raised_to_what_is_needed_under_no_hard_limit() -> None:
    plan = plan_fd_limit(10_000, soft=1024, hard=INFINITY)

    assert plan.soft == 10_000 + FD_RESERVE
    assert plan.problem is None


def test_fd_limit_under_the_clients_says_how_to_raise_it() -> None:
    plan = plan_fd_limit(30_000, soft=1024, hard=20_000)

    assert plan.soft is None
    assert plan.problem is not None
    assert "20000" in plan.problem
    assert f"ulimit -n {30_000 + FD_RESERVE}" in plan.problem
    assert "LimitNOFILE" in plan.problem
    assert f"--clients {20_000 - FD_RESERVE}" in plan.problem


def test_port_range_counts_both_ends() -> None:
    assert parse_port_range("32768\t60999\n") == 28_232
    assert parse_port_range("1024 1024") == 1


@pytest.mark.parametrize("text", ["", "32768", "60999 32768", "0 10", "a b", "1 70000"])
def test_port_range_refuses_what_is_not_a_range(text: str) -> None:
    with pytest.raises(ValueError, match="Expected"):
        parse_port_range(text)


def test_source_addresses_are_added_past_half_the_ports_of_one() -> None:
    # 28,232 ports: connect() stays fast up to 14,116 per source address.
    assert source_addresses_needed(10_000, 28_232) == 1
    assert source_addresses_needed(13_116, 28_232) == 1
    assert source_addresses_needed(13_117, 28_232) == 2
    assert source_addresses_needed(19_000, 28_232) == 2
    assert source_addresses_needed(60_000, 28_232) == 5
    assert source_addresses_needed(5, 10) == 5


def test_clients_start_evenly_over_the_ramp() -> None:
    assert due_clients(-1.0, 100, 10.0) == 0
    assert due_clients(0.0, 100, 10.0) == 1
    assert due_clients(0.09, 100, 10.0) == 1
    assert due_clients(0.1, 100, 10.0) == 2
    assert due_clients(5.0, 100, 10.0) == 51
    assert due_clients(9.95, 100, 10.0) == 100
    assert due_clients(12.0, 100, 10.0) == 100


def test_a_ramp_of_zero_starts_every_client_at_once() -> None:
    assert due_clients(0.0, 100, 0.0) == 100


def test_echoes_are_spread_between_the_connection_and_the_end() -> None:
    assert message_times(10.0, 14.0, 3) == [11.0, 12.0, 13.0]
    assert message_times(10.0, 10.0, 2) == [10.0, 10.0]
    assert message_times(10.0, 9.0, 1) == [10.0]
    assert message_times(10.0, 20.0, 0) == []


def test_payloads_have_the_size_and_differ_by_client_and_number() -> None:
    texts = {payload(client, number, 16) for client in range(50) for number in range(5)}

    assert len(texts) == 250
    assert {len(text) for text in texts} == {16}
    assert payload(3, 1, 20) == "3:1:" + "x" * 16


def test_payloads_too_small_for_their_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16, got 8"):
        payload(1, 1, 8)
    with pytest.raises(ValueError, match="at least 19, got 16"):
        payload(1_234_567_890_123_456, 1, 16)


def test_origin_is_the_http_origin_of_the_server() -> None:
    assert origin_for("ws://127.0.0.1:8000/ws/c10k/echo/") == "http://127.0.0.1:8000"
    assert origin_for("ws://localhost/ws/") == "http://localhost"
    with pytest.raises(ValueError, match="Expected a ws://"):
        origin_for("http://127.0.0.1:8000/")


# -- reporting ---------------------------------------------------------------


FAILURES: list[tuple[BaseException, str, str]] = [
    (HandshakeError(403, b"Forbidden\n"), "refused with HTTP 403", "Forbidden"),
    (HandshakeError(0, b"", "No status line."), "bad handshake answer", "No status"),
    (ConnectionClosed(1011, "boom"), "closed by the server (1011)", "boom"),
    (WrongEcho("0:0:x", "1:0:x"), "wrong echo", "Expected '0:0:x', got '1:0:x'."),
    (UnexpectedMessage(b"hi"), "unexpected message", "got b'hi'."),
    (TimeoutError(), "timeout", ""),
    (ConnectionRefusedError(errno.ECONNREFUSED, "no"), "connection refused", "no"),
    (ConnectionResetError(errno.ECONNRESET, "gone"), "reset", "gone"),
    (OSError(errno.EADDRNOTAVAIL, "no address"), "EADDRNOTAVAIL", "no address"),
    (OSError(9999, "odd"), "errno 9999", "odd"),
    (ValueError("bad"), "ValueError", "bad"),
]


@pytest.mark.parametrize(("exc", "cause", "detail"), FAILURES)
def test_failures_are_named_by_their_cause(
    exc: BaseException, cause: str, detail: str
) -> None:
    failure = failure_of(7, "echo", exc)

    assert (failure.client, failure.phase, failure.cause) == (7, "echo", cause)
    assert detail in failure.detail
    assert failure.kind == f"echo: {cause}"


def test_a_failure_reads_as_a_sentence() -> None:
    assert str(Failure(3, "connect", "refused with HTTP 403", "Forbidden")) == (
        "client 3 failed at connect: refused with HTTP 403 (Forbidden)"
    )
    assert str(Failure(3, "echo", "timeout")) == "client 3 failed at echo: timeout"


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]

    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([4.0], 99) == 4.0
    with pytest.raises(ValueError, match="at least one"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile(values, 101)


def test_stats_track_connected_clients_and_their_peak() -> None:
    stats = LoadStats(clients=4, messages=2, start=100.0, ramp=2.0)
    for _ in range(3):
        stats.attempt()
    stats.handshake(100.5, 0.002)
    stats.handshake(101.0, 0.004)
    stats.echo(0.001)
    stats.disconnect()
    stats.fail(Failure(1, "hold", "closed by the server (1011)"))
    stats.handshake(101.5, 0.003)
    stats.fail(Failure(2, "connect", "timeout"))

    assert stats.connected == 2
    assert stats.peak == 2
    assert stats.failed == 2
    assert stats.progress_line(102.25) == (
        "   2.2 s  started 3/4  connected 2  peak 2  failures 2  echoes ok 1/8"
    )


def test_summary_gives_peak_handshake_rate_round_trips_and_failures() -> None:
    stats = LoadStats(clients=100, messages=1, start=0.0, ramp=10.0)
    for number in range(100):
        stats.attempt()
        if number < 98:
            stats.handshake(number / 10, (number + 1) / 1000)
            stats.echo((number + 1) / 10_000)
    for _ in range(98):
        stats.disconnect()
        stats.finish()
    stats.fail(Failure(98, "connect", "refused with HTTP 403"))
    stats.fail(Failure(99, "connect", "refused with HTTP 403"))

    assert stats.summary() == [
        "Clients: 100, 100 started, 98 finished, 2 failed.",
        "Peak concurrent connections: 98.",
        "Handshakes: 98 in 9.7 s, 10/s (the ramp asked for 10/s); each took "
        "p50 49.0 ms, p99 98.0 ms, max 98.0 ms.",
        "Echoes: 98 of 100 ok; round trip p50 4.9 ms, p99 9.8 ms, max 9.8 ms.",
        "Failures by cause:",
        "  connect: refused with HTTP 403: 2",
    ]


def test_summary_of_a_run_where_nothing_connected() -> None:
    stats = LoadStats(clients=2, messages=3, start=0.0, ramp=0.0)
    stats.attempt()
    stats.fail(Failure(0, "connect", "connection refused"))

    assert stats.summary()[2:] == [
        "Handshakes: none succeeded.",
        "Echoes: 0 of 6 ok.",
        "Failures by cause:",
        "  connect: connection refused: 1",
    ]


# -- the consumer --------------------------------------------------------------


@pytest.mark.timeout(10)
async def test_echo_consumer_sends_text_and_bytes_back_unchanged(
    settings: Any,
) -> None:
    # No channel layer configured, and none needed.
    settings.CHANNEL_LAYERS = {}
    communicator = WebsocketCommunicator(EchoConsumer.as_asgi(), "/ws/c10k/echo/")
    connected, _ = await communicator.connect()
    assert connected

    await communicator.send_to(text_data="héllo")
    assert await communicator.receive_from() == "héllo"
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert await communicator.receive_from() == b"\x00\xff"
    await communicator.send_to(bytes_data=b"")
    assert await communicator.receive_from() == b""
    await communicator.disconnect()


# -- the command against misbehaving servers ------------------------------------


def _echo(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def _echo_wrongly(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message[::-1])


def _never_answer(connection: ServerConnection) -> None:
    for _ in connection:
        pass


def _close_at_once(connection: ServerConnection) -> None:
    connection.close(1011, "going away on purpose")


def _chatter(connection: ServerConnection) -> None:
    connection.send("unasked")
    _echo(connection)


ENDPOINTS: dict[str, Callable[[ServerConnection], None]] = {
    "/echo/": _echo,
    "/wrong/": _echo_wrongly,
    "/silent/": _never_answer,
    "/close/": _close_at_once,
    "/chatter/": _chatter,
}


def _route(connection: ServerConnection) -> None:
    assert connection.request is not None
    ENDPOINTS[connection.request.path](connection)


def _refuse_unknown(connection: ServerConnection, request: Request) -> Response | None:
    if request.path in ENDPOINTS:
        return None
    return connection.respond(403, "No such endpoint.\n")


@pytest.fixture(scope="module")
def ws_server() -> Iterator[str]:
    """Return ``ws://host:port`` of a WebSocket server with ENDPOINTS."""
    with serve(
        _route, "127.0.0.1", 0, process_request=_refuse_unknown, compression=None
    ) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = server.socket.getsockname()[:2]
        yield f"ws://{host}:{port}"
        server.shutdown()
        thread.join(10)


def run_here(url: str, *args: str) -> tuple[str, CommandError | None]:
    """Run ``testecho --url url *args`` in-process; return its output and error."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(
            EchoCommand(),
            "--url",
            url,
            *args,
            stdout=out,
            stderr=err,
        )
    except CommandError as error:
        return out.getvalue() + err.getvalue(), error
    return out.getvalue() + err.getvalue(), None


QUICK = ("--clients", "5", "--ramp", "0.2", "--hold", "0.3", "--messages", "2")


@pytest.mark.timeout(30)
def test_testecho_reports_a_clean_run_and_succeeds(ws_server: str) -> None:
    output, error = run_here(f"{ws_server}/echo/", *QUICK, "--interval", "0.1")

    assert error is None, output
    assert output.startswith(
        f"5 clients to {ws_server}/echo/: starting over 0.2 s, holding 0.3 s, "
        "2 echoes of 64 characters each, from 1 source address.\n"
    )
    assert re.search(r"^ +0\.\d s  started \d/5  connected \d", output, re.M), output
    assert "Peak concurrent connections: 5.\n" in output
    assert "Echoes: 10 of 10 ok; round trip p50 " in output
    assert output.endswith("Failures: none.\n")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("path", "kind", "detail"),
    [
        ("/nowhere/", "connect: refused with HTTP 403", "No such endpoint."),
        ("/wrong/", "echo: wrong echo", "Expected '0:0:xxxx"),
        ("/silent/", "echo: timeout", ""),
        ("/close/", "hold: closed by the server (1011)", "going away on purpose"),
        ("/chatter/", "hold: unexpected message", "got 'unasked'"),
    ],
)
def test_testecho_prints_each_failure_with_its_cause_and_fails(
    ws_server: str, path: str, kind: str, detail: str
) -> None:
    output, error = run_here(f"{ws_server}{path}", *QUICK, "--timeout", "0.5")

    assert error is not None
    assert str(error) == "5 of 5 clients failed."
    for client in range(5):
        assert f"client {client} failed at {kind}" in output
    assert detail in output
    assert f"Failures by cause:\n  {kind}: 5\n" in output


@pytest.mark.timeout(30)
def test_testecho_reports_a_server_that_is_not_there() -> None:
    output, error = run_here(
        f"ws://127.0.0.1:{free_port()}/", "--clients", "2", "--ramp", "0"
    )

    assert error is not None
    assert "client 0 failed at connect: connection refused" in output
    assert "Handshakes: none succeeded." in output


@pytest.mark.timeout(30)
def test_testecho_spreads_clients_over_the_source_addresses_asked_for(
    ws_server: str,
) -> None:
    output, error = run_here(f"{ws_server}/echo/", *QUICK, "--source-addresses", "3")

    assert error is None, output
    assert "from 3 source addresses." in output


@pytest.mark.timeout(30)
def test_testecho_picks_enough_source_addresses_for_the_port_range(
    ws_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2,010 ports: 5 connections per source address, after the reserve.
    monkeypatch.setattr(testecho, "_available_ports", lambda: 2_010)
    quick = ("--clients", "12", "--ramp", "0.2", "--hold", "0.2")

    output, error = run_here(f"{ws_server}/echo/", *quick)

    assert error is None, output
    assert "12 clients" in output
    assert "from 3 source addresses." in output

    output, error = run_here(f"{ws_server}/echo/", *quick, "--source-addresses", "2")

    assert error is None, output
    assert "12 clients need 3 source addresses" in output
    assert "from 2 source addresses." in output


def test_testecho_refuses_more_clients_than_the_hard_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == INFINITY:
        pytest.skip("This process has no hard limit on open files.")

    output, error = run_here("ws://127.0.0.1:9/", "--clients", str(hard))

    assert error is not None
    assert f"may open at most {hard}" in str(error)
    assert "ulimit -n" in str(error)
    assert output == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--url", "http://127.0.0.1/"), "Expected --url ws://host:port/path/"),
        (
            ("--url", "ws://localhost/", "--source-addresses", "2"),
            "not 'localhost'",
        ),
        (("--source-addresses", "255"), "at most 254 source addresses"),
    ],
)
def test_testecho_refuses_options_that_cannot_work(
    args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command(EchoCommand(), *args, stdout=io.StringIO())


@pytest.mark.parametrize(
    "args", [("--clients", "0"), ("--size", "8"), ("--timeout", "0"), ("--ramp", "x")]
)
def test_testecho_refuses_out_of_range_numbers(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError, match=f"argument {args[0]}"):
        call_command(EchoCommand(), *args, stdout=io.StringIO())


# -- end to end: the example project on uvicorn and daphne -----------------------

# The servers as docs/topics/c10k.rst runs them: no access log line per
# connection, and a listen backlog that takes a burst of handshakes (daphne
# sets it through a Twisted endpoint; its default is 50).
C10K_SERVERS = {
    "uvicorn": [
        "-m",
        "uvicorn",
        "--host=127.0.0.1",
        "--port={port}",
        "--backlog=4096",
        "--no-access-log",
        "example_project.asgi:application",
    ],
    "daphne": [
        "-m",
        "daphne",
        "-e",
        "tcp:port={port}:interface=127.0.0.1:backlog=4096",
        "-v",
        "0",
        "example_project.asgi:application",
    ],
}


@pytest.fixture
def c10k_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], ServerProcess]]:
    """Return a function that starts one server process of the example project."""
    started: list[ServerProcess] = []

    def start(server: str) -> ServerProcess:
        name = f"{server}-c10k"
        monkeypatch.setitem(SERVER_COMMANDS, name, C10K_SERVERS[server])
        env = example_env(tmp_path / "db.sqlite3", DJANGO_DEBUG="0")
        process = ServerProcess(name, env, tmp_path / f"{name}.log")
        started.append(process)
        process.wait_until_listening()
        return process

    yield start
    for process in started:
        process.kill()


def run_testecho(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py testecho --url url *args`` as a user would."""
    return subprocess.run(
        [sys.executable, "manage.py", "testecho", "--url", url, *args],
        cwd=ROOT,
        # testecho opens no database and no channel layer; the path only
        # has to be somewhere.
        env=example_env(Path("/nonexistent/db.sqlite3"), EXAMPLE_REALTIME="memory"),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_one_server_process_holds_a_thousand_echo_clients_without_failure(
    c10k_server: Callable[[str], ServerProcess], server: str
) -> None:
    process = c10k_server(server)
    started = time.monotonic()

    result = run_testecho(
        f"ws://{process.address}/ws/c10k/echo/",
        *("--clients", "1000", "--ramp", "2", "--hold", "2"),
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output}\n{server}:\n{process.output}"
    assert "Clients: 1000, 1000 started, 1000 finished, 0 failed." in output
    assert "Peak concurrent connections: 1000.\n" in output
    assert "Echoes: 3000 of 3000 ok" in output
    assert "Failures: none." in output
    # Bounded: a ramp of 2 s and a hold of 2 s, plus start-up and closing.
    assert time.monotonic() - started < 60
    status, page = http_get(f"http://{process.address}/c10k/")
    assert status == 200
    assert f"ws://{process.address}/ws/c10k/echo/" in page


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_testecho_exits_with_1_and_says_why_when_the_server_refuses(
    c10k_server: Callable[[str], ServerProcess],
) -> None:
    process = c10k_server("uvicorn")

    result = run_testecho(
        f"ws://{process.address}/ws/nowhere/", "--clients", "3", "--ramp", "0"
    )

    assert result.returncode == 1
    assert "client 0 failed at connect: refused with HTTP 403" in result.stdout
    assert "  connect: refused with HTTP 403: 3" in result.stdout
    assert "CommandError: 3 of 3 clients failed." in result.stderr
