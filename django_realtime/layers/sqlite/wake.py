"""Wake-up sockets: how a sender tells a receiving process to look now.

Each process that receives through a SQLite layer binds a Unix datagram
socket named after its process id, in a directory beside the database
file (``<file>.wake/``). A sender pokes the socket of each process it
wrote for, after its transaction commits: a one-byte datagram, never
waited for. The datagram carries nothing but "look": the messages are in
the file, so a lost poke delays a message (until the receiver's safety
poll) but loses nothing.

Poking answers what became of the receiver: :data:`WOKEN`, :data:`GONE`
(no socket: the process closed its layer or never received) or
:data:`DEAD` (a socket file nobody holds: the process died without
closing it, so its channels will never be read again).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import tempfile
import threading
from pathlib import Path

from django_realtime.exceptions import ChannelLayerError

__all__ = ["DEAD", "GONE", "WOKEN", "WakeSocket", "wake_dir"]

WOKEN = "woken"
GONE = "gone"
DEAD = "dead"

_SUFFIX = ".sock"
# sun_path holds 108 bytes on Linux, 104 on macOS; keep room for the name.
_MAX_PATH = 100


def wake_dir(
    database: str | os.PathLike[str], name_length: int, suffix: str = ".wake"
) -> Path:
    """Return the directory of the wake-up sockets of ``database``.

    It is ``<database><suffix>`` beside the file (each kind of user of the
    file has its own suffix), unless socket paths there would be too long
    for the system: then a directory in the temporary directory named
    after a hash of the file's absolute path, which every process computes
    alike.
    """
    path = Path(os.path.abspath(database))
    beside = path.with_name(path.name + suffix)
    if len(os.fsencode(beside)) + 1 + name_length + len(_SUFFIX) <= _MAX_PATH:
        return beside
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"django-realtime-{digest}{suffix}"


class WakeSocket:
    """Poke other processes' sockets, and own this process's, once bound.

    Args:
        directory: Where the sockets are (see :func:`wake_dir`).
        process_id: This process's id: the name of its socket.
    """

    def __init__(self, directory: Path, process_id: str) -> None:
        self.directory = directory
        self.process_id = process_id
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._bound: Path | None = None
        self._lock = threading.Lock()

    @property
    def bound(self) -> bool:
        """Return whether this process's socket receives pokes."""
        return self._bound is not None

    def fileno(self) -> int:
        """Return the socket's file descriptor, for ``select()``."""
        return self._sock.fileno()

    def bind(self) -> None:
        """Bind this process's socket, making its directory if needed.

        Raises:
            ChannelLayerError: the socket cannot be bound (the database
                file's directory does not exist, or is not writable).
        """
        with self._lock:
            if self._bound is not None:
                return
            try:
                self._bind()
            except OSError as error:
                raise ChannelLayerError(
                    f"Cannot bind the wake-up socket in {self.directory}: "
                    f"{error}. The SQLite file's directory must exist and be "
                    "writable."
                ) from error

    def _bind(self) -> None:
        path = self._path(self.process_id)
        for attempt in range(3):
            self.directory.mkdir(mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            try:
                self._sock.bind(os.fsdecode(path))
            except FileNotFoundError:
                # The last other process removed the directory as it closed,
                # between our mkdir and bind: make it again.
                if attempt == 2:
                    raise
                continue
            break
        self._bound = path

    def drain(self) -> bool:
        """Read every pending poke; return whether there was any."""
        poked = False
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return poked
            except OSError:
                return poked
            poked = True

    def poke(self, process_id: str) -> str:
        """Wake the process ``process_id``; return :data:`WOKEN`, GONE or DEAD."""
        path = self._path(process_id)
        try:
            self._sock.sendto(b"!", os.fsdecode(path))
        except BlockingIOError:
            # Its buffer is full of pokes it has not read yet: it will look.
            return WOKEN
        except ConnectionRefusedError:
            return DEAD
        except (FileNotFoundError, NotADirectoryError):
            return GONE
        except OSError as error:
            if error.errno == errno.ENOTSOCK:
                return GONE
            raise
        return WOKEN

    def processes(self) -> list[str]:
        """Return the ids of the processes with a socket, this one excluded."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return [
            name[: -len(_SUFFIX)]
            for name in names
            if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)] != self.process_id
        ]

    def forget(self, process_id: str) -> None:
        """Remove the socket file of a dead process."""
        with contextlib.suppress(OSError):
            self._path(process_id).unlink()

    def close(self) -> None:
        """Close the socket; remove this process's socket file.

        The directory goes too if no other process has a socket in it.
        """
        self._sock.close()
        if self._bound is not None:
            with contextlib.suppress(OSError):
                self._bound.unlink()
            with contextlib.suppress(OSError):
                self.directory.rmdir()
            self._bound = None

    def detach(self) -> None:
        """Close the socket, leaving the socket file (another process's)."""
        self._sock.close()
        self._bound = None

    def _path(self, process_id: str) -> Path:
        return self.directory / f"{process_id}{_SUFFIX}"
