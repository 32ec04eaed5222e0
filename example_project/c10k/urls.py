"""Page URLs of c10k."""

from django.urls import path

from example_project.c10k import views

app_name = "c10k"

urlpatterns = [
    path("", views.index, name="index"),
]
