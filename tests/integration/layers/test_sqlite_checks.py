"""System checks of the SQLite files named in CHANNEL_LAYERS and REALTIME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_realtime.layers.sqlite.checks import filesystem_of

LAYER = "django_realtime.layers.sqlite.SQLiteChannelLayer"
STORE = "django_realtime.streams.stores.sqlite.SQLiteHistoryStore"


def sqlite_ids() -> list[str]:
    return sorted(
        message.id
        for message in run_checks(tags=["realtime"])
        if message.id and message.id.startswith("django_realtime.sqlite.")
    )


def test_a_layer_file_in_an_existing_writable_directory_passes(tmp_path: Path) -> None:
    layers = {"default": {"BACKEND": LAYER, "CONFIG": {"path": tmp_path / "rt.db"}}}

    with override_settings(CHANNEL_LAYERS=layers):
        assert sqlite_ids() == []


def test_a_layer_file_in_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "rt.db"
    layers = {"default": {"BACKEND": LAYER, "CONFIG": {"path": str(path)}}}

    with override_settings(CHANNEL_LAYERS=layers):
        assert sqlite_ids() == ["django_realtime.sqlite.E001"]


def test_a_store_file_in_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    realtime = {
        "STREAM_STORE": {
            "BACKEND": STORE,
            "OPTIONS": {"path": tmp_path / "missing" / "streams.db"},
        }
    }

    with override_settings(REALTIME=realtime):
        assert sqlite_ids() == ["django_realtime.sqlite.E001"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_file_this_process_cannot_write_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rt.db"
    path.write_bytes(b"")
    path.chmod(0o444)
    layers = {"default": {"BACKEND": LAYER, "CONFIG": {"path": path}}}

    with override_settings(CHANNEL_LAYERS=layers):
        assert sqlite_ids() == ["django_realtime.sqlite.E002"]


def test_a_file_on_a_network_filesystem_is_found_in_the_mount_table(
    tmp_path: Path,
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n"
        f"40 22 0:50 / {share} rw,relatime - nfs4 server:/export rw\n"
    )

    assert filesystem_of(share / "sub", str(mountinfo)) == "nfs4"
    assert filesystem_of(tmp_path, str(mountinfo)) == "ext4"
    assert filesystem_of(tmp_path, str(tmp_path / "absent")) is None
