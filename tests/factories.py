from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from agentops import models
from tools.models import ToolDefinition


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create and extracted:
            group, _ = Group.objects.get_or_create(name=extracted)
            self.groups.add(group)


class EndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ModelEndpoint

    name = factory.Sequence(lambda n: f"endpoint-{n}")
    base_url = "http://127.0.0.1:9/v1"
    default_model = factory.Sequence(lambda n: f"model-{n}")
    timeout_seconds = 10


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Agent

    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    endpoint = factory.SubFactory(EndpointFactory)
    system_prompt = "You are a test agent."
    retry_base_seconds = 0.01
    retry_cap_seconds = 0.05


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Session

    agent = factory.SubFactory(AgentFactory)
    external_user = factory.Sequence(lambda n: f"customer-{n}")


class ToolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ToolDefinition
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tool_{n}")
    description = "A test tool."
    kind = "python"
    parameters = factory.LazyFunction(lambda: {"type": "object", "properties": {}})
