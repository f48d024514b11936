from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from tools.schemas import schema_refusal
from tracing.platform.crypto import decrypt_text, encrypt_text

function_name_validator = RegexValidator(
    r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$",
    "A tool name is a function name: letters, digits and underscores, not starting with a digit.",
)
argument_name_validator = RegexValidator(
    r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$",
    "An argument name: letters, digits, underscores and hyphens, not starting with a digit.",
)


def validate_json_schema(value: object) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(value, dict):
        raise ValidationError("The parameters must be a JSON object (a JSON schema).")
    if refusal := schema_refusal(value):  # first: it also bounds the depth check_schema recurses
        raise ValidationError(refusal)
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValidationError(f"Not a valid JSON schema at {path}: {exc.message}") from exc
    if value.get("type", "object") != "object":
        raise ValidationError('Tool parameters must be a schema of "type": "object".')


class CredentialKind(models.TextChoices):
    API_KEY = "api_key", "API key (header)"
    BEARER = "bearer", "Bearer token"
    BASIC = "basic", "Basic auth"
    OAUTH2 = "oauth2", "OAuth2 client credentials"


class Credential(models.Model):
    """A secret a tool uses. Secret fields are encrypted and never shown again."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=CredentialKind.choices)
    header_name = models.CharField(
        max_length=100, blank=True, default="", help_text="For API keys."
    )
    username = models.CharField(max_length=200, blank=True, default="")
    token_url = models.URLField(blank=True, default="")
    client_id = models.CharField(max_length=200, blank=True, default="")
    scope = models.CharField(max_length=500, blank=True, default="")
    test_url = models.URLField(
        blank=True,
        default="",
        help_text="Optional: a URL that answers below 400 when the credential works.",
    )
    secret_ciphertext = models.TextField(blank=True, default="", editable=False)
    access_token_ciphertext = models.TextField(blank=True, default="", editable=False)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_failure = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    @property
    def secret(self) -> str:
        return decrypt_text(self.secret_ciphertext) if self.secret_ciphertext else ""

    def set_secret(self, value: str) -> None:
        self.secret_ciphertext = encrypt_text(value) if value else ""

    @property
    def access_token(self) -> str:
        return decrypt_text(self.access_token_ciphertext) if self.access_token_ciphertext else ""

    def set_access_token(self, value: str) -> None:
        self.access_token_ciphertext = encrypt_text(value) if value else ""


class McpTransport(models.TextChoices):
    HTTP = "http", "Streamable HTTP"
    STDIO = "stdio", "stdio command"


class McpServer(models.Model):
    name = models.CharField(max_length=100, unique=True)
    transport = models.CharField(max_length=10, choices=McpTransport.choices)
    url = models.URLField(blank=True, default="")
    command = models.CharField(max_length=500, blank=True, default="")
    args = models.JSONField(default=list, blank=True)
    credential = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.SET_NULL)
    enabled = models.BooleanField(default=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ToolKind(models.TextChoices):
    PYTHON = "python", "Python function"
    HTTP = "http", "HTTP request"
    MCP = "mcp", "MCP server tool"


class ToolDefinition(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[function_name_validator])
    description = models.TextField()
    kind = models.CharField(max_length=10, choices=ToolKind.choices)
    parameters = models.JSONField(default=dict, validators=[validate_json_schema])
    timeout_seconds = models.FloatField(default=10, validators=[MinValueValidator(0.1)])
    retry_max_attempts = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])
    retry_base_seconds = models.FloatField(default=0.2, validators=[MinValueValidator(0)])
    retry_cap_seconds = models.FloatField(default=5, validators=[MinValueValidator(0)])
    idempotent = models.BooleanField(default=True)
    # The tool's service keeps the first result of a call per idempotency key (Stripe-style):
    # a call whose outcome is unknown after a crash is sent again instead of handed off.
    honours_idempotency_key = models.BooleanField(default=False)
    # Python and MCP tools: the argument the key is passed in (HTTP tools: a request header,
    # `http_config["idempotency_header"]`).
    idempotency_key_argument = models.CharField(
        max_length=64, blank=True, default="", validators=[argument_name_validator]
    )
    fallback = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    requires_approval = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    python_function = models.CharField(max_length=200, blank=True, default="")
    http_config = models.JSONField(default=dict, blank=True)
    mcp_server = models.ForeignKey(McpServer, null=True, blank=True, on_delete=models.CASCADE)
    mcp_tool_name = models.CharField(max_length=200, blank=True, default="")
    credential = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ToolVersion(models.Model):
    """A frozen copy of a tool definition, kept for the runs that used it."""

    tool = models.ForeignKey(ToolDefinition, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tool", "version"], name="tool_version_unique")
        ]
        ordering = ["tool", "-version"]

    def __str__(self) -> str:
        return f"{self.tool.name} v{self.version}"
