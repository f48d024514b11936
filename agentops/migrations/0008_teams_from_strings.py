"""The free-text teams of agents and handoffs become Team rows (one per distinct name)."""

from django.db import migrations
from django.utils.text import slugify


def teams_from_strings(apps, schema_editor):  # type: ignore[no-untyped-def]
    Team = apps.get_model("agentops", "Team")
    Agent = apps.get_model("agentops", "Agent")
    Handoff = apps.get_model("agentops", "Handoff")
    names = set(Agent.objects.exclude(handoff_team="").values_list("handoff_team", flat=True))
    names |= set(Handoff.objects.exclude(team="").values_list("team", flat=True))
    for name in sorted(names):
        # Names that differ only in case or punctuation ("Billing", "billing ") become one team.
        team, _ = Team.objects.get_or_create(
            slug=slugify(name)[:64].strip("-") or "team", defaults={"name": name.strip()[:200]}
        )
        Agent.objects.filter(handoff_team=name).update(handoff_team_ref=team)
        Handoff.objects.filter(team=name).update(team_ref=team)


def strings_from_teams(apps, schema_editor):  # type: ignore[no-untyped-def]
    Agent = apps.get_model("agentops", "Agent")
    Handoff = apps.get_model("agentops", "Handoff")
    for agent in Agent.objects.exclude(handoff_team_ref=None).select_related("handoff_team_ref"):
        Agent.objects.filter(pk=agent.pk).update(handoff_team=agent.handoff_team_ref.slug)
    for handoff in Handoff.objects.exclude(team_ref=None).select_related("team_ref"):
        Handoff.objects.filter(pk=handoff.pk).update(team=handoff.team_ref.slug)


class Migration(migrations.Migration):
    dependencies = [("agentops", "0007_teams_and_invitations")]

    operations = [migrations.RunPython(teams_from_strings, strings_from_teams)]
