"""The ASGI types the package speaks, on top of :mod:`asgiref.typing`.

asgiref types each ASGI event exactly; consumers and middleware handle
events generically (by their ``type`` key), and routers and middleware add
keys of their own to the scope (``url_route``, ``session``, ``user``), so
the aliases below are the loose, structural forms of asgiref's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable

__all__ = [
    "ASGIApp",
    "ASGIReceiveCallable",
    "ASGISendCallable",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
]

#: An ASGI event: a dict with a ``type`` key (a channel layer message too).
Message = dict[str, Any]

#: A connection scope, with the keys routers and middleware add.
Scope = MutableMapping[str, Any]

#: The ``receive`` callable an application is given.
Receive = Callable[[], Awaitable[Message]]

#: The ``send`` callable an application is given.
Send = Callable[[Message], Awaitable[None]]

#: An ASGI 3 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

#: HTTP or handshake headers: pairs of bytes.
Headers = Iterable[tuple[bytes, bytes]]
