from django.core.management.base import BaseCommand

from agentops.embedded import stop_postgres, stop_redis


class Command(BaseCommand):
    help = "Stop the embedded Postgres and Redis (if running)."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        self.stdout.write(f"Redis stopped: {stop_redis()}")
        self.stdout.write(f"Postgres stopped: {stop_postgres()}")
