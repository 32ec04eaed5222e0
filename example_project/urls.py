"""URLs of the example project."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from django_realtime.ops.metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:index")),
    path("chat/", include("example_project.chat.urls")),
    path("jobs/", include("example_project.jobs.urls")),
    path("c10k/", include("example_project.c10k.urls")),
    path("life/", include("example_project.life.urls")),
    # Django's login and logout views, with the template
    # chat/templates/registration/login.html.
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # Prometheus's scrape (404 while REALTIME["METRICS"] is off). Keep it off
    # the public internet in production: see docs/topics/observability.rst.
    path("metrics", metrics_view),
]
