from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "agentops.experiments"
    label = "experiments"
    verbose_name = "Datasets and experiments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agentops.experiments.jobs import experiments_reconcile_job
        from agentops.experiments.services import results_on_run_job_ended
        from agentops.hooks import event_subscribe, periodic_job_register

        event_subscribe(kinds=["run.job_ended"], handler=results_on_run_job_ended)
        periodic_job_register(func=experiments_reconcile_job, interval=30, job_timeout=120, ttl=60)
