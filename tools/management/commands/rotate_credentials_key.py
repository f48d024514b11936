from django.core.management.base import BaseCommand, CommandError

from tools.rotation import credentials_rotate_key
from tracing.platform.crypto import SecretUnreadable


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (tool credentials, OAuth2 tokens, model endpoint keys) "
        "under the first key of CREDENTIALS_KEY. Set CREDENTIALS_KEY=NEW,OLD, run this, then "
        "drop OLD."
    )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            counts = credentials_rotate_key()
        except SecretUnreadable as exc:
            raise CommandError(f"{exc} Nothing was changed.") from exc
        summary = ", ".join(f"{count} {what}" for what, count in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted under the first key: {summary}."))
