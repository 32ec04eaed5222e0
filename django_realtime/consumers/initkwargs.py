"""Check the arguments of ``Consumer.as_asgi()`` when the routes load.

``as_asgi(**initkwargs)`` builds ``cls(**initkwargs)`` for every
connection; a wrong name is reported once, at start-up, rather than on
every connection.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["check_initkwargs"]


def check_initkwargs(cls: type, initkwargs: dict[str, Any], base: type) -> None:
    """Raise ``TypeError`` unless ``cls(**initkwargs)`` takes every name.

    A name goes to a constructor that declares it (any ``__init__`` of the
    chain that passes ``**kwargs`` on, up to the base's); the base's
    ``**kwargs`` sets the others as attributes, which the class must have.
    ``base`` is the consumer base class, whose constructor does that.
    """
    try:
        inspect.signature(cls).bind(**initkwargs)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}.as_asgi(): {exc}.") from None
    named: list[str] = []
    to_attributes = False
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        if klass is base:
            to_attributes = True
            break
        parameters = list(inspect.signature(init).parameters.values())[1:]
        named += [
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    for key in initkwargs:
        if key in named or (to_attributes and hasattr(cls, key)):
            continue
        expected = f"a parameter of its constructor ({', '.join(named) or 'none'})"
        if to_attributes:
            expected += " or an attribute of the class"
        raise TypeError(
            f"{cls.__name__}.as_asgi() got an unexpected keyword argument "
            f"{key!r}: expected {expected}."
        )
