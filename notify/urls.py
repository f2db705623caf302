from django.urls import path

from notify import views

app_name = "notify"

urlpatterns = [
    path("poll", views.poll, name="poll"),
    path("read", views.read, name="read"),
]
