"""The demo's own URLs beside its pages in project/urls.py: ``path("", include("project.demo.urls"))``."""

from __future__ import annotations

from django.urls import path

from project.demo import views

urlpatterns = [
    path("favicon.ico", views.favicon, name="favicon"),
]
