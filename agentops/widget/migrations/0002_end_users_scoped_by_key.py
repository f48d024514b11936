"""Widget end users become "key:<key id>:user:…" / "key:<key id>:visitor:…" (they were
"user:…" / "visitor:…" per agent, so any key of the agent could sign in as them).

Rows of an agent with exactly one widget key move to that key: conversations the widget
opened (no staff creator), their messages' and ratings' end user, and the end user's
memories and memory events. With several keys nobody can tell which key's site vouched for a
user, so those rows stay unscoped: operators still see them, and no key reaches them.
"""

from django.db import migrations
from django.db.models import Count, F, Value
from django.db.models.functions import Concat

PREFIXES = ("user:", "visitor:")


def scope_by_key(apps, schema_editor):  # type: ignore[no-untyped-def]
    WidgetKey = apps.get_model("widget", "WidgetKey")
    Session = apps.get_model("agentops", "Session")
    Message = apps.get_model("agentops", "Message")
    HandoffRating = apps.get_model("agentops", "HandoffRating")
    Memory = apps.get_model("memory", "Memory")
    MemoryEvent = apps.get_model("memory", "MemoryEvent")
    single = WidgetKey.objects.values("agent_id").annotate(keys=Count("id")).filter(keys=1)
    for row in single:
        agent_id = row["agent_id"]
        key_id = WidgetKey.objects.get(agent_id=agent_id).pk
        prefix = Value(f"key:{key_id}:")
        for kind in PREFIXES:
            sessions = Session.objects.filter(
                agent_id=agent_id, created_by__isnull=True, external_user__startswith=kind
            )
            users = list(sessions.values_list("external_user", flat=True).distinct())
            if not users:
                continue
            ids = list(sessions.values_list("pk", flat=True))
            Message.objects.filter(session_id__in=ids, end_user__in=users).update(
                end_user=Concat(prefix, F("end_user"))
            )
            HandoffRating.objects.filter(handoff__session_id__in=ids, end_user__in=users).update(
                end_user=Concat(prefix, F("end_user"))
            )
            Memory.objects.filter(agent_id=agent_id, user_key__in=users).update(
                user_key=Concat(prefix, F("user_key"))
            )
            MemoryEvent.objects.filter(agent_id=agent_id, user_key__in=users).update(
                user_key=Concat(prefix, F("user_key"))
            )
            Session.objects.filter(pk__in=ids).update(
                external_user=Concat(prefix, F("external_user"))
            )


def unscope(apps, schema_editor):  # type: ignore[no-untyped-def]
    tables = [
        (apps.get_model("agentops", "Session")._meta.db_table, "external_user"),
        (apps.get_model("agentops", "Message")._meta.db_table, "end_user"),
        (apps.get_model("agentops", "HandoffRating")._meta.db_table, "end_user"),
        (apps.get_model("memory", "Memory")._meta.db_table, "user_key"),
        (apps.get_model("memory", "MemoryEvent")._meta.db_table, "user_key"),
    ]
    for table, column in tables:
        schema_editor.execute(
            f"UPDATE {schema_editor.quote_name(table)} SET {column} ="  # noqa: S608 - our names
            f" regexp_replace({column}, '^key:[0-9]+:', '')"
            f" WHERE {column} ~ '^key:[0-9]+:(user|visitor):'"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("widget", "0001_initial"),
        ("agentops", "0020_takeover_and_csat"),
        ("memory", "0004_plural_names"),
    ]

    operations = [migrations.RunPython(scope_by_key, unscope)]
