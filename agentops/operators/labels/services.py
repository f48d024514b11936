"""Labels: put on and taken off conversations; renamed, recoloured, deleted by admins."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from agentops.auth import role_require
from agentops.events import event_record
from agentops.models import Session
from agentops.operators.models import Label, LabelColour
from tracing.platform.errors import Invalid

MAX_LABEL_CHARS = 50


def label_name_clean(*, name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise Invalid("give the label a name", field="name")
    if len(name) > MAX_LABEL_CHARS:
        raise Invalid(f"at most {MAX_LABEL_CHARS} characters", field="name")
    if "\x00" in name:
        raise Invalid("must not contain NUL characters", field="name")
    return name


@transaction.atomic
def session_label_add(*, session: Session, name: str, actor: Any, colour: str = "") -> Label:
    """Put a label on a conversation, creating the label if it is new (names are compared
    without regard to case; `colour`, from the palette, is used only for a new label)."""
    role_require(user=actor, role="operator")
    name = label_name_clean(name=name)
    if colour and colour not in LabelColour.values:
        raise Invalid(f"choose one of {', '.join(LabelColour.values)} or none", field="colour")
    label = Label.objects.filter(name__iexact=name).first()
    if label is None:
        try:
            with transaction.atomic():
                label = Label.objects.create(name=name, colour=colour, created_by=actor)
        except IntegrityError:  # created meanwhile by another operator
            label = Label.objects.get(name__iexact=name)
    if not label.sessions.filter(pk=session.pk).exists():
        label.sessions.add(session)
        event_record(
            kind="session.labels",
            actor=actor,
            session=session,
            audit="session.label",
            target=label.name,
        )
    return label


@transaction.atomic
def session_label_remove(*, session: Session, label: Label, actor: Any) -> None:
    role_require(user=actor, role="operator")
    if label.sessions.filter(pk=session.pk).exists():
        label.sessions.remove(session)
        event_record(
            kind="session.labels",
            actor=actor,
            session=session,
            audit="session.unlabel",
            target=label.name,
        )


@transaction.atomic
def label_update(*, label: Label, actor: Any, name: str, colour: str) -> Label:
    """Rename or recolour a label (admins): every conversation carrying it shows the change."""
    role_require(user=actor, role="admin", refusal="only admins change labels")
    name = label_name_clean(name=name)
    if colour not in ("", *LabelColour.values):
        raise Invalid(f"choose one of {', '.join(LabelColour.values)} or none", field="colour")
    if Label.objects.filter(name__iexact=name).exclude(pk=label.pk).exists():
        raise Invalid(f"a label named {name!r} exists already", field="name")
    before = label.name
    try:
        with transaction.atomic():  # taken meanwhile: the same error as above
            Label.objects.filter(pk=label.pk).update(name=name, colour=colour)
    except IntegrityError:
        raise Invalid(f"a label named {name!r} exists already", field="name") from None
    label.name, label.colour = name, colour
    event_record(
        kind="labels.changed",
        actor=actor,
        audit="label.update",
        target=before,
        detail={"name": name, "colour": colour},
    )
    return label


@transaction.atomic
def label_delete(*, label: Label, actor: Any) -> int:
    """Delete a label (admins): it leaves every conversation; returns how many carried it."""
    role_require(user=actor, role="admin", refusal="only admins delete labels")
    carried = label.sessions.count()
    label.delete()
    event_record(
        kind="labels.changed",
        actor=actor,
        audit="label.delete",
        target=label.name,
        detail={"conversations": carried},
    )
    return carried
