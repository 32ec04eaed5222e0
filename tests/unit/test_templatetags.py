"""The template tags that put realtime.js on a page, through Django's engine."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.template.backends.django import DjangoTemplates
from django.test import override_settings

from django_realtime.templatetags.realtime import CLIENT_PATH


def render(source: str, **context: object) -> str:
    """Render with a Django template backend that finds the installed apps' tags."""
    engine = DjangoTemplates(
        {"NAME": "django", "DIRS": [], "APP_DIRS": False, "OPTIONS": {}}
    )
    return engine.from_string("{% load realtime %}" + source).render(context)


def import_map(html: str) -> dict[str, dict[str, str]]:
    match = re.fullmatch(r'<script type="importmap"[^>]*>(.*)</script>', html)
    assert match is not None, html
    result: dict[str, dict[str, str]] = json.loads(match.group(1))
    return result


def test_the_client_is_a_static_file_of_the_app() -> None:
    found = finders.find(CLIENT_PATH)

    assert found is not None
    assert found.endswith("django_realtime/static/django_realtime/realtime.js")


def test_client_url_is_the_static_url_of_realtime_js() -> None:
    assert render("{% realtime_client_url %}") == "/static/django_realtime/realtime.js"


def test_client_url_can_be_stored_in_a_variable() -> None:
    html = render('{% realtime_client_url as url %}<script src="{{ url }}">')

    assert html == '<script src="/static/django_realtime/realtime.js">'


@override_settings(STATIC_URL="https://cdn.example.com/assets/")
def test_client_url_follows_static_url() -> None:
    html = render("{% realtime_client_url %}")

    assert html == "https://cdn.example.com/assets/django_realtime/realtime.js"


def test_client_renders_an_import_map_naming_the_client_django_realtime() -> None:
    html = render("{% realtime_client %}")

    assert import_map(html) == {
        "imports": {"django_realtime": "/static/django_realtime/realtime.js"}
    }


def test_client_adds_the_nonce_a_content_security_policy_asks_for() -> None:
    html = render("{% realtime_client nonce=nonce %}", nonce='n0"nce')

    assert html.startswith('<script type="importmap" nonce="n0&quot;nce">')
    assert import_map(html)["imports"]["django_realtime"].endswith("realtime.js")


@override_settings(STATIC_URL="/s/</script><script>alert(1)/&/")
def test_import_map_json_cannot_close_its_script_element() -> None:
    html = render("{% realtime_client %}")

    body = html.removeprefix('<script type="importmap">').removesuffix("</script>")
    assert "<" not in body
    assert ">" not in body
    url = import_map(html)["imports"]["django_realtime"]
    assert url.startswith("/s/</script><script>alert(1)/&/")


@pytest.mark.parametrize("tag", ["realtime_client", "realtime_client_url"])
def test_tags_escape_nothing_twice_in_an_autoescaped_template(tag: str) -> None:
    assert "&amp;" not in render(f"{{% {tag} %}}")
