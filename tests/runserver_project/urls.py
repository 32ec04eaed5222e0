"""One view, so the HTTP test sees Django answer through daphne."""

from django.http import HttpRequest, HttpResponse
from django.urls import path


def index(request: HttpRequest) -> HttpResponse:
    """Answer with a fixed body."""
    return HttpResponse("runserver project index")


urlpatterns = [path("", index)]
