from django.contrib import admin

from project.demo.models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "assignee", "done", "created_at"]
    list_filter = ["done"]
    raw_id_fields = ["assignee"]
