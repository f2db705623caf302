from django.contrib import admin

from project.demo.models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "assignee", "done", "created_at"]
    list_filter = ["done"]
    # Chosen by name (the user admin's search_fields), not typed in as a user id.
    autocomplete_fields = ["assignee"]


admin.site.site_header = "notify demo administration"
admin.site.site_title = "notify demo admin"
