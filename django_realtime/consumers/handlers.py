"""Which method a message calls: the handler lookup of a consumer class.

A message of type ``chat.message`` calls the handler ``chat_message()``:
the name is the type with its dots turned into underscores. A name is a
handler only if it is public and is not a method of the framework itself;
the check is made on the name, after the conversion, so no spelling of a
type (``._secret``, ``.send``) reaches what is not a handler.

Handlers named ``websocket_*``, ``http_*`` and ``lifespan_*`` handle the
ASGI server's own messages. The server reaches them; a channel layer
message never does, however its type is spelled (``websocket.receive`` or
``websocket_receive``): :meth:`Handlers.layer_problem` says so.
"""

from __future__ import annotations

import inspect
from typing import Any

from django_realtime.exceptions import InvalidMessageError
from django_realtime.ops.logs import printable

__all__ = ["NOT_HANDLERS", "SERVER_HANDLERS", "Handlers", "handler_name"]

#: Method names a message type never reaches, on any consumer class (the
#: framework's other public methods are refused as well, see
#: :class:`Handlers`).
NOT_HANDLERS = frozenset(
    {
        "accept",
        "as_asgi",
        "close",
        "connect",
        "decode_json",
        "disconnect",
        "dispatch",
        "encode_json",
        "handle",
        "receive",
        "receive_json",
        "send",
        "send_body",
        "send_headers",
        "send_json",
        "send_response",
    }
)

#: Prefixes of the handlers of the ASGI server's own messages.
SERVER_HANDLERS = ("websocket_", "http_", "lifespan_")

# The package whose classes' methods are the framework's, not handlers.
_FRAMEWORK = "django_realtime."


def handler_name(kind: object) -> str:
    """Return the handler name for the message type ``kind``.

    Raises:
        InvalidMessageError: ``kind`` is not a non-empty string, or names a
            private method or one of :data:`NOT_HANDLERS`.
    """
    if type(kind) is not str or not kind:
        raise InvalidMessageError(
            "Expected a message with a non-empty string 'type', "
            f"got {printable(repr(kind))}."
        )
    name = kind.replace(".", "_")
    if name.startswith("_") or name in NOT_HANDLERS:
        raise InvalidMessageError(
            f"Message type '{printable(kind)}' names {printable(name)}(), "
            "which is not a handler."
        )
    return name


def _framework_methods(cls: type) -> frozenset[str]:
    """Return the public methods that the framework's classes give ``cls``.

    A method the framework defines (a hook such as ``receive_json``, even
    overridden, or a helper) is not a handler; its server handlers are
    governed by :data:`SERVER_HANDLERS` instead.
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith(_FRAMEWORK):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name.startswith(SERVER_HANDLERS):
                continue
            if callable(value) or isinstance(value, classmethod | staticmethod):
                names.add(name)
    return frozenset(names)


class Handlers:
    """Map the message types of one consumer class to its handlers.

    Lookups are cached per type; only types that name a handler are cached,
    in :attr:`entries`, which a caller may read first and fall back to
    :meth:`lookup` for a type it lacks.
    """

    __slots__ = ("_framework", "_layer_types", "cls", "entries")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        #: Message type -> ``(handler name, is a coroutine function)``.
        self.entries: dict[str, tuple[str, bool]] = {}
        self._framework: frozenset[str] | None = None
        # The types a layer message may have (found so by layer_problem()).
        self._layer_types: set[str] = set()

    def lookup(self, kind: Any) -> tuple[str, bool]:
        """Return ``(handler name, is a coroutine function)`` for ``kind``.

        Raises:
            InvalidMessageError: ``kind`` names no handler of the class.
        """
        try:
            return self.entries[kind]
        except (KeyError, TypeError):
            pass
        name = handler_name(kind)
        if self._framework is None:
            self._framework = _framework_methods(self.cls)
        if name in self._framework:
            raise InvalidMessageError(
                f"Message type '{printable(kind)}' names {name}(), a method of "
                "the framework, which is not a handler."
            )
        handler = getattr(self.cls, name, None)
        if not callable(handler):
            raise InvalidMessageError(
                f"No handler for message type '{printable(kind)}': "
                f"define {self.cls.__name__}.{printable(name)}(self, message)."
            )
        entry = self.entries[kind] = (name, inspect.iscoroutinefunction(handler))
        return entry

    def layer_problem(self, message: Any) -> str | None:
        """Return why a channel layer ``message`` cannot be handled, or ``None``.

        A layer message must name a handler, and not one of the server's
        messages' (see :data:`SERVER_HANDLERS`).
        """
        try:
            kind = message["type"]
        except (KeyError, TypeError, IndexError):
            return f"expected a dict with a 'type' key, got {printable(message)}."
        try:
            if kind in self._layer_types:
                return None
        except TypeError:
            pass  # An unhashable type: lookup() says what is wrong with it.
        try:
            name, _ = self.lookup(kind)
        except InvalidMessageError as exc:
            return str(exc)
        if name.startswith(SERVER_HANDLERS):
            return (
                f"its type '{printable(kind)}' names {name}(), which handles the "
                "server's messages; a layer message cannot pose as one."
            )
        self._layer_types.add(kind)
        return None
