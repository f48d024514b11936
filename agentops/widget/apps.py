from django.apps import AppConfig


class WidgetConfig(AppConfig):
    name = "agentops.widget"
    label = "widget"
    verbose_name = "Chat widget"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agentops.widget.models import WidgetKey
        from tools.rotation import key_rotation_register

        key_rotation_register(
            name="widget key secrets",
            model=WidgetKey,
            field="secret_ciphertext",
            what="secret of widget key",
        )
