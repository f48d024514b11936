"""Re-embed memories after MEMORY_EMBEDDER (or its model) changed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Q
from tqdm import tqdm

from memory.embedders import get_embedder
from memory.models import Memory
from memory.services import memory_embed


class Command(BaseCommand):
    help = (
        "Embed every memory whose vector is missing or comes from another embedder than "
        "MEMORY_EMBEDDER (all of them with --all), in batches, with a progress bar."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="re-embed every memory")
        parser.add_argument("--batch-size", type=int, default=256)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            self.stderr.write("--batch-size must be at least 1.")
            raise SystemExit(2)
        embedder = get_embedder()
        rows = Memory.objects.all()
        if not options["all"]:
            rows = rows.filter(Q(embedding__isnull=True) | ~Q(embedder=embedder.name))
        total = rows.count()
        if total == 0:
            self.stdout.write(f"Every memory is embedded with {embedder.name}.")
            return
        with tqdm(
            total=total,
            unit="memory",
            desc=f"Embedding with {embedder.name}",
            file=self.stderr,
            disable=options["no_progress"],
        ) as bar:
            done = memory_embed(
                everything=options["all"], batch_size=options["batch_size"], progress=bar.update
            )
        self.stdout.write(f"Embedded {done} of {total} memories with {embedder.name}.")
