import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from agentops.agents.services import agent_version_create, agent_version_publish
from agentops.endpoints.services import endpoint_ensure_default
from agentops.models import Agent
from agentops.people.services import roles_ensure
from tools.services import python_tools_sync

DEMO_PROMPT = (
    "You are the AgentOps demo agent. Answer briefly. Use tools when they help; "
    "hand off to a human when the user asks for one or you cannot help."
)


# A triage agent that passes conversations to two specialists (issue 24's transfers).
SPECIALISTS = {
    "billing": (
        "Billing",
        "You are the billing specialist. You handle refunds, invoices and payments.",
        "Billing: refunds, invoices, payments and charges.",
    ),
    "tech-support": (
        "Tech support",
        "You are the technical support specialist. You fix login problems, errors and devices.",
        "Technical problems: logins, passwords, errors, crashes and devices.",
    ),
}
TRIAGE_PROMPT = (
    "You are the front desk. Greet the user, find out what they need, and transfer the "
    "conversation to the specialist who handles it; answer general questions yourself."
)


def publish(agent: Agent, note: str) -> None:
    version = agent_version_create(agent=agent, author=None, note=note)
    if agent.published_version_id != version.pk:
        agent_version_publish(version=version, actor=None)


class Command(BaseCommand):
    help = (
        "Create the roles, an admin user (password printed once), the default endpoint, the "
        "demo agent, and a triage agent with two specialists it transfers to."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--username", default="admin")

    @transaction.atomic
    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        roles_ensure()
        User = get_user_model()
        username = options["username"]
        if not User.objects.filter(username=username).exists():
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            user.groups.add(Group.objects.get(name="admin"))
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created admin user '{username}' with password: {password}  (shown once; change it at /account/password/)"
                )
            )
        else:
            self.stdout.write(f"Admin user '{username}' exists; its password is unchanged.")
        endpoint = endpoint_ensure_default()
        tools = python_tools_sync()
        agent, created = Agent.objects.get_or_create(
            slug="demo",
            defaults={"name": "Demo agent", "endpoint": endpoint, "system_prompt": DEMO_PROMPT},
        )
        agent.tools.add(*tools)
        publish(agent, "the demo agent")
        for slug, (name, prompt, _) in SPECIALISTS.items():
            specialist, _ = Agent.objects.get_or_create(
                slug=slug, defaults={"name": name, "endpoint": endpoint, "system_prompt": prompt}
            )
            specialist.tools.add(*tools)
            publish(specialist, "a specialist the triage agent transfers to")
        triage, _ = Agent.objects.get_or_create(
            slug="triage",
            defaults={
                "name": "Front desk",
                "endpoint": endpoint,
                "system_prompt": TRIAGE_PROMPT,
                "transfers": [
                    {"agent": slug, "description": about, "history": "all"}
                    for slug, (_, _, about) in SPECIALISTS.items()
                ],
            },
        )
        publish(triage, "the front desk: transfers to billing and tech support")
        self.stdout.write(
            f"Demo agent 'demo' {'created' if created else 'ready'} on {endpoint.base_url} "
            f"({agent.model_name}) with tools: {', '.join(sorted(t.name for t in tools))}; "
            "'triage' transfers to 'billing' and 'tech-support'"
        )
