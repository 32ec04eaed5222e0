"""The stream outbox's setting is checked before the server starts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_realtime.streams.checks import check_stream_outbox


@pytest.mark.parametrize(
    ("outbox", "error"),
    [
        ("default", "must be a dict"),
        ({"DATABASE": ["default"]}, "unknown key"),
        ({"DATABASES": ["nowhere"]}, "'nowhere', which is not a key of DATABASES"),
        ({"DATABASES": "default"}, "must be a list of DATABASES keys"),
        ({"RELAY_AFTER": 0}, "'RELAY_AFTER'.*> 0"),
    ],
)
def test_a_bad_stream_outbox_setting_is_e010(
    settings: Any, outbox: object, error: str
) -> None:
    settings.REALTIME = {"STREAM_OUTBOX": outbox}

    [message] = check_stream_outbox()

    assert message.id == "django_realtime.E010"
    assert re.search(error, message.msg), message.msg


def test_the_default_and_a_valid_outbox_pass(settings: Any) -> None:
    assert check_stream_outbox() == []
    settings.REALTIME = {"STREAM_OUTBOX": {"DATABASES": ["default"], "INTERVAL": 2}}
    assert check_stream_outbox() == []


def test_manage_py_check_fails_on_a_bad_outbox(settings: Any) -> None:
    settings.REALTIME = {"STREAM_OUTBOX": {"DATABASES": ["nowhere"]}}

    with pytest.raises(SystemCheckError, match=r"django_realtime\.E010"):
        call_command("check", "--tag", "realtime")
