"""Mixins for WebSocket consumers.

:class:`LoginRequiredMixin` refuses anonymous users before ``connect()``
runs, as Django's mixin of the same name does for class-based views::

    class ChatConsumer(LoginRequiredMixin, AsyncJsonWebsocketConsumer):
        ...
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django_realtime.ops.logs import printable

__all__ = ["CLOSE_LOGIN_REQUIRED", "LoginRequiredMixin"]

logger = logging.getLogger("django_realtime.consumers")

#: The close code for an anonymous user: the client should not retry.
CLOSE_LOGIN_REQUIRED = 4003


class LoginRequiredMixin:
    """Refuse WebSocket connections whose ``scope["user"]`` is anonymous.

    The user comes from :func:`~django_realtime.auth.AuthMiddlewareStack`;
    without it in front of the consumer, every connection is refused and an
    error is logged.

    Attributes:
        login_required_close_code: Accept the handshake, then close with
            this code (default 4003, on which the browser client stops
            reconnecting), or ``None`` to refuse the handshake itself (the
            browser sees HTTP 403 and cannot tell it from a network error).
    """

    login_required_close_code: ClassVar[int | None] = CLOSE_LOGIN_REQUIRED

    scope: dict[str, Any]
    base_send: Any

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Refuse anonymous users; let the others through to ``connect()``."""
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            await super().websocket_connect(message)  # type: ignore[misc]
            return
        path = printable(self.scope.get("path", "?"))
        if user is None:
            logger.error(
                "Refused a WebSocket to %s: %s requires a login, but the scope "
                "has no 'user'. Put AuthMiddlewareStack in front of the routes.",
                path,
                type(self).__name__,
            )
        else:
            logger.info("Refused an anonymous WebSocket to %s: login required.", path)
        code = self.login_required_close_code
        if code is None:
            await self.base_send({"type": "websocket.close"})
        else:
            await self.base_send({"type": "websocket.accept"})
            await self.base_send({"type": "websocket.close", "code": code})
