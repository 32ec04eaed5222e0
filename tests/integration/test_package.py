"""The package's import-time promises."""

import subprocess
import sys
from pathlib import Path

import django_realtime

CHECK = """
import sys
import django_realtime
from django.conf import settings
assert not settings.configured, "settings were read"
models = [m for m in sys.modules if m.endswith(".models") or "contrib.auth" in m]
assert not models, models
from django_realtime import WebsocketConsumer, URLRouter
print(WebsocketConsumer.__module__, URLRouter.__module__)
"""


def test_import_reads_no_settings_and_imports_no_models():
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django_realtime.consumers.websocket",
        "django_realtime.routing",
    ]


def test_top_level_names_resolve_to_the_public_modules():
    from django_realtime.consumers import AsyncJsonWebsocketConsumer
    from django_realtime.delivery import sends as delivery
    from django_realtime.layers import get_channel_layer

    assert django_realtime.AsyncJsonWebsocketConsumer is AsyncJsonWebsocketConsumer
    assert django_realtime.get_channel_layer is get_channel_layer
    assert django_realtime.send_to_group is delivery.send_to_group
    assert django_realtime.asend_to_channel is delivery.asend_to_channel
    assert set(django_realtime.__all__) <= set(dir(django_realtime))


def test_the_consumer_names_keep_their_import_paths_after_the_split():
    from django_realtime.consumers import frames, websocket

    for name in websocket.__all__:
        assert getattr(websocket, name) is not None
    assert websocket.CLOSE_TOO_SLOW is frames.CLOSE_TOO_SLOW
    assert websocket.DEFAULT_MAX_MESSAGE_SIZE is frames.DEFAULT_MAX_MESSAGE_SIZE
    assert websocket.WebsocketConsumer.__module__ == websocket.__name__


def test_consumer_and_delivery_modules_stay_under_500_lines():
    package = Path(django_realtime.__file__).parent
    sizes = {
        str(path.relative_to(package)): len(path.read_text().splitlines())
        for folder in ("consumers", "delivery")
        for path in (package / folder).glob("*.py")
    }
    assert sizes
    assert {name: n for name, n in sizes.items() if n >= 500} == {}
