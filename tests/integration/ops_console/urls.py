"""The URLconf of the ops console tests: the admin, and nothing else."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
