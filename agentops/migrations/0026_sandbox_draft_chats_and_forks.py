"""Draft chats and forks are sandbox sessions now (models.SessionQuerySet): mark those made
before the rule, so they leave Console, Live conversations and the figures too."""

from django.db import migrations


def mark(apps, schema_editor):  # type: ignore[no-untyped-def]
    Session = apps.get_model("agentops", "Session")
    Session.objects.filter(forked_from__isnull=False).update(sandbox=True)
    Session.objects.filter(
        agent_version__isnull=False,
        title__startswith="Draft chat · ",
        external_user__startswith="draft",
    ).update(sandbox=True)


class Migration(migrations.Migration):
    dependencies = [("agentops", "0025_handed_off_label")]

    operations = [migrations.RunPython(mark, migrations.RunPython.noop)]
