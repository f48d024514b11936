from django.db import migrations, models


class Migration(migrations.Migration):
    """Built-in tools an agent may turn off (none: every version saved before offers all)."""

    dependencies = [
        ("agentops", "0021_fork_outcome_edited"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="builtins_off",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AlterField(
            model_name="agent",
            name="published_version",
            field=models.ForeignKey(
                blank=True,
                help_text=(
                    "The version new conversations run. Empty: only its draft chat runs it (an "
                    "agent with no version at all, made directly in the database, runs its "
                    "current settings)."
                ),
                null=True,
                on_delete=models.deletion.SET_NULL,
                related_name="+",
                to="agentops.agentversion",
            ),
        ),
    ]
