"""The Django views of the browser tests' server (``ROOT_URLCONF`` there).

``POST /visit/``
    Put ``cart = "apples"`` in the session: the browser gets the cookie of
    an anonymous session.
``GET /whoami/``
    ``{"user": <username or "">, "cart": <the session's cart>}``.
``POST /realtime/session/``
    The session cookie exchange, where ``realtime.js`` takes the cookie of
    a session that a login over the socket rotated.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from django_realtime.middleware.handoff import take_session_cookie


@csrf_exempt
def visit(request: HttpRequest) -> HttpResponse:
    request.session["cart"] = "apples"
    return HttpResponse("visited")


def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"user": request.user.get_username(), "cart": request.session.get("cart")}
    )


urlpatterns = [
    path("visit/", visit),
    path("whoami/", whoami),
    path("realtime/session/", take_session_cookie, name="realtime-session"),
]
