"""`Agent.handoff_team` and `Handoff.team` now refer to a Team (filled in by 0006)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("agentops", "0008_teams_from_strings")]

    operations = [
        migrations.RemoveField(model_name="agent", name="handoff_team"),
        migrations.RemoveField(model_name="handoff", name="team"),
        migrations.RenameField(
            model_name="agent", old_name="handoff_team_ref", new_name="handoff_team"
        ),
        migrations.RenameField(model_name="handoff", old_name="team_ref", new_name="team"),
    ]
