"""Make the django_realtime pytest plugin's fixtures available here.

An installed package loads the plugin everywhere through its ``pytest11``
entry point; a source checkout does not, so the fixtures are imported. When
both happen, these conftest fixtures simply take precedence.
"""

from django_realtime.testing.pytest_plugin import (
    _realtime_live_server_module,
    channel_layer,
    pytest_collection_modifyitems,
    realtime_asgi_application,
    realtime_live_server,
    websocket_communicator,
)

__all__ = [
    "_realtime_live_server_module",
    "channel_layer",
    "pytest_collection_modifyitems",
    "realtime_asgi_application",
    "realtime_live_server",
    "websocket_communicator",
]
