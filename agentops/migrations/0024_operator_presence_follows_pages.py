from django.db import migrations, models


def keep_a_chosen_away(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Offline was what every login and logout left, so only an `away` was surely chosen."""
    OperatorState = apps.get_model("agentops", "OperatorState")
    OperatorState.objects.filter(presence="away").update(chosen="away")


class Migration(migrations.Migration):
    """Presence follows the operator's open pages: what they chose, and when a page was open."""

    dependencies = [
        ("agentops", "0023_breaker_window"),
    ]

    operations = [
        migrations.AddField(
            model_name="operatorstate",
            name="chosen",
            field=models.CharField(
                choices=[("online", "Online"), ("away", "Away"), ("offline", "Offline")],
                default="online",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="operatorstate",
            name="seen_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(keep_a_chosen_away, migrations.RunPython.noop),
    ]
