from django.db import migrations


class Migration(migrations.Migration):
    """Room on each page for HOT updates: recall bumps access_count and last_accessed_at,
    which no index covers, so with free space on the page those updates skip the index
    maintenance (above all, an HNSW insert per row) a full page would force."""

    dependencies = [("memory", "0002_audit_and_expiry")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE memory_memory SET (fillfactor = 70)",
            "ALTER TABLE memory_memory RESET (fillfactor)",
        )
    ]
