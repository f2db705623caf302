from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registration only: nothing here talks to Redis or the database.
        from notify import checks, receivers  # noqa: F401
        from notify.auth import revocation

        revocation.listen()
