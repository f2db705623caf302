from django.urls import path

from notify import monitoring, views

app_name = "notify"

urlpatterns = [
    path("poll", views.poll, name="poll"),
    path("read", views.read, name="read"),
    path("topics/<path:name>/poll", views.topic_poll, name="topic_poll"),
    path("topics/<path:name>/publish", views.topic_publish, name="topic_publish"),
    path("metrics", monitoring.metrics_view, name="metrics"),
    path("health", monitoring.health, name="health"),
]
