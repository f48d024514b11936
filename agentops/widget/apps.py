from django.apps import AppConfig


class WidgetConfig(AppConfig):
    name = "agentops.widget"
    label = "widget"
    verbose_name = "Chat widget"
    default_auto_field = "django.db.models.BigAutoField"
