"""URLs of the example project."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from django_realtime.streams.http import stream_http_urls
from example_project.chat import converters  # noqa: F401  (registers "room")
from example_project.chat.consumers import ChatConsumer
from example_project.metrics import metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:index")),
    path("chat/", include("example_project.chat.urls")),
    # The chat's streams over SSE and long-polling, for browsers whose
    # network blocks WebSockets (room.js falls back to them by itself).
    path(
        "realtime/chat/<room:room_name>/",
        include(stream_http_urls(ChatConsumer, rate=10, burst=30)),
    ),
    path("jobs/", include("example_project.jobs.urls")),
    path("c10k/", include("example_project.c10k.urls")),
    path("life/", include("example_project.life.urls")),
    # Django's login and logout views, with the template
    # chat/templates/registration/login.html.
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # Prometheus's scrape, for staff users and METRICS_ALLOWED_NETWORKS only
    # (404 for anyone else, and while REALTIME["METRICS"] is off).
    path("metrics", metrics),
]
