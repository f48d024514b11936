from django.apps import AppConfig


class TracingConfig(AppConfig):
    name = "tracing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_structlog import signals

        from tracing.logs import remember_request_id

        signals.bind_extra_request_metadata.connect(
            remember_request_id, dispatch_uid="tracing.request_id"
        )
