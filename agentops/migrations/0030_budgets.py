import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0029_agent_guardrails_and_run_limits"),
    ]

    operations = [
        migrations.CreateModel(
            name="Budget",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("agent", "Agent"),
                            ("end_user", "End user"),
                            ("api_key", "API key"),
                            ("widget_key", "Widget key"),
                        ],
                        max_length=12,
                    ),
                ),
                ("subject", models.CharField(blank=True, default="", max_length=200)),
                (
                    "metric",
                    models.CharField(
                        choices=[("runs", "Runs"), ("tokens", "Tokens"), ("cost", "Cost (USD)")],
                        max_length=8,
                    ),
                ),
                (
                    "period",
                    models.CharField(
                        choices=[
                            ("minute", "per minute"),
                            ("day", "per day (UTC)"),
                            ("month", "per month (UTC)"),
                        ],
                        max_length=8,
                    ),
                ),
                (
                    "limit",
                    models.DecimalField(
                        decimal_places=6,
                        max_digits=20,
                        validators=[django.core.validators.MinValueValidator(0)],
                    ),
                ),
                (
                    "on_limit",
                    models.CharField(
                        choices=[
                            ("refuse", "Refuse new runs (429 with Retry-After)"),
                            ("handoff", "Hand the conversation to a person"),
                        ],
                        default="refuse",
                        max_length=8,
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                ("run_estimate", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "agent",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="budgets",
                        to="agentops.agent",
                    ),
                ),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.CreateModel(
            name="BudgetUsage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("subject", models.CharField(max_length=200)),
                ("window_start", models.DateTimeField()),
                ("used", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ("reserved", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                (
                    "budget",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage",
                        to="agentops.budget",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["window_start"], name="budget_usage_window_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("budget", "subject", "window_start"),
                        name="budget_usage_window_unique",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="BudgetHold",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "metric",
                    models.CharField(
                        choices=[("runs", "Runs"), ("tokens", "Tokens"), ("cost", "Cost (USD)")],
                        max_length=8,
                    ),
                ),
                ("remaining", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ("spent", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="agentops.run",
                    ),
                ),
                (
                    "usage",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="holds",
                        to="agentops.budgetusage",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["run"], name="budget_hold_run_idx")],
            },
        ),
    ]
