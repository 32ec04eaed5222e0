"""The example project's settings, read from the environment.

Each test runs ``example_project/settings.py`` afresh under an environment
of its own, as a process starting with it would.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

SETTINGS = Path(__file__).resolve().parents[2] / "example_project" / "settings.py"

VARIABLES = (
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "METRICS_ALLOWED_NETWORKS",
)

OWN_KEY = "a-key-of-our-own-nobody-else-knows-0123456789"


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Return the settings module's names under ``env`` (and nothing else set)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_with_nothing_set_the_project_runs_in_debug_with_the_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_with(monkeypatch)

    assert settings["DEBUG"] is True
    assert settings["SECRET_KEY"] == settings["DEVELOPMENT_SECRET_KEY"]
    assert settings["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert settings["METRICS_ALLOWED_NETWORKS"] == []


def test_an_empty_secret_key_in_debug_is_the_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_with(monkeypatch, DJANGO_SECRET_KEY="")

    assert settings["SECRET_KEY"] == settings["DEVELOPMENT_SECRET_KEY"]


@pytest.mark.parametrize("value", ["0", "false", "False", "no", "off", " OFF "])
def test_debug_is_turned_off_by_any_usual_spelling_of_no(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    settings = settings_with(monkeypatch, DJANGO_DEBUG=value, DJANGO_SECRET_KEY=OWN_KEY)

    assert settings["DEBUG"] is False
    assert settings["SECRET_KEY"] == OWN_KEY


@pytest.mark.parametrize("value", ["1", "true", "yes", "on"])
def test_debug_is_turned_on_by_any_usual_spelling_of_yes(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    assert settings_with(monkeypatch, DJANGO_DEBUG=value)["DEBUG"] is True


def test_a_debug_value_that_means_neither_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        settings_with(monkeypatch, DJANGO_DEBUG="production")

    assert str(refused.value) == (
        "Expected DJANGO_DEBUG to be 1, true, yes or on (DEBUG on), or 0, false, "
        "no or off (DEBUG off), got 'production'."
    )


@pytest.mark.parametrize(
    ("env", "got"),
    [
        ({}, "the development key"),
        ({"DJANGO_SECRET_KEY": ""}, "the development key"),
        (
            {"DJANGO_SECRET_KEY": "django-insecure-example-project-development-key"},
            "the development key",
        ),
        (
            {"DJANGO_SECRET_KEY": "django-insecure-from-startproject"},
            "a key starting with 'django-insecure-'",
        ),
    ],
    ids=["unset", "empty", "the-development-key", "a-startproject-key"],
)
def test_without_debug_the_project_refuses_to_start_without_a_key_of_its_own(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], got: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        settings_with(monkeypatch, DJANGO_DEBUG="0", **env)

    message = str(refused.value)
    assert message.startswith(
        "Expected a secret key of your own in DJANGO_SECRET_KEY with DEBUG off "
        f"(DJANGO_DEBUG=0), got {got}."
    )
    assert "get_random_secret_key()" in message


def test_allowed_hosts_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_with(
        monkeypatch, DJANGO_ALLOWED_HOSTS=" chat.example.com, .example.org ,"
    )

    assert settings["ALLOWED_HOSTS"] == ["chat.example.com", ".example.org"]


def test_metrics_networks_are_read_as_networks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_with(
        monkeypatch, METRICS_ALLOWED_NETWORKS="10.1.2.3/8, 127.0.0.1,fd00::/8"
    )

    assert settings["METRICS_ALLOWED_NETWORKS"] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "fd00::/8",
    ]


def test_a_metrics_network_that_is_not_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        settings_with(monkeypatch, METRICS_ALLOWED_NETWORKS="10.0.0.0/8,prometheus")

    assert str(refused.value) == (
        "Expected METRICS_ALLOWED_NETWORKS to be networks separated by commas, "
        "such as 10.0.0.0/8,127.0.0.1, got 'prometheus' in '10.0.0.0/8,prometheus'."
    )
