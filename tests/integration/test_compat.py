"""The private APIs of other projects the package uses still look as expected.

Each test here fails when a new release of asgiref, daphne, Twisted,
uvicorn, Django or Python moves, renames or rewords an internal of
:mod:`django_realtime._compat`, or when the installed version leaves the
window it was checked for: then check the internal again, against the new
version, and move the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import threading
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.utils import translation

from django_realtime._compat import (
    asgiref as asgiref_compat,
    asyncio as asyncio_compat,
    daphne as daphne_compat,
    django as django_compat,
    uvicorn as uvicorn_compat,
)

pytestmark = pytest.mark.timeout(30)


def _in_thread(fn: Any) -> Any:
    """Run ``fn`` in a new thread of its own; return its result."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(fn()))
    thread.start()
    thread.join()
    return results[0]


# -- asgiref -------------------------------------------------------------------


def test_the_installed_asgiref_is_in_the_window_its_internals_were_checked_for():
    assert asgiref_compat.WINDOW.covers_installed(), (
        asgiref_compat.WINDOW.describe_installed()
    )
    assert asgiref_compat.SUPPORTED


def test_asgirefs_context_handoff_has_the_shape_the_sync_pool_relies_on():
    assert asgiref_compat.shape_problems() == []


def test_adopting_a_context_in_another_thread_carries_django_translation_there():
    translation.activate("fr")
    try:
        context = contextvars.copy_context()
    finally:
        translation.deactivate()

    def in_the_context() -> str | None:
        asgiref_compat.adopt_context(context)
        return translation.get_language()

    assert _in_thread(lambda: context.run(in_the_context)) == "fr"


async def test_a_thread_bound_to_a_loop_runs_async_to_sync_coroutines_on_it():
    loop = asyncio.get_running_loop()

    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def bound() -> asyncio.AbstractEventLoop:
        asgiref_compat.bind_event_loop(loop)
        return async_to_sync(running_loop)()

    # The loop must stay free while the thread waits for it.
    assert await asyncio.to_thread(_in_thread, bound) is loop


def test_outside_the_window_the_handoff_refuses_with_the_versions_it_knows(
    monkeypatch,
):
    monkeypatch.setattr(asgiref_compat, "_restore", None)

    with pytest.raises(RuntimeError, match=r"checked only for asgiref >= 3\.8"):
        asgiref_compat.adopt_context(contextvars.copy_context())
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="check SUPPORTED first"):
            asgiref_compat.bind_event_loop(loop)
    finally:
        loop.close()


async def test_a_communicators_task_is_none_until_its_application_starts():
    from asgiref.testing import ApplicationCommunicator

    async def application(scope: Any, receive: Any, send: Any) -> None:
        pass

    communicator = ApplicationCommunicator(application, {"type": "http"})

    assert asgiref_compat.communicator_task(communicator) is None
    task = communicator.future
    assert asgiref_compat.communicator_task(communicator) is task
    await communicator.wait()


def test_a_communicator_started_by_its_constructor_has_its_task_found():
    # asgiref 3.8 keeps the task it starts in the constructor in ``future``.
    task = object()

    class Asgiref38Communicator:
        def __init__(self) -> None:
            self.future = task

    found = asgiref_compat.communicator_task(Asgiref38Communicator())

    assert found is task


async def test_outside_the_window_a_communicators_task_is_its_public_future(
    monkeypatch,
):
    from asgiref.testing import ApplicationCommunicator

    async def application(scope: Any, receive: Any, send: Any) -> None:
        pass

    monkeypatch.setattr(asgiref_compat, "_COMMUNICATOR_CHECKED", False)
    communicator = ApplicationCommunicator(application, {"type": "http"})

    task = asgiref_compat.communicator_task(communicator)

    assert task is communicator.future
    await communicator.wait()


# -- asyncio -------------------------------------------------------------------


def test_the_running_python_is_in_the_window_its_signal_handler_was_checked_for():
    assert asyncio_compat.SUPPORTED, asyncio_compat.describe_running()


def test_loop_add_signal_handler_installs_the_handler_recognised_by_name():
    assert asyncio_compat.shape_problems() == []


def test_the_handler_of_a_loop_reading_sigterm_is_told_from_a_python_handler():
    import signal

    def python_handler(signum: int, frame: Any) -> None:
        pass

    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.new_event_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
        placeholder = signal.getsignal(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGTERM)
    finally:
        loop.close()
        signal.signal(signal.SIGTERM, previous)

    assert asyncio_compat.handler_kind(placeholder) is asyncio_compat.HandlerKind.LOOP
    assert (
        asyncio_compat.handler_kind(python_handler) is asyncio_compat.HandlerKind.PYTHON
    )


def test_outside_the_window_no_handler_is_told_from_another(monkeypatch):
    monkeypatch.setattr(asyncio_compat, "SUPPORTED", False)

    assert asyncio_compat.handler_kind(print) is asyncio_compat.HandlerKind.UNKNOWN
    assert asyncio_compat.describe_running().endswith("checked: Python >= 3.11, < 3.14")


# -- Django --------------------------------------------------------------------


def test_the_installed_django_is_in_the_window_its_connection_state_was_checked_for():
    assert django_compat.WINDOW.covers_installed(), (
        django_compat.WINDOW.describe_installed()
    )
    assert django_compat.SUPPORTED


@pytest.fixture
def default_settings():
    """Change the default alias' settings for one test, then restore them.

    Close the connection after changing them: they apply as it connects.
    """
    connection = connections["default"]
    saved = dict(connection.settings_dict)
    yield connection.settings_dict
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


# Outside a test transaction: the connection is closed and opened again.
@pytest.mark.django_db(transaction=True)
def test_an_open_connection_has_the_attributes_the_boundaries_read(default_settings):
    connection = connections["default"]
    connection.ensure_connection()

    assert django_compat.shape_problems(connection) == []


# Outside a test transaction: the connection is closed and opened again.
@pytest.mark.django_db(transaction=True)
def test_close_at_is_when_the_connection_outlives_conn_max_age(default_settings):
    connection = connections["default"]
    default_settings["CONN_MAX_AGE"] = 60
    connection.close()
    before = time.monotonic()
    connection.ensure_connection()

    assert before + 60 <= django_compat.close_at(connection) <= time.monotonic() + 60

    connection.close()
    default_settings["CONN_MAX_AGE"] = None
    connection.ensure_connection()
    assert django_compat.close_at(connection) is None


# Outside a test transaction: the connection is closed and opened again.
@pytest.mark.django_db(transaction=True)
def test_a_failed_query_is_seen_as_an_error_on_the_connection(default_settings):
    connection = connections["default"]
    connection.ensure_connection()
    assert not django_compat.had_errors(connection)

    with contextlib.suppress(Exception), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_here")

    assert django_compat.had_errors(connection)


# Outside a test transaction: the connection is closed and opened again.
@pytest.mark.django_db(transaction=True)
def test_a_health_check_requested_runs_before_the_next_query(default_settings):
    connection = connections["default"]
    default_settings["CONN_HEALTH_CHECKS"] = True
    connection.close()
    connection.ensure_connection()
    assert connection.health_check_done

    django_compat.request_health_check(connection)
    assert not connection.health_check_done
    with connection.cursor():  # Django pings before handing out a cursor
        assert connection.health_check_done


# -- uvicorn -------------------------------------------------------------------


def test_the_installed_uvicorn_is_in_the_window_its_message_was_checked_for():
    assert uvicorn_compat.WINDOW.covers_installed(), (
        uvicorn_compat.WINDOW.describe_installed()
    )


async def _error_of_a_send_after_close(implementation: str) -> BaseException | None:
    """Serve one WebSocket with uvicorn; return what a send after close raised."""
    import uvicorn
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    raised: list[BaseException] = []
    finished = asyncio.Event()

    async def application(scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            await send({"type": "websocket.send", "text": "too late"})
        except BaseException as exc:
            raised.append(exc)
        finally:
            finished.set()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        application, ws=implementation, lifespan="off", log_level="critical"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with connect(f"ws://127.0.0.1:{port}/") as websocket:
            with contextlib.suppress(ConnectionClosed):
                await websocket.recv()
        await finished.wait()
    finally:
        server.should_exit = True
        await serving
        listener.close()
    return raised[0] if raised else None


# uvicorn's "websockets" implementation, deprecated, runs on websockets'
# legacy API, deprecated too, and warns in several ways.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated")
@pytest.mark.parametrize("implementation", ["websockets", "websockets-sansio"])
async def test_uvicorns_refusal_of_a_send_after_close_is_recognised(implementation):
    error = await _error_of_a_send_after_close(implementation)

    assert isinstance(error, RuntimeError), error
    assert uvicorn_compat.is_send_after_close(error), error


def test_other_errors_are_not_taken_for_a_send_after_close():
    assert not uvicorn_compat.is_send_after_close(RuntimeError("Event loop closed"))
    assert not uvicorn_compat.is_send_after_close(
        ValueError("Unexpected ASGI message, after sending 'websocket.close'.")
    )


# -- daphne and Twisted --------------------------------------------------------


def test_the_installed_daphne_and_twisted_are_in_the_windows_flow_control_knows():
    assert daphne_compat.DAPHNE.covers_installed(), (
        daphne_compat.DAPHNE.describe_installed()
    )
    assert daphne_compat.TWISTED.covers_installed(), (
        daphne_compat.TWISTED.describe_installed()
    )
    assert daphne_compat.supported()


def test_a_send_to_a_connection_gone_on_daphne_raises_one_of_the_send_failures():
    from autobahn.exception import Disconnected

    assert daphne_compat.send_failures() == (OSError, Disconnected)


def test_without_autobahn_loaded_a_gone_connection_raises_only_oserror(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "autobahn.exception", raising=False)

    assert daphne_compat.send_failures() == (OSError,)


def test_daphne_is_not_serving_in_a_process_whose_reactor_does_not_run():
    from tests.daphne_connections import DaphneConnection

    DaphneConnection()  # daphne's server module is loaded, its reactor idle

    assert not daphne_compat.serving()


async def test_daphnes_send_leads_to_the_connections_websocket_protocol():
    from tests.daphne_connections import DaphneConnection

    connection = DaphneConnection()
    sends: list[Any] = []

    async def application(scope: Any, receive: Any, send: Any) -> None:
        sends.append(send)

    await (await connection.start(application))

    assert daphne_compat.websocket_protocol(sends[0]) is connection.protocol


async def test_any_other_send_leads_nowhere():
    import functools

    async def send(message: Any) -> None:
        pass

    assert daphne_compat.websocket_protocol(send) is None
    assert daphne_compat.websocket_protocol(functools.partial(send)) is None


class _Producer:
    """Record what a transport asks of its producer."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


# Twisted hands pyOpenSSL the certificate and key in forms it deprecates.
@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_a_producer_attached_to_a_connection_follows_its_write_buffer(tls):
    if tls:
        pytest.importorskip("OpenSSL")
    from tests.daphne_connections import DaphneConnection

    connection = DaphneConnection(tls=tls)
    producer = _Producer()

    reading = daphne_compat.attach_producer(connection.protocol, producer)

    assert reading is connection.transport
    connection.write_buffer_full()
    connection.write_buffer_drained()
    connection.lose()
    assert producer.calls == ["pause", "resume", "stop"]
    # What attach_producer returns stops and restarts reading from the client.
    reading.pauseProducing()
    assert connection.tcp.producerState == "paused"
    reading.resumeProducing()
    assert connection.tcp.producerState == "producing"


def test_a_second_producer_is_not_attached_to_the_same_connection():
    from tests.daphne_connections import DaphneConnection

    connection = DaphneConnection()
    assert daphne_compat.attach_producer(connection.protocol, _Producer())

    assert daphne_compat.attach_producer(connection.protocol, _Producer()) is None


def test_outside_the_windows_no_producer_is_attached(monkeypatch):
    from tests.daphne_connections import DaphneConnection

    monkeypatch.setattr(daphne_compat, "supported", lambda: False)
    connection = DaphneConnection()

    assert daphne_compat.attach_producer(connection.protocol, _Producer()) is None


# -- runserver and the live server ----------------------------------------------


def test_daphnes_server_takes_the_arguments_runserver_and_the_live_server_pass():
    import inspect

    from daphne.server import Server

    parameters = inspect.signature(Server).parameters
    for name in (
        "application",
        "endpoints",
        "signal_handlers",
        "action_logger",
        "http_timeout",
        "root_path",
        "websocket_handshake_timeout",
        "verbosity",
        "ready_callable",
    ):
        assert name in parameters, name
    assert Server(application=None, endpoints=["tcp:port=0"]).listening_addresses == []


# -- nowhere else ----------------------------------------------------------------


def _private_uses_outside_compat() -> list[str]:
    """Return the private names of other projects used outside ``_compat``.

    Finds ``from x import _y`` and ``x._y`` where ``x`` is a module of
    another project imported by name; not what an object of another
    project's class hides (that takes reading the code).
    """
    import ast
    from pathlib import Path

    import django_realtime

    package = Path(django_realtime.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if "_compat" in path.relative_to(package).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(
                    alias.asname or alias.name.partition(".")[0]
                    for alias in node.names
                    if not alias.name.startswith("django_realtime")
                )
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                if (node.module or "").startswith("django_realtime"):
                    continue
                found.extend(
                    f"{path.name}:{node.lineno}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                )
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr != "_exit"  # os._exit() is public
                and isinstance(root := _root_name(node), str)
                and root in modules
            ):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def _root_name(node: Any) -> str | None:
    import ast

    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def test_no_module_outside_compat_reaches_for_another_projects_private_names():
    assert _private_uses_outside_compat() == []
