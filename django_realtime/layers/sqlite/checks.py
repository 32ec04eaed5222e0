"""System checks for SQLite files named in the settings.

Every ``CHANNEL_LAYERS`` alias whose ``BACKEND`` is the SQLite channel
layer, and a ``REALTIME["STREAM_STORE"]`` that is the SQLite history store,
has its file checked when ``manage.py check`` (or ``runserver``) runs:

Errors
    ``django_realtime.sqlite.E001``
        The file's directory does not exist (SQLite creates the file, not
        its directory).
    ``django_realtime.sqlite.E002``
        The file, or its directory, cannot be written by this process
        (SQLite in WAL mode writes ``-wal`` and ``-shm`` files beside it).

Warnings
    ``django_realtime.sqlite.W001``
        The file is on a network filesystem (NFS, SMB, ...), where SQLite's
        locks and WAL shared memory are unreliable and Unix sockets do not
        reach other machines: use it on a local disk, or use the Redis or
        PostgreSQL layers across machines.

Settings are read when the checks run, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from django_realtime.layers.sqlite.layer import DEFAULT_PATH

__all__ = ["NETWORK_FILESYSTEMS", "check_sqlite_files", "filesystem_of"]

#: Filesystem types (as in /proc/self/mountinfo) that are network mounts.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.glusterfs",
        "davfs",
    }
)

_LAYER = "SQLiteChannelLayer"
_STORE = "SQLiteHistoryStore"
_MOUNTINFO = "/proc/self/mountinfo"


def filesystem_of(path: Path, mountinfo: str = _MOUNTINFO) -> str | None:
    """Return the type of the filesystem holding ``path``, if it can be told.

    Reads the mount table of Linux; returns ``None`` elsewhere.
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as file:
            lines = file.readlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        fstype = line.split(" - ", 1)[1].split()[0]
        inside = target == mount_point or target.startswith(
            mount_point.rstrip("/") + "/"
        )
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fstype
    return best_type


def _path_in(options: object) -> Path | None:
    """Return the absolute ``path`` in a CONFIG or OPTIONS dict, or its default."""
    if not isinstance(options, dict):
        return None
    path = options.get("path", DEFAULT_PATH)
    if not isinstance(path, str | os.PathLike):
        return None
    return Path(os.path.abspath(path))


def _configured_files() -> Iterator[tuple[str, Path]]:
    """Yield (where it is configured, the file) for each SQLite file."""
    layers: Any = getattr(settings, "CHANNEL_LAYERS", None)
    if isinstance(layers, dict):
        for alias, layer in layers.items():
            if not isinstance(layer, dict):
                continue
            backend = layer.get("BACKEND")
            if isinstance(backend, str) and backend.endswith(_LAYER):
                path = _path_in(layer.get("CONFIG", {}))
                if path is not None:
                    yield f"CHANNEL_LAYERS[{alias!r}]", path
    realtime: Any = getattr(settings, "REALTIME", None)
    store = realtime.get("STREAM_STORE") if isinstance(realtime, dict) else None
    if isinstance(store, dict):
        backend = store.get("BACKEND")
        if isinstance(backend, str) and backend.endswith(_STORE):
            path = _path_in(store.get("OPTIONS", {}))
            if path is not None:
                yield "REALTIME['STREAM_STORE']", path


def _check_file(where: str, path: Path) -> list[CheckMessage]:
    directory = path.parent
    if not directory.is_dir():
        return [
            Error(
                f"{where} keeps its SQLite file at {path}, but the directory "
                f"{directory} does not exist.",
                hint="Create the directory, or set 'path' to a file in an "
                "existing one (SQLite creates the file, not its directory).",
                id="django_realtime.sqlite.E001",
            )
        ]
    messages: list[CheckMessage] = []
    unwritable = [
        str(candidate)
        for candidate in (directory, path)
        if candidate.exists() and not os.access(candidate, os.W_OK)
    ]
    if unwritable:
        messages.append(
            Error(
                f"{where} keeps its SQLite file at {path}, but this process "
                f"cannot write {' or '.join(unwritable)}.",
                hint="Every process of the project (server, workers, shell) "
                "must be able to write the file and its directory, where "
                "SQLite keeps its -wal and -shm files.",
                id="django_realtime.sqlite.E002",
            )
        )
    fstype = filesystem_of(directory)
    if fstype is not None and fstype in NETWORK_FILESYSTEMS:
        messages.append(
            Warning(
                f"{where} keeps its SQLite file at {path}, on a network "
                f"filesystem ({fstype}).",
                hint="SQLite's locking and WAL mode are unreliable on network "
                "filesystems, and only processes of one machine share the "
                "file: put it on a local disk, or use the Redis layer.",
                id="django_realtime.sqlite.W001",
            )
        )
    return messages


@register("realtime")
def check_sqlite_files(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the SQLite files of the layers and the stream store."""
    messages: list[CheckMessage] = []
    seen: set[tuple[str, Path]] = set()
    for where, path in _configured_files():
        if (where, path) not in seen:
            seen.add((where, path))
            messages.extend(_check_file(where, path))
    return messages
