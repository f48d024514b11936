from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0006_seed_model_prices"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alertrule",
            name="metric",
            field=models.CharField(
                choices=[
                    ("error_rate", "Run error rate (failed / finished)"),
                    ("p95_latency", "Run latency p95 (ms)"),
                    ("cost", "Estimated cost in the window"),
                    ("handoff_rate", "Handoff rate (handed off / finished)"),
                    ("no_runs", "No runs at all in the window"),
                    ("queue_depth", "Runs waiting in the queue now"),
                    ("queue_wait", "Oldest queued run's wait now (s)"),
                    ("sla_breaches", "Handoffs in breach of a service level now (unresolved)"),
                    ("budget", "Budget used now (% of its limit, the fullest budget)"),
                ],
                max_length=20,
            ),
        ),
    ]
