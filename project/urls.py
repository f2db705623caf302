from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from django.views.generic import RedirectView

from project.demo import preferences as demo_preferences
from project.demo import views as demo_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="inbox")),
    path("inbox/", demo_views.inbox, name="inbox"),
    path("inbox/remind/", demo_views.remind, name="remind"),
    path("inbox/like/", demo_views.like, name="like"),
    path("send/", demo_views.send, name="send"),
    path("preferences/", demo_preferences.preferences_page, name="preferences"),
    path("chat/", demo_views.chat_index, name="chat_index"),
    path("chat/<slug:room>/", demo_views.chat, name="chat"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("notify/", include("notify.urls")),
    path("", include("project.demo.urls")),
]

# notify.js and notify.css for the demo under uvicorn (DEBUG only; a deployment serves static files itself).
urlpatterns += staticfiles_urlpatterns()
