"""System checks: each id fires on the setting it is about, and only then."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import CheckMessage
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import path

from django_realtime import checks
from django_realtime.auth import AuthMiddlewareStack
from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.middleware.limits import ConnectionLimits
from django_realtime.routing import ProtocolTypeRouter, URLRouter
from django_realtime.security import AllowedHostsOriginValidator, OriginValidator

GOOD_APP = "tests.runserver_project.asgi.application"
MEMORY = "django_realtime.layers.InMemoryChannelLayer"


@pytest.fixture(autouse=True)
def _valid_baseline(settings: Any) -> None:
    """Start every test from settings on which all checks pass."""
    settings.ASGI_APPLICATION = GOOD_APP
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": MEMORY}}


def ids(messages: list[CheckMessage]) -> list[str]:
    return [message.id or "" for message in messages]


def run_realtime_checks(deploy: bool = False) -> list[str]:
    from django.core.checks import run_checks

    return ids(run_checks(tags=[checks.TAG], include_deployment_checks=deploy))


def test_valid_settings_pass_every_check() -> None:
    assert run_realtime_checks() == []


def test_check_command_passes_on_valid_settings() -> None:
    call_command("check", "--tag", checks.TAG)


@pytest.mark.parametrize("value", [None, "", "application", 42])
def test_missing_or_malformed_asgi_application_is_e001(
    settings: Any, value: object
) -> None:
    if value is None:
        del settings.ASGI_APPLICATION
    else:
        settings.ASGI_APPLICATION = value

    messages = checks.check_asgi_application()

    assert ids(messages) == ["django_realtime.E001"]
    # The hint names the project's own package, where startproject put asgi.py.
    assert "'tests.asgi.application'" in (messages[0].hint or "")
    assert "tests/asgi.py" in (messages[0].hint or "")


def test_check_command_fails_on_missing_asgi_application(settings: Any) -> None:
    del settings.ASGI_APPLICATION

    with pytest.raises(SystemCheckError, match=r"django_realtime\.E001"):
        call_command("check", "--tag", checks.TAG)


def test_unimportable_asgi_application_is_e002_with_the_import_error(
    settings: Any,
) -> None:
    settings.ASGI_APPLICATION = "tests.no_such_module.application"

    messages = checks.check_asgi_application()

    assert ids(messages) == ["django_realtime.E002"]
    assert "ModuleNotFoundError" in messages[0].msg
    assert "tests.no_such_module" in messages[0].msg


def test_missing_attribute_in_asgi_module_is_e002(settings: Any) -> None:
    settings.ASGI_APPLICATION = "tests.runserver_project.asgi.no_such_app"

    assert ids(checks.check_asgi_application()) == ["django_realtime.E002"]


def test_non_callable_asgi_application_is_e005(settings: Any) -> None:
    settings.ASGI_APPLICATION = "tests.runserver_project.settings.SECRET_KEY"

    messages = checks.check_asgi_application()

    assert ids(messages) == ["django_realtime.E005"]
    assert "got str" in messages[0].msg


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        ("not a dict", "got str"),
        ({}, "'BACKEND' dotted path, got None"),
        ({"BACKEND": ""}, "got ''"),
        ({"BACKEND": "no.such.Layer"}, "cannot be imported: ModuleNotFoundError"),
        ({"BACKEND": MEMORY, "CONFIG": ["capacity", 10]}, "CONFIG of type list"),
        ({"BACKEND": MEMORY, "ROUTING": "x.routing"}, "'ROUTING'"),
    ],
)
def test_bad_channel_layer_entry_is_e003(
    settings: Any, layer: object, fragment: str
) -> None:
    settings.CHANNEL_LAYERS = {"default": layer}

    messages = checks.check_channel_layers()

    assert ids(messages) == ["django_realtime.E003"]
    assert fragment in messages[0].msg
    assert "CHANNEL_LAYERS['default']" in messages[0].msg


def test_check_command_fails_on_unimportable_layer_backend(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "no.such.Layer"}}

    with pytest.raises(SystemCheckError, match=r"django_realtime\.E003"):
        call_command("check", "--tag", checks.TAG)


def test_channel_layers_that_is_not_a_dict_is_e006_not_a_crash(
    settings: Any,
) -> None:
    settings.CHANNEL_LAYERS = ["default"]

    assert ids(checks.check_channel_layers()) == ["django_realtime.E006"]
    assert run_realtime_checks(deploy=True) == ["django_realtime.E006"]


def test_absent_channel_layers_passes(settings: Any) -> None:
    del settings.CHANNEL_LAYERS

    assert checks.check_channel_layers() == []


def test_aliases_without_default_are_w002(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"events": {"BACKEND": MEMORY}}

    messages = checks.check_channel_layers()

    assert ids(messages) == ["django_realtime.W002"]
    assert "'events'" in messages[0].msg


def test_empty_channel_layers_turns_layers_off_without_warning(
    settings: Any,
) -> None:
    settings.CHANNEL_LAYERS = {}

    assert checks.check_channel_layers() == []


def test_realtime_after_staticfiles_is_e004() -> None:
    apps_order = ["django.contrib.staticfiles", "django_realtime"]
    with override_settings(INSTALLED_APPS=apps_order):
        messages = checks.check_installed_apps()

    assert ids(messages) == ["django_realtime.E004"]
    assert "Move 'django_realtime' above" in (messages[0].hint or "")


def test_check_command_fails_when_staticfiles_shadows_runserver(
    settings: Any,
) -> None:
    apps_order = [
        "django.contrib.staticfiles",
        *(
            name
            for name in settings.INSTALLED_APPS
            if name != "django.contrib.staticfiles"
        ),
    ]
    with (
        override_settings(INSTALLED_APPS=apps_order),
        pytest.raises(SystemCheckError, match=r"django_realtime\.E004"),
    ):
        call_command("check", "--tag", checks.TAG)


def test_realtime_before_staticfiles_passes() -> None:
    with override_settings(
        INSTALLED_APPS=["django_realtime", "django.contrib.staticfiles"]
    ):
        assert checks.check_installed_apps() == []


@pytest.mark.parametrize(
    ("apps_order", "winner"),
    [
        (["daphne", "django_realtime"], "daphne's runs now"),
        (["django_realtime", "daphne"], "ours runs now"),
    ],
)
def test_daphne_also_installed_is_w001_naming_the_winner(
    apps_order: list[str], winner: str
) -> None:
    with override_settings(INSTALLED_APPS=apps_order):
        messages = checks.check_installed_apps()

    assert ids(messages) == ["django_realtime.W001"]
    assert winner in messages[0].msg


def test_channels_before_realtime_is_w004() -> None:
    with override_settings(INSTALLED_APPS=["channels", "django_realtime"]):
        assert ids(checks.check_installed_apps()) == ["django_realtime.W004"]
    with override_settings(INSTALLED_APPS=["django_realtime", "channels"]):
        assert checks.check_installed_apps() == []


def test_realtime_setting_that_is_not_a_dict_is_e007(settings: Any) -> None:
    settings.REALTIME = ["SYNC_THREADS"]

    assert ids(checks.check_realtime_setting()) == ["django_realtime.E007"]


def test_default_and_valid_stream_settings_pass(settings: Any) -> None:
    assert checks.check_streams() == []
    settings.REALTIME = {
        "STREAM_STORE": {
            "BACKEND": "django_realtime.streams.stores.MemoryHistoryStore",
            "OPTIONS": {},
        },
        "STREAM_HISTORY": {"chat.*": {"MAX_COUNT": 10, "MAX_AGE": None}},
    }
    assert checks.check_streams() == []


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"STREAM_STORE": "memory"}, "'BACKEND' dotted path"),
        ({"STREAM_STORE": {"BACKEND": "no.such.Store"}}, "cannot be imported"),
        (
            {
                "STREAM_STORE": {
                    "BACKEND": "django_realtime.layers.InMemoryChannelLayer"
                }
            },
            "HistoryStore subclass",
        ),
        (
            {
                "STREAM_STORE": {
                    "BACKEND": "django_realtime.streams.stores.MemoryHistoryStore",
                    "OPTIONS": 3,
                }
            },
            "'OPTIONS'",
        ),
        ({"STREAM_HISTORY": {"*": 1000}}, "dicts of limits"),
        ({"STREAM_HISTORY": {"*": {"MAX_COUNT": -1}}}, "max_count > 0"),
        (
            {
                "STREAM_HISTORY": {
                    "*": {"MAX_COUNT": None, "MAX_BYTES": None, "MAX_AGE": None}
                }
            },
            "history must be bounded",
        ),
        ({"STREAM_HISTORY": {"*": {"MAX_CONT": 5}}}, "invalid limits"),
    ],
)
def test_unusable_stream_settings_are_e008(
    settings: Any, options: dict[str, Any], fragment: str
) -> None:
    settings.REALTIME = options

    messages = checks.check_streams()

    assert ids(messages) == ["django_realtime.E008"]
    assert fragment in messages[0].msg


def test_unknown_realtime_option_is_w003(settings: Any) -> None:
    settings.REALTIME = {"SYNC_THREADS": 4, "SYNC_THREAD": 4}

    messages = checks.check_realtime_setting()

    assert ids(messages) == ["django_realtime.W003"]
    assert "'SYNC_THREAD'" in messages[0].msg
    assert "SYNC_THREADS" in (messages[0].hint or "")


def test_in_memory_default_layer_is_w005_on_deploy_only(settings: Any) -> None:
    assert "django_realtime.W005" not in run_realtime_checks()
    assert run_realtime_checks(deploy=True) == ["django_realtime.W005"]

    del settings.CHANNEL_LAYERS
    assert run_realtime_checks(deploy=True) == ["django_realtime.W005"]


def test_redis_default_layer_is_not_w005(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}
    }

    assert run_realtime_checks(deploy=True) == []


def test_check_deploy_command_reports_w005_without_failing() -> None:
    from io import StringIO

    out = StringIO()
    err = StringIO()
    call_command("check", "--deploy", "--tag", checks.TAG, stdout=out, stderr=err)

    assert "django_realtime.W005" in err.getvalue() + out.getvalue()


def test_module_docstring_lists_every_id() -> None:
    import re
    from pathlib import Path

    source = Path(checks.__file__).read_text()
    used = set(re.findall(r'id="(django_realtime\.[EW]\d{3})"', source))

    assert used
    for check_id in used:
        assert f"``{check_id}``" in (checks.__doc__ or "")


def test_app_order_checks_are_silent_when_realtime_is_not_installed() -> None:
    with override_settings(INSTALLED_APPS=["django.contrib.staticfiles", "daphne"]):
        assert checks.check_installed_apps() == []


def test_no_default_alias_is_not_w005(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"events": {"BACKEND": MEMORY}}

    assert checks.check_in_memory_layer_in_production() == []


def test_signed_cookies_session_engine_is_w006(settings: Any) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

    assert run_realtime_checks() == ["django_realtime.W006"]


@pytest.mark.parametrize("engine", ["db", "cache", "cached_db", "file"])
def test_server_side_session_engines_are_not_w006(settings: Any, engine: str) -> None:
    settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{engine}"

    assert checks.check_session_engine() == []


class Room(AsyncWebsocketConsumer):
    channel_layer_alias = None


ROOM_ROUTES = [path("ws/room/<str:name>/", Room.as_asgi())]
UNGUARDED = ProtocolTypeRouter(
    {"websocket": AuthMiddlewareStack(URLRouter(ROOM_ROUTES))}
)
GUARDED = ProtocolTypeRouter(
    {
        "websocket": AllowedHostsOriginValidator(
            ConnectionLimits(AuthMiddlewareStack(URLRouter(ROOM_ROUTES)))
        )
    }
)
STAR_GUARD = ProtocolTypeRouter(
    {"websocket": OriginValidator(URLRouter(ROOM_ROUTES), ["*"])}
)
PARTLY_GUARDED = URLRouter(
    [
        path("open/", URLRouter(ROOM_ROUTES)),
        path("closed/", OriginValidator(URLRouter(ROOM_ROUTES), ["https://a.test"])),
    ]
)
BARE_CONSUMER = ProtocolTypeRouter({"websocket": Room.as_asgi()})
HTTP_ONLY = ProtocolTypeRouter({"http": Room.as_asgi()})


def w007(settings: Any, application: str, hosts: list[str]) -> list[CheckMessage]:
    settings.ALLOWED_HOSTS = hosts
    settings.ASGI_APPLICATION = f"{__name__}.{application}"
    return checks.check_websocket_origin()


def test_any_host_and_unguarded_websocket_routes_is_w007(settings: Any) -> None:
    [message] = w007(settings, "UNGUARDED", ["*"])

    assert message.id == "django_realtime.W007"
    assert "ws/room/<str:name>/" in message.msg
    assert "AllowedHostsOriginValidator" in (message.hint or "")


def test_w007_reaches_the_check_command(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["*"]
    settings.ASGI_APPLICATION = f"{__name__}.UNGUARDED"

    assert run_realtime_checks() == ["django_realtime.W007"]


@pytest.mark.parametrize(
    ("application", "hosts"),
    [
        ("GUARDED", ["*"]),
        ("UNGUARDED", ["example.com"]),
        ("HTTP_ONLY", ["*"]),
        ("no_such_application", ["*"]),
    ],
)
def test_guarded_routes_or_listed_hosts_are_not_w007(
    settings: Any, application: str, hosts: list[str]
) -> None:
    assert w007(settings, application, hosts) == []


def test_an_application_the_check_cannot_see_into_is_not_w007(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["*"]

    assert checks.check_websocket_origin() == []  # GOOD_APP: a plain function


def test_an_origin_validator_allowing_star_guards_nothing(settings: Any) -> None:
    assert ids(w007(settings, "STAR_GUARD", ["*"])) == ["django_realtime.W007"]


def test_w007_names_only_the_unguarded_routes(settings: Any) -> None:
    [message] = w007(settings, "PARTLY_GUARDED", ["*"])

    assert "open/ws/room/<str:name>/" in message.msg
    assert "closed/" not in message.msg


def test_a_consumer_without_a_router_is_every_path(settings: Any) -> None:
    [message] = w007(settings, "BARE_CONSUMER", ["*"])

    assert "(every path)" in message.msg
