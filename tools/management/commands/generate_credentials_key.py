from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print a new Fernet key for CREDENTIALS_KEY (put it first to rotate: NEW,OLD)."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        self.stdout.write(Fernet.generate_key().decode())
