from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from agentops.auth import api_key_create


class Command(BaseCommand):
    help = "Create a personal API key for USERNAME and print it once."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        _, raw = api_key_create(user=user, name=options["name"])
        self.stdout.write(raw)
