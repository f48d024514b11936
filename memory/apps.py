import sys

from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        # RQ forks a work horse per job: loading the offline embedder once in the worker
        # spares every run ~0.3 s. Load only, no embedding: the tokenizer must not have
        # started its thread pool before the fork.
        if settings.MEMORY_EMBEDDER == "wordllama" and sys.argv[1:2] in (
            ["rqworker"],
            ["rqworker-pool"],
        ):
            from memory.embedders import get_embedder

            get_embedder()
