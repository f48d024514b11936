"""Seed list prices of well-known models, so cost estimates are not $0 out of the box.

US dollars per million tokens (standard tier, text, no cached-input discount), as the
providers listed them on 2025-08-01 (OpenAI, Anthropic, Google, and Groq / Together AI for
Llama). Prices change: each row says its date and an admin edits them on /endpoints/prices/.
Rows that exist already (edited, or added by hand) are left as they are.
"""

from datetime import date
from decimal import Decimal

from django.db import migrations

AS_OF = date(2025, 8, 1)
PRICES = [
    # OpenAI
    ("gpt-5", "1.25", "10.00"),
    ("gpt-5-mini", "0.25", "2.00"),
    ("gpt-5-nano", "0.05", "0.40"),
    ("gpt-4.1", "2.00", "8.00"),
    ("gpt-4.1-mini", "0.40", "1.60"),
    ("gpt-4.1-nano", "0.10", "0.40"),
    ("gpt-4o", "2.50", "10.00"),
    ("gpt-4o-mini", "0.15", "0.60"),
    ("o1", "15.00", "60.00"),
    ("o3", "2.00", "8.00"),
    ("o3-mini", "1.10", "4.40"),
    ("o4-mini", "1.10", "4.40"),
    ("gpt-3.5-turbo", "0.50", "1.50"),
    ("openai/gpt-4o", "2.50", "10.00"),
    ("openai/gpt-4o-mini", "0.15", "0.60"),
    ("openai/gpt-4.1", "2.00", "8.00"),
    ("openai/gpt-4.1-mini", "0.40", "1.60"),
    # Anthropic (directly, or through OpenAI-compatible gateways: LiteLLM, OpenRouter)
    ("claude-opus-4", "15.00", "75.00"),
    ("claude-sonnet-4", "3.00", "15.00"),
    ("claude-3-7-sonnet", "3.00", "15.00"),
    ("claude-3-5-sonnet", "3.00", "15.00"),
    ("claude-3-5-haiku", "0.80", "4.00"),
    ("claude-3-opus", "15.00", "75.00"),
    ("claude-3-haiku", "0.25", "1.25"),
    ("anthropic/claude-opus-4", "15.00", "75.00"),
    ("anthropic/claude-sonnet-4", "3.00", "15.00"),
    ("anthropic/claude-3.7-sonnet", "3.00", "15.00"),
    ("anthropic/claude-3.5-sonnet", "3.00", "15.00"),
    ("anthropic/claude-3.5-haiku", "0.80", "4.00"),
    # Google Gemini (OpenAI-compatible endpoint; 2.5 Pro up to 200k-token prompts)
    ("gemini-2.5-pro", "1.25", "10.00"),
    ("gemini-2.5-flash", "0.30", "2.50"),
    ("gemini-2.0-flash", "0.10", "0.40"),
    # Llama on Groq
    ("llama-3.3-70b-versatile", "0.59", "0.79"),
    ("llama-3.1-8b-instant", "0.05", "0.08"),
    ("meta-llama/llama-4-scout-17b-16e-instruct", "0.11", "0.34"),
    ("meta-llama/llama-4-maverick-17b-128e-instruct", "0.20", "0.60"),
    # Llama on Together AI
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "0.88", "0.88"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "0.18", "0.18"),
    ("meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo", "0.88", "0.88"),
    ("meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo", "3.50", "3.50"),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("tracing", "ModelPrice")
    have = set(ModelPrice.objects.values_list("model", flat=True))
    ModelPrice.objects.bulk_create(
        ModelPrice(
            model=model,
            input_per_million=Decimal(price_in),
            output_per_million=Decimal(price_out),
            as_of=AS_OF,
        )
        for model, price_in, price_out in PRICES
        if model not in have
    )


class Migration(migrations.Migration):
    dependencies = [("tracing", "0005_model_price_as_of")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
