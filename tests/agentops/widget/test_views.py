"""The widget over HTTP: keys, the frame's checks of key, origin and identity, posting as
the end user, rate limits, and the admins' key page."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

import pytest
from django.test import Client

from agentops.models import (
    AuditEntry,
    Handoff,
    HandoffRating,
    Message,
    Role,
    Session,
    SessionStatus,
)
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.work.services import handoff_close
from agentops.widget.models import WidgetKey
from agentops.widget.selectors import session_state
from agentops.widget.services import rate_hit
from memory.services import memory_recall, memory_remember
from tests.agentops.widget.helpers import HOST_ORIGIN, api, frame_token, make_key
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    """A client from a network of its own: the per-address limits count across the tests of
    a minute (one Redis per test session), and a refusal reported by one test must not use up
    another's allowance."""
    return Client(REMOTE_ADDR=f"198.18.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}")


def sign(secret: str, user_id: str) -> str:
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def test_it_frames_the_chat_only_for_the_keys_allowed_origins(client):
    key, _ = make_key(allowed_origins=[HOST_ORIGIN, "http://127.0.0.1:8010"])
    response = client.get(f"/widget/frame/?key={key.public_key}&agent={key.agent.slug}")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors https://shop.example.com http://127.0.0.1:8010" in csp
    assert "X-Frame-Options" not in response
    elsewhere = client.get(
        f"/widget/frame/?key={key.public_key}", HTTP_REFERER="https://evil.example/page"
    )
    assert elsewhere.status_code == 403
    assert "may not be embedded on https://evil.example" in elsewhere.content.decode()
    assert "frame-ancestors 'none'" in elsewhere["Content-Security-Policy"]


def test_it_refuses_unknown_disabled_and_other_agents_keys(client):
    key, _ = make_key()
    other = AgentFactory(slug="billing")
    assert client.get("/widget/frame/?key=pk_nope").status_code == 403
    refused = client.get(f"/widget/frame/?key={key.public_key}&agent={other.slug}")
    assert refused.status_code == 403 and "another agent" in refused.content.decode()
    WidgetKey.objects.filter(pk=key.pk).update(enabled=False)
    assert client.get(f"/widget/frame/?key={key.public_key}").status_code == 403


def test_it_keeps_a_visitor_on_their_signed_id_and_ignores_a_forged_one(client):
    key, _ = make_key()
    token = frame_token(client, key)
    assert api(client, "messages", token, {"content": "hello"}).status_code == 201
    mine = Session.objects.get()
    assert mine.external_user.startswith(f"key:{key.pk}:visitor:") and mine.agent == key.agent
    cookie = client.cookies["aow_visitor"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/widget/"
    # Returning later: the same visitor, the same conversation.
    again = frame_token(client, key)
    assert api(client, "session", again).json() == {"session_id": str(mine.pk)}
    # A forged visitor cookie (the id of mine, unsigned or signed by someone else) is
    # replaced by a new visitor, who does not get my conversation.
    visitor_id = mine.external_user.removeprefix(f"key:{key.pk}:visitor:")
    for forged in (visitor_id, f"{visitor_id}:forged", client.cookies["aow_visitor"].value + "x"):
        stranger = Client()
        stranger.cookies["aow_visitor"] = forged
        token = frame_token(stranger, key)
        assert api(stranger, "session", token).json() != {"session_id": str(mine.pk)}
        assert stranger.cookies["aow_visitor"].value != forged


def test_it_refuses_a_forged_or_foreign_end_user_token(client):
    key, _ = make_key()
    token = frame_token(client, key)
    for forged in ("", token[:-2] + "xx", token.replace(":", ";", 1)):
        response = api(client, "messages", forged, {"content": "hi"})
        assert response.status_code == 403
        assert "invalid end-user token" in response.json()["error"]
    assert not Message.objects.exists()


def test_it_verifies_the_host_apps_signature_of_its_user(client):
    key, secret = make_key()
    _, other_secret = make_key(agent=key.agent)
    token = frame_token(client, key)
    for bad in (sign(other_secret, "42"), sign(secret, "43"), "00" * 32, ""):
        refused = api(client, "identify", token, {"user_id": "42", "user_token": bad})
        assert refused.status_code == 403
        assert "user_token is not this user_id signed" in refused.json()["error"]
    response = api(client, "identify", token, {"user_id": "42", "user_token": sign(secret, "42")})
    assert response.status_code == 200
    user_token = response.json()["token"]
    assert api(client, "messages", user_token, {"content": "I am 42"}).status_code == 201
    session = Session.objects.get()
    assert session.external_user == f"key:{key.pk}:user:42"


def test_another_key_of_the_agent_cannot_reach_a_users_conversation_or_memories(client):
    """Key B's site can sign any id; its "alice" is not key A's Alice (issue 21, item 18)."""
    key_a, secret_a = make_key()
    key_b, secret_b = make_key(agent=key_a.agent, allowed_origins=[HOST_ORIGIN])

    def signed_in(key, secret: str, user_id: str = "alice") -> str:  # type: ignore[no-untyped-def]
        token = frame_token(Client(), key)
        response = api(
            Client(), "identify", token, {"user_id": user_id, "user_token": sign(secret, user_id)}
        )
        assert response.status_code == 200
        return response.json()["token"]

    alice_a = signed_in(key_a, secret_a)
    assert api(client, "messages", alice_a, {"content": "canary 7731"}).status_code == 201
    hers = Session.objects.get()
    memory_remember(agent_id=key_a.agent_id, user_key=hers.external_user, text="alice likes tea")

    alice_b = signed_in(key_b, secret_b)
    theirs = api(client, "session", alice_b).json()["session_id"]
    assert theirs != str(hers.pk)
    other = Session.objects.get(pk=theirs)
    assert other.external_user == f"key:{key_b.pk}:user:alice"
    assert "canary" not in str(list(other.messages.values_list("content", flat=True)))
    refused = api(client, "rating", alice_b, {"session_id": str(hers.pk), "score": 1})
    assert refused.status_code == 403 and refused.json()["error"] == "not your conversation"

    # Her memories are scoped to her under key A: a run of key B's "alice" recalls none.
    def recalled(session: Session) -> list[str]:
        found = memory_recall(
            agent_id=session.agent_id, user_key=session.external_user, query="tea"
        )
        return [r.memory.text for r in found]

    assert recalled(hers) == ["alice likes tea"]
    assert recalled(other) == []
    # The same key's Alice (signed again) is still her.
    assert api(client, "session", signed_in(key_a, secret_a)).json()["session_id"] == str(hers.pk)


def test_it_posts_as_the_end_user_never_as_staff(client, bob):
    key, _ = make_key()
    client.force_login(bob)  # a staff login in the same browser changes nothing
    token = frame_token(client, key)
    assert api(client, "messages", token, {"content": "hello"}).status_code == 201
    message = Message.objects.get()
    assert message.role == Role.USER and message.author is None
    assert message.session.created_by is None


def test_it_refuses_calls_from_other_origins_than_the_frame(client):
    key, _ = make_key()
    token = frame_token(client, key)
    for origin in (HOST_ORIGIN, "https://evil.example", ""):
        response = api(client, "messages", token, {"content": "hi"}, HTTP_ORIGIN=origin)
        assert response.status_code == 403
        assert "calls must come from the chat frame" in response.json()["error"]


def test_it_names_the_bad_field(client):
    key, _ = make_key()
    token = frame_token(client, key)
    for body in ({}, {"content": "   "}, {"content": 3}, {"content": "x" * 32_001}):
        response = api(client, "messages", token, body)
        assert response.status_code == 400 and response.json()["field"] == "content"
    assert not Message.objects.exists()


def test_it_limits_messages_per_end_user_and_per_key(client):
    key, _ = make_key(user_messages_per_minute=2, key_messages_per_minute=3)
    token = frame_token(client, key)
    session = Session.objects.get(pk=api(client, "session", token).json()["session_id"])
    # Handed off: messages wait for the operator, so several in a row are accepted.
    Session.objects.filter(pk=session.pk).update(status=SessionStatus.HANDED_OFF)
    assert [api(client, "messages", token, {"content": f"m{i}"}).status_code for i in range(2)] == [
        201,
        201,
    ]
    limited = api(client, "messages", token, {"content": "m3"})
    assert limited.status_code == 429
    assert "You are sending messages too fast (at most 2 a minute)" in limited.json()["error"]
    assert 0 < int(limited["Retry-After"]) <= 60
    assert session.messages.count() == 2
    # Another visitor of the same key: the key's own limit (3) is reached after one more.
    other = Client()
    token = frame_token(other, key)
    assert api(other, "messages", token, {"content": "x"}).status_code == 201
    busy = api(other, "messages", token, {"content": "y"})
    assert busy.status_code == 429 and "This chat is very busy" in busy.json()["error"]


def test_it_limits_over_a_sliding_minute_not_per_clock_minute(db):
    """Two messages in the last second of a minute and one in the first of the next are three
    within a second: over a limit of 2 (a per-clock-minute count let them all through)."""
    bucket = f"test:{uuid.uuid4()}"
    minute = (time.time() // 60 + 1) * 60
    assert [rate_hit(bucket, 2, now=minute - 1) for _ in range(2)] == [0, 0]
    wait = rate_hit(bucket, 2, now=minute + 0.5)
    assert 0 < wait <= 60
    # Half a minute on, half the last minute's two have slid out: one more is allowed.
    assert rate_hit(f"{bucket}:b", 2, now=minute - 1) == 0
    assert rate_hit(f"{bucket}:b", 2, now=minute - 1) == 0
    assert rate_hit(f"{bucket}:b", 2, now=minute + 31) == 0
    assert rate_hit(f"{bucket}:b", 2, now=minute + 32) > 0


def test_it_lets_admins_create_keys_and_shows_the_secret_once(client, alice, bob):
    agent = AgentFactory(slug="demo")
    client.force_login(bob)
    assert client.get("/widget/keys/").status_code == 403
    client.force_login(alice)
    bad = client.post(
        "/widget/keys/",
        {
            "name": "Shop",
            "agent": "demo",
            "allowed_origins": "shop.example.com/path",
            "user_messages_per_minute": 10,
            "key_messages_per_minute": 100,
        },
    )
    assert bad.status_code == 400 and "is not an origin like" in bad.content.decode()
    response = client.post(
        "/widget/keys/",
        {
            "name": "Shop",
            "agent": "demo",
            "allowed_origins": "https://shop.example.com\nhttp://127.0.0.1:8010",
            "user_messages_per_minute": 10,
            "key_messages_per_minute": 100,
        },
    )
    key = WidgetKey.objects.get()
    page = response.content.decode()
    secret = key.secret
    assert secret in page and secret not in key.secret_ciphertext
    assert key.agent == agent and key.allowed_origins == [
        "https://shop.example.com",
        "http://127.0.0.1:8010",
    ]
    assert (
        f'&lt;script src="http://testserver/static/widget.js" data-agent="demo" '
        f'data-key="{key.public_key}" async&gt;&lt;/script&gt;' in page
    )
    listed = client.get("/widget/keys/").content.decode()
    assert key.public_key in listed and secret not in listed
    client.post(f"/widget/keys/{key.pk}/enabled", {"enabled": "0"})
    key.refresh_from_db()
    assert not key.enabled
    assert AuditEntry.objects.filter(action="widget_key.disable", actor=alice).exists()


def test_it_lets_the_end_user_rate_their_conversation_once_an_operator_closed_it(client, bob):
    key, _ = make_key()
    token = frame_token(client, key)
    assert api(client, "messages", token, {"content": "hello"}).status_code == 201
    session = Session.objects.get()
    mine = {"session_id": str(session.pk)}
    not_yet = api(client, "rating", token, {**mine, "score": 5})
    assert not_yet.status_code == 409 and "closed" in not_yet.json()["error"]
    assert session_state(session=session)["rating"] is None

    handoff = Handoff.objects.create(session=session, reason="asked for a person")
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_close(handoff=Handoff.objects.get(pk=handoff.pk), user=bob)
    session.refresh_from_db()
    assert session_state(session=session)["rating"] == {"score": None}

    for bad, field in (
        ({"score": 0}, "score"),
        ({"score": 6}, "score"),
        ({"score": "5"}, "score"),
        ({"score": True}, "score"),
        ({"score": 4, "comment": "x" * 2001}, "comment"),
        ({"score": 4, "comment": 3}, "comment"),
    ):
        refused = api(client, "rating", token, {**mine, **bad})
        assert refused.status_code == 400 and refused.json()["field"] == field, bad
    assert not HandoffRating.objects.exists()

    first = api(client, "rating", token, {**mine, "score": 4, "comment": " Quick and kind "})
    assert first.status_code == 201 and first.json() == {"score": 4, "comment": "Quick and kind"}
    again = api(client, "rating", token, {**mine, "score": 5})
    assert again.status_code == 200
    rating = HandoffRating.objects.get()
    assert (rating.handoff_id, rating.score, rating.comment) == (handoff.pk, 5, "")
    assert rating.end_user == session.external_user and rating.rated_by is None
    assert session_state(session=session)["rating"] == {"score": 5}

    # Nobody else rates my conversation: another visitor, or a made-up id.
    stranger = Client()
    other = frame_token(stranger, key)
    for body in (mine, {"session_id": "not-a-uuid"}, {}):
        refused = api(stranger, "rating", other, {**body, "score": 1})
        assert refused.status_code == 403 and refused.json()["error"] == "not your conversation"
    assert HandoffRating.objects.get().score == 5
    # Ratings count against the end user's message limit (10 a minute here).
    statuses = [api(client, "rating", token, {**mine, "score": 3}).status_code for _ in range(10)]
    assert 429 in statuses and HandoffRating.objects.count() == 1


def one_window(scenario):  # type: ignore[no-untyped-def]
    """Run `scenario(address)` from a fresh client address until it ran inside one fixed
    one-minute window of the limits (a window turning over mid-way restarts the count)."""
    for _ in range(3):
        window = int(time.time() // 60)
        result = scenario(f"198.51.100.{secrets.randbelow(250) + 1}")
        if int(time.time() // 60) == window:
            return result
    raise AssertionError("three minutes turned over mid-scenario")


def test_it_limits_new_visitors_per_client_address(settings):
    """A fresh visitor per frame load no longer steps around the per end user limit."""
    settings.WIDGET_NEW_VISITORS_PER_MINUTE = 3
    key, _ = make_key(user_messages_per_minute=1)

    def scenario(address: str) -> tuple[list[int], Any, int, int, list[int]]:
        frame = f"/widget/frame/?key={key.public_key}"
        clients = [Client(REMOTE_ADDR=address) for _ in range(4)]
        loads = [c.get(frame, HTTP_REFERER=f"{HOST_ORIGIN}/").status_code for c in clients[:3]]
        refused = clients[3].get(frame, HTTP_REFERER=f"{HOST_ORIGIN}/")
        returning = clients[0].get(frame, HTTP_REFERER=f"{HOST_ORIGIN}/").status_code
        elsewhere = Client(REMOTE_ADDR="203.0.113.9").get(frame, HTTP_REFERER=f"{HOST_ORIGIN}/")
        # Messages from as many fresh visitors as an address can make: one each.
        posted = []
        for c in clients[:3]:
            token = frame_token(c, key)
            posted += [api(c, "messages", token, {"content": f"m{i}"}).status_code for i in (1, 2)]
        return loads, refused, returning, elsewhere.status_code, posted

    loads, refused, returning, elsewhere, posted = one_window(scenario)
    assert loads == [200, 200, 200]
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert "Too many new chats from your network (at most 3 a minute)" in refused.content.decode()
    assert "frame-ancestors https://shop.example.com" in refused["Content-Security-Policy"]
    assert "aow_visitor" not in refused.cookies
    assert returning == 200  # a visitor with their cookie is not new
    assert elsewhere == 200
    assert posted == [201, 429] * 3


def test_it_limits_conversations_opened_per_client_address(settings):
    """Only opening a conversation counts, wherever it is opened: the current one asked for
    again does not, and a first message that opens one does (issue 21 item 22, review)."""
    settings.WIDGET_SESSIONS_PER_MINUTE = 2
    key, _ = make_key()

    def scenario(address: str) -> tuple[list[int], int, int, int]:
        client = Client(REMOTE_ADDR=address)
        token = frame_token(client, key)
        again = [api(client, "session", token).status_code for _ in range(3)]
        second, third = Client(REMOTE_ADDR=address), Client(REMOTE_ADDR=address)
        opened = api(second, "messages", frame_token(second, key), {"content": "hi"})
        third_token = frame_token(third, key)
        by_message = api(third, "messages", third_token, {"content": "hi"}).status_code
        by_session = api(third, "session", third_token).status_code
        return again, opened.status_code, by_message, by_session

    again, opened, by_message, by_session = one_window(scenario)
    assert again == [200, 200, 200]
    assert opened == 201
    assert (by_message, by_session) == (429, 429)
    assert Session.objects.count() == 2


def test_it_limits_sign_in_checks_per_client_address(settings):
    settings.WIDGET_IDENTIFY_PER_MINUTE = 3
    key, secret = make_key()

    def scenario(address: str):  # type: ignore[no-untyped-def]
        client = Client(REMOTE_ADDR=address)
        token = frame_token(client, key)
        wrong = [
            api(client, "identify", token, {"user_id": "42", "user_token": "00" * 32}).status_code
            for _ in range(3)
        ]
        right = api(client, "identify", token, {"user_id": "42", "user_token": sign(secret, "42")})
        return wrong, right

    wrong, right = one_window(scenario)
    assert wrong == [403, 403, 403]
    assert right.status_code == 429 and 0 < int(right["Retry-After"]) <= 60
    assert "Too many sign-in checks" in right.json()["error"]


def test_it_counts_an_ipv6_client_per_64():
    from agentops.widget.services import client_address_scope

    assert client_address_scope("2001:db8:1:2::7") == client_address_scope("2001:db8:1:2:ffff::1")
    assert client_address_scope("2001:db8:1:3::7") != client_address_scope("2001:db8:1:2::7")
    assert client_address_scope("198.51.100.7") == "198.51.100.7"


def test_it_counts_an_ipv4_client_of_a_dual_stack_listener_by_its_ipv4_address():
    """A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d: not one shared /64."""
    from agentops.widget.services import client_address_scope

    assert client_address_scope("::ffff:198.51.100.7") == "198.51.100.7"
    assert client_address_scope("::ffff:198.51.100.7") != client_address_scope(
        "::ffff:198.51.100.8"
    )


def test_it_tells_widget_js_where_the_chat_may_show_and_lists_refused_origins(client, alice):
    """A page on an origin the key does not allow gets no launcher (the browser would leave
    the panel blank), and the key's admins see that origin (issue 21, item 12)."""
    key, _ = make_key()
    other, _ = make_key(allowed_origins=["https://other.example"])
    disabled, _ = make_key()
    WidgetKey.objects.filter(pk=disabled.pk).update(enabled=False)

    def available(public_key: str, **headers: str):  # type: ignore[no-untyped-def]
        return client.get(f"/widget/api/available?key={public_key}", **headers)

    allowed = available(key.public_key, HTTP_ORIGIN=HOST_ORIGIN)
    assert allowed.json() == {"available": True}
    assert allowed["Access-Control-Allow-Origin"] == "*"
    refused = available(key.public_key, HTTP_ORIGIN="https://copycat.example")
    assert refused.json() == {"available": False}
    assert refused["Access-Control-Allow-Origin"] == "*"
    assert available(key.public_key, HTTP_REFERER="https://referer.example/p").json() == {
        "available": False
    }
    assert available(key.public_key, HTTP_ORIGIN="null").json() == {"available": False}
    assert available("pk_nope", HTTP_ORIGIN=HOST_ORIGIN).json() == {"available": False}
    assert available(disabled.public_key, HTTP_ORIGIN=HOST_ORIGIN).json() == {"available": False}
    junk = "https://" + "x" * 300 + ".example"
    assert available(key.public_key, HTTP_ORIGIN=junk).json() == {"available": False}
    framed = client.get(
        f"/widget/frame/?key={key.public_key}", HTTP_REFERER="https://framer.example/a"
    )
    assert framed.status_code == 403

    client.force_login(alice)
    page = client.get("/widget/keys/").content.decode()
    row = page[page.index(f'data-key="{key.public_key}"') :]
    row = row[: row.index("</tr>")]
    listed = row[row.index("data-refused-origins") :]
    for origin in ("https://framer.example", "https://referer.example", "https://copycat.example"):
        assert f"<code>{origin}</code>" in listed
    assert listed.index("framer") < listed.index("referer") < listed.index("copycat")
    assert HOST_ORIGIN not in listed and "xxxx" not in listed and "null" not in listed
    other_row = page[page.index(f'data-key="{other.public_key}"') :]
    assert "None in the last 7 days" in other_row[: other_row.index("</tr>")]


def test_a_visitor_still_gets_the_chat_when_the_limits_cannot_count(client, settings):
    """Redis unreachable (a port nothing listens on): the per-address limit lets the frame
    open rather than fail with a 500."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        }
    }
    key, _ = make_key()
    response = client.get(f"/widget/frame/?key={key.public_key}", HTTP_REFERER=f"{HOST_ORIGIN}/")
    assert response.status_code == 200 and "aow_visitor" in response.cookies


def test_an_end_user_is_called_by_their_sites_id_without_the_key_scope():
    from agentops.conversation import end_user_name, widget_end_user

    assert end_user_name(external_user=widget_end_user(key_id=3, identity="user:Ada")) == "Ada"
    assert end_user_name(external_user=widget_end_user(key_id=3, identity="visitor:x1")) == ""
    assert end_user_name(external_user="user:Ada") == "Ada"  # from before the scope
    assert end_user_name(external_user="ada@example.com") == "ada@example.com"  # an API client's


def test_an_admin_allows_a_refused_origin_from_the_keys_page(client, alice, bob):
    key, _ = make_key()
    assert client.get(
        f"/widget/api/available?key={key.public_key}", HTTP_ORIGIN="https://staging.example"
    ).json() == {"available": False}
    client.force_login(bob)
    url = f"/widget/keys/{key.pk}/origins"
    assert client.post(url, {"origin": "https://staging.example"}).status_code == 403
    client.force_login(alice)
    bad = client.post(url, {"origin": "staging.example/x"}, follow=True).content.decode()
    assert "origin: " in bad and "is not an origin like" in bad
    two = client.post(url, {"origin": "https://a.example https://b.example"}, follow=True)
    assert "give one origin" in two.content.decode()
    page = client.post(url, {"origin": "https://staging.example"}, follow=True).content.decode()
    key.refresh_from_db()
    assert key.allowed_origins == [HOST_ORIGIN, "https://staging.example"]
    assert AuditEntry.objects.filter(action="widget_key.allow_origin", actor=alice).count() == 1
    row = page[page.index(f'data-key="{key.public_key}"') :]
    assert "None in the last 7 days" in row[: row.index("</tr>")]
    assert client.get(
        f"/widget/api/available?key={key.public_key}", HTTP_ORIGIN="https://staging.example"
    ).json() == {"available": True}


def test_a_flood_of_made_up_origins_cannot_push_out_real_ones(client, alice, monkeypatch):
    """Anyone may call /widget/api/available with any Origin: a client network adds at most
    REFUSED_ORIGINS_PER_ADDRESS a minute, an origin counts the networks that reported it, and
    a full list only loses its least reported; the page says the origins are unverified and
    Allow asks first (issue 21 item 12, review)."""
    from agentops.widget import services

    monkeypatch.setattr(services, "REFUSED_ORIGINS_KEPT", 4)
    key, _ = make_key()

    def report(origin: str, address: str) -> None:
        Client(REMOTE_ADDR=address).get(
            f"/widget/api/available?key={key.public_key}", HTTP_ORIGIN=origin
        )

    for n in range(3):
        report("https://staging.example", f"198.51.100.{n + 1}")

    def scenario(address: str) -> None:
        for n in range(10):
            report(f"https://fake{n}.example", address)

    one_window(scenario)
    for n in range(20):
        report(f"https://spread{n}.example", f"203.0.113.{n + 1}")

    client.force_login(alice)
    page = client.get("/widget/keys/").content.decode()
    row = page[page.index(f'data-key="{key.public_key}"') :]
    listed = row[row.index("data-refused-origins") : row.index("</tr>")]
    assert "<code>https://staging.example</code>" in listed  # three networks: not pushed out
    assert "fake5.example" not in listed  # one network reported five at most
    assert listed.count("<li data-refused-origin>") == 4
    assert '<code>https://staging.example</code> <span class="muted">from 3 networks' in listed
    assert "unverified" in listed and "Yes, allow" in listed


def test_refused_origins_are_kept_in_the_cache_with_the_widgets_counters(client):
    """One owner of the widget's Redis data: the Django cache, as the rate limits use."""
    from django.core.cache import cache

    from agentops.widget.services import refused_origins_name

    key, _ = make_key()
    client.get(f"/widget/api/available?key={key.public_key}", HTTP_ORIGIN="https://x.example")
    assert "https://x.example" in (cache.get(refused_origins_name(key.pk)) or {})


@pytest.mark.parametrize("bad", ["https://a.example\x00", "https://a\x01.example", "\x00"])
def test_an_origin_with_a_control_character_is_refused_naming_it(client, alice, bad):
    key, _ = make_key()
    client.force_login(alice)
    response = client.post(f"/widget/keys/{key.pk}/origins", {"origin": bad}, follow=True)
    assert response.status_code == 200
    assert "holds a control character" in response.content.decode()
    key.refresh_from_db()
    assert key.allowed_origins == [HOST_ORIGIN]
    created = client.post(
        "/widget/keys/",
        {
            "name": "K",
            "agent": key.agent.slug,
            "allowed_origins": bad,
            "user_messages_per_minute": 10,
            "key_messages_per_minute": 300,
        },
    )
    assert created.status_code == 400  # Django's own check names a NUL first
    assert any(
        said in created.content.decode()
        for said in ("holds a control character", "Null characters are not allowed")
    )
