"""Names for the values that cross layers: who acts, which run or session, JSON.

Annotate with these instead of `Any`: an `Actor` is `request.user` as it comes (or nobody, for a
job); a `RunId`/`SessionId` is a UUID or its text (URL kwargs, JSON, job arguments); JSON read from
outside or from a JSONField is `JsonValue`, and a JSON object we build is a `JsonDict`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

# A signed-in user, an anonymous visitor, or nobody (a job, the scheduler).
Actor: TypeAlias = "User | AnonymousUser | None"
# A signed-in user or an anonymous visitor: `request.user`, a WebSocket scope's user.
RequestUser: TypeAlias = "User | AnonymousUser"

RunId: TypeAlias = uuid.UUID | str
SessionId: TypeAlias = uuid.UUID | str

JsonScalar: TypeAlias = str | int | float | bool | None
JsonValue: TypeAlias = "JsonScalar | list[JsonValue] | dict[str, JsonValue]"
JsonDict: TypeAlias = "dict[str, JsonValue]"
