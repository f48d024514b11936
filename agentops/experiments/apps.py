from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "agentops.experiments"
    label = "experiments"
    verbose_name = "Datasets and experiments"
    default_auto_field = "django.db.models.BigAutoField"
