"""The package's import-time promises."""

import subprocess
import sys

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
