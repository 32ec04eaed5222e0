"""Every use of another project's private API, in one place.

The package relies on a few internals of asgiref, daphne (with Twisted and
autobahn), uvicorn, Django and asyncio that those projects do not
document. Each lives in this package's module for its project
(:mod:`.asgiref`, :mod:`.asyncio`, :mod:`.daphne`, :mod:`.django`,
:mod:`.uvicorn`), and nowhere else, with:

- the versions it was checked against, a :class:`Window`;
- a test in ``tests/integration/test_compat.py`` that fails when its shape
  changes (an attribute gone, a signature changed, a message reworded);
- outside its window, a fallback on public API or a clear error, never a
  silently wrong behaviour: an internal can keep its shape and change its
  meaning, so a version that was not checked does not use it at all.

Widening a window means running ``tests/integration/test_compat.py`` and the tests of
the module that uses the internal against the new version, then moving the
window's bound.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from dataclasses import dataclass

__all__ = ["Window", "parse_version"]

_LEADING_NUMBERS = re.compile(r"\d+(?:\.\d+)*")


def parse_version(text: str) -> tuple[int, ...] | None:
    """Return the leading release numbers of ``text`` (``"4.2.3rc1"``: (4, 2, 3)).

    Returns ``None`` for text that does not start with a number.
    """
    match = _LEADING_NUMBERS.match(text)
    if match is None:
        return None
    return tuple(int(part) for part in match.group().split("."))


@functools.cache
def _installed(distribution: str, module: str) -> str | None:
    # An imported package's __version__ is free; the metadata costs an
    # import of importlib.metadata and a search of the path.
    version = getattr(sys.modules.get(module), "__version__", None)
    if isinstance(version, str):
        return version
    metadata = importlib.import_module("importlib.metadata")
    try:
        found: str = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
    return found


@dataclass(frozen=True)
class Window:
    """The versions of a distribution an internal was checked against.

    Attributes:
        distribution: The distribution's name on PyPI (``"Twisted"``).
        lowest: The lowest version checked, as numbers (``(22, 4)``).
        below: The first version not checked (``(27,)``): the window is
            ``lowest <= version < below``.
        module: The package it installs, whose ``__version__`` is read if
            it is imported (default: ``distribution`` in lower case).
    """

    distribution: str
    lowest: tuple[int, ...]
    below: tuple[int, ...]
    module: str = ""

    def __str__(self) -> str:
        low = ".".join(map(str, self.lowest))
        high = ".".join(map(str, self.below))
        return f"{self.distribution} >= {low}, < {high}"

    def installed(self) -> str | None:
        """Return the installed version of the distribution, or ``None``."""
        return _installed(self.distribution, self.module or self.distribution.lower())

    def contains(self, version: str | None) -> bool:
        """Return whether ``version`` (``"4.2.3"``) is inside the window."""
        numbers = None if version is None else parse_version(version)
        return numbers is not None and self.lowest <= numbers < self.below

    def covers_installed(self) -> bool:
        """Return whether the installed version is inside the window."""
        return self.contains(self.installed())

    def describe_installed(self) -> str:
        """Return the installed version against the window, for a message."""
        version = self.installed()
        found = "none installed" if version is None else f"{version} installed"
        return f"{self.distribution} {found}; checked: {self}"
