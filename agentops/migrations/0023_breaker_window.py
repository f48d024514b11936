import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    """The circuit breaker weighs a window of recent calls (failure rate, distinct
    conversations) instead of counting failures in a row per endpoint."""

    dependencies = [
        ("agentops", "0022_agent_builtins_off"),
    ]

    operations = [
        migrations.CreateModel(
            name="BreakerCall",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                ("failed", models.BooleanField()),
                ("source", models.UUIDField()),
                (
                    "endpoint",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="breaker_calls",
                        to="agentops.modelendpoint",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["endpoint", "at"], name="breaker_call_window")],
            },
        ),
        migrations.RemoveField(
            model_name="modelendpoint",
            name="breaker_threshold",
        ),
    ]
