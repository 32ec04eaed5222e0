"""pytest fixtures for django_realtime projects.

The plugin is registered under the ``pytest11`` entry point
``django_realtime``, so it loads in every pytest run where the package is
installed. It imports neither Django settings nor models when loaded; each
fixture imports what it needs when a test asks for it.

Fixtures:

``websocket_communicator``
    A factory with :class:`~django_realtime.testing.WebsocketCommunicator`'s
    arguments. Every communicator it made whose application is still running
    at the end of the test is disconnected, and errors raised then fail the
    test. Needs pytest-asyncio.
``channel_layer``
    The ``"default"`` channel layer, flushed after the test.
``realtime_live_server``
    A running :class:`~django_realtime.testing.LiveServer` (real daphne),
    started once per module and restarted if a test left it stopped. With
    pytest-django it serves the test databases and the test gets
    ``transactional_db``, so rows it creates are visible to the server.
    Without pytest-django the server uses the databases as configured.
``realtime_asgi_application``
    What ``realtime_live_server`` serves: ``None`` means
    ``ASGI_APPLICATION``. Override it in a module or ``conftest.py``::

        @pytest.fixture(scope="module")
        def realtime_asgi_application():
            return "project.asgi:application"
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from django_realtime.layers.base import ChannelLayer
    from django_realtime.testing.communicators import (
        HeaderPairs,
        WebsocketCommunicator,
    )
    from django_realtime.testing.live_server import LiveServer

__all__ = [
    "channel_layer",
    "pytest_collection_modifyitems",
    "realtime_asgi_application",
    "realtime_live_server",
    "websocket_communicator",
]

CommunicatorFactory = Callable[..., "WebsocketCommunicator"]

_HAS_PYTEST_ASYNCIO = importlib.util.find_spec("pytest_asyncio") is not None


def _uses_pytest_django(request: pytest.FixtureRequest) -> bool:
    return request.config.pluginmanager.hasplugin("django")


def _require_django_settings(fixture: str) -> None:
    """Fail the test with the fix when Django has no settings to load."""
    from django.conf import settings

    if settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    pytest.fail(
        f"The {fixture} fixture needs Django settings, and none are configured. "
        "Install pytest-django and set DJANGO_SETTINGS_MODULE (in pytest's "
        "configuration or the environment).",
        pytrace=False,
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Give ``transactional_db`` to tests that use ``realtime_live_server``.

    pytest-django creates only the test databases that the collected tests
    name; a fixture requested at run time would come too late.
    """
    if not config.pluginmanager.hasplugin("django"):
        return
    for item in items:
        names = getattr(item, "fixturenames", None)
        if (
            isinstance(names, list)
            and "realtime_live_server" in names
            and "transactional_db" not in names
        ):
            names.append("transactional_db")


@pytest.fixture(scope="module")
def realtime_asgi_application() -> str | None:
    """Return the application ``realtime_live_server`` serves.

    ``None`` (the default) means ``ASGI_APPLICATION``; override this fixture
    to return ``"module:attribute"``.
    """
    return None


@pytest.fixture(scope="module")
def _realtime_live_server_module(
    request: pytest.FixtureRequest, realtime_asgi_application: str | None
) -> Iterator[LiveServer]:
    """Run one live server for the whole module."""
    _require_django_settings("realtime_live_server")
    from django_realtime.testing.live_server import LiveServer

    if _uses_pytest_django(request):
        # The test databases must exist before the server opens them.
        request.getfixturevalue("django_db_setup")
    server = LiveServer(realtime_asgi_application)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def realtime_live_server(
    request: pytest.FixtureRequest, _realtime_live_server_module: LiveServer
) -> LiveServer:
    """Return the module's running live server.

    With pytest-django the test also gets ``transactional_db``: the server is
    another process and sees only committed rows.
    """
    if _uses_pytest_django(request):
        request.getfixturevalue("transactional_db")
    server = _realtime_live_server_module
    if not server.running:
        server.start()
    return server


def _default_channel_layer() -> ChannelLayer:
    _require_django_settings("channel_layer")
    from django_realtime.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        pytest.fail(
            "The channel_layer fixture needs a 'default' entry in CHANNEL_LAYERS, "
            "and there is none.",
            pytrace=False,
        )
    return layer


class _CommunicatorTracker:
    """Make communicators and disconnect the ones still running at the end."""

    def __init__(self) -> None:
        self.made: list[WebsocketCommunicator] = []

    def make(
        self,
        application: Any,
        path: str = "/",
        headers: HeaderPairs | None = None,
        subprotocols: Iterable[str] | None = None,
        spec_version: str | None = None,
    ) -> WebsocketCommunicator:
        from django_realtime.testing.communicators import WebsocketCommunicator

        communicator = WebsocketCommunicator(
            application, path, headers, subprotocols, spec_version
        )
        self.made.append(communicator)
        return communicator

    async def disconnect_running(self) -> None:
        errors: list[Exception] = []
        for communicator in self.made:
            if not communicator.running:
                continue
            try:
                await communicator.disconnect()
            except Exception as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(
                "Applications failed while their communicators were closed at teardown",
                errors,
            )


if _HAS_PYTEST_ASYNCIO:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def websocket_communicator() -> AsyncIterator[CommunicatorFactory]:
        """Return a WebsocketCommunicator factory that cleans up after the test."""
        tracker = _CommunicatorTracker()
        yield tracker.make
        await tracker.disconnect_running()

    @pytest_asyncio.fixture
    async def channel_layer() -> AsyncIterator[ChannelLayer]:
        """Return the default channel layer, flushed after the test."""
        layer = _default_channel_layer()
        yield layer
        await layer.flush()

else:  # pragma: no cover - pytest-asyncio is a test dependency

    @pytest.fixture
    def websocket_communicator() -> NoReturn:
        """Fail: the communicators are async and need pytest-asyncio."""
        pytest.fail(
            "The websocket_communicator fixture needs pytest-asyncio: "
            "pip install pytest-asyncio.",
            pytrace=False,
        )

    @pytest.fixture
    def channel_layer() -> Iterator[ChannelLayer]:
        """Return the default channel layer, flushed after the test."""
        from asgiref.sync import async_to_sync

        layer = _default_channel_layer()
        yield layer
        async_to_sync(layer.flush)()
