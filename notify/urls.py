from django.urls import path

from notify import history, monitoring, openapi, preference_views, unsubscribe, views

app_name = "notify"

urlpatterns = [
    path("poll", views.poll, name="poll"),
    path("read", views.read, name="read"),
    path("history", history.history, name="history"),
    path("history/unread_count", history.unread_count, name="history_unread_count"),
    path("history/read", history.mark_read, name="history_read"),
    path("history/unread", history.mark_unread, name="history_unread"),
    path("history/delete", history.delete_view, name="history_delete"),
    path("preferences", preference_views.preferences_view, name="preferences"),
    path("openapi.json", openapi.openapi, name="openapi"),
    path("topics/<path:name>/poll", views.topic_poll, name="topic_poll"),
    path("topics/<path:name>/publish", views.topic_publish, name="topic_publish"),
    path("metrics", monitoring.metrics_view, name="metrics"),
    path("health", monitoring.health, name="health"),
    path("topics/<path:name>/presence", views.topic_presence, name="topic_presence"),
    path("unsubscribe/<str:token>", unsubscribe.unsubscribe, name="unsubscribe"),
]
