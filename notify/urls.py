from django.urls import path

from notify import views

app_name = "notify"

urlpatterns = [
    path("poll", views.poll, name="poll"),
    path("read", views.read, name="read"),
    path("topics/<path:name>/poll", views.topic_poll, name="topic_poll"),
    path("topics/<path:name>/publish", views.topic_publish, name="topic_publish"),
]
