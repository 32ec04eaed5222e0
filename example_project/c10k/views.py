"""The c10k page: what the echo endpoint is, and how to load-test it."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

__all__ = ["index"]


def index(request: HttpRequest) -> HttpResponse:
    """Show how to run ``manage.py testecho`` against this server."""
    scheme = "wss" if request.is_secure() else "ws"
    context = {"echo_url": f"{scheme}://{request.get_host()}/ws/c10k/echo/"}
    return render(request, "c10k/index.html", context)
