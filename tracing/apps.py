from typing import Any, cast

from django.apps import AppConfig


class TracingConfig(AppConfig):
    name = "tracing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_structlog import signals

        from tracing.platform.logs import remember_request_id

        signals.bind_extra_request_metadata.connect(
            remember_request_id, dispatch_uid="tracing.request_id"
        )
        self._admin_json_fields()

    @staticmethod
    def _admin_json_fields() -> None:
        """Every admin form reads JSON through json_parse (JsonFormField). The admin site is
        complete here: django.contrib.admin, first in INSTALLED_APPS, discovered every app's
        admin module in its own ready()."""
        from django.contrib import admin
        from django.db import models

        from tracing.platform.json_input import JsonFormField

        for model_admin in admin.site._registry.values():
            # The instance's own dict: ModelAdmin.__init__ merged the defaults into a copy.
            overrides = cast("dict[Any, dict[str, Any]]", model_admin.formfield_overrides)
            overrides.setdefault(models.JSONField, {})["form_class"] = JsonFormField
