"""Page URLs of jobs."""

from django.urls import path

from example_project.jobs import views

app_name = "jobs"

urlpatterns = [
    path("", views.index, name="index"),
    path("state/", views.jobs_state, name="state"),
]
