"""AgentOps settings: everything comes from the environment (see docs/configuration.md).

A missing or malformed variable stops the process with one sentence naming it.
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from csp.constants import NONCE

BASE_DIR = Path(__file__).resolve().parent.parent


def _fail(message: str) -> None:
    raise SystemExit(f"AgentOps configuration error: {message}")


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    _fail(f"{name} must be a boolean (1/0, true/false, yes/no), not {raw!r}.")
    return default


def envint(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(f"{name} must be a whole number, not {raw!r}.")
    if value < minimum:
        _fail(f"{name} must be at least {minimum}, not {value}.")
    return value


def envfloat(name: str, default: float, *, minimum: float = 0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        _fail(f"{name} must be a number, not {raw!r}.")
    if not value >= minimum:
        _fail(f"{name} must be at least {minimum}, not {raw}.")
    return value


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envurl(name: str, schemes: set[str], default: str = "") -> str:
    raw = os.environ.get(name, default).strip()
    if raw:
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
            _fail(
                f"{name} must be a URL starting with {' or '.join(sorted(schemes))}://, not {raw!r}."
            )
    return raw


DEBUG = envbool("DEBUG", False)
VAR_DIR = Path(os.environ.get("AGENTOPS_VAR_DIR") or BASE_DIR / "var").resolve()

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        _fail(
            "SECRET_KEY is not set; set it to a long random string (or set DEBUG=1 for development)."
        )
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()
elif len(SECRET_KEY) < 50 and not DEBUG:
    _fail("SECRET_KEY must be at least 50 characters long when DEBUG is off.")

# Embedded services are started by `agentops.embedded.ensure_services()` (manage.py, asgi.py,
# the launcher) when these are unset; here they are only read.
DATABASE_URL = envurl("DATABASE_URL", {"postgres", "postgresql"})
REDIS_URL = envurl("REDIS_URL", {"redis", "rediss", "unix"})
if not DATABASE_URL:
    _fail("DATABASE_URL is not set; start AgentOps with `make run` or point it at Postgres.")
if not REDIS_URL:
    _fail("REDIS_URL is not set; start AgentOps with `make run` or point it at Redis.")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        _fail(f"CSRF_TRUSTED_ORIGINS entries must start with http:// or https://, not {_origin!r}.")

OPENAI_BASE_URL = envurl("OPENAI_BASE_URL", {"http", "https"})
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
DEFAULT_MODEL = os.environ.get("DEFAULT_MODEL", "").strip()
DEVMODEL_PORT = envint("DEVMODEL_PORT", 8765, minimum=1)
DEVMODEL_URL = f"http://127.0.0.1:{DEVMODEL_PORT}/v1"

# Fernet key(s) for credentials at rest: the first encrypts, all decrypt (rotation).
CREDENTIALS_KEYS = envlist("CREDENTIALS_KEY", "")
if not CREDENTIALS_KEYS:
    if not DEBUG:
        _fail(
            "CREDENTIALS_KEY is not set; generate one with `python manage.py generate_credentials_key`."
        )
    _cred_file = VAR_DIR / "credentials_key"
    if not _cred_file.exists():
        import base64

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _cred_file.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        _cred_file.chmod(0o600)
    CREDENTIALS_KEYS = [_cred_file.read_text().strip()]

# Long-term memory (docs/memory.md): the embedder, and the thresholds bench/recall.py chose.
# Knowledge bases (knowledge/conf.py reads these).
KNOWLEDGE_UPLOAD_MAX_BYTES = envint("KNOWLEDGE_UPLOAD_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
KNOWLEDGE_FETCH_TIMEOUT = envfloat("KNOWLEDGE_FETCH_TIMEOUT", 20.0, minimum=1)
KNOWLEDGE_SITEMAP_MAX_PAGES = envint("KNOWLEDGE_SITEMAP_MAX_PAGES", 200, minimum=1)
KNOWLEDGE_EMBED_BATCH = envint("KNOWLEDGE_EMBED_BATCH", 32, minimum=1)
MEMORY_EMBEDDER = os.environ.get("MEMORY_EMBEDDER", "").strip().lower() or "wordllama"
if MEMORY_EMBEDDER not in {"wordllama", "openai"}:
    _fail(f"MEMORY_EMBEDDER must be 'wordllama' or 'openai', not {MEMORY_EMBEDDER!r}.")
MEMORY_EMBEDDING_BASE_URL = envurl("MEMORY_EMBEDDING_BASE_URL", {"http", "https"}, OPENAI_BASE_URL)
MEMORY_EMBEDDING_API_KEY = os.environ.get("MEMORY_EMBEDDING_API_KEY", "") or OPENAI_API_KEY
MEMORY_EMBEDDING_MODEL = (
    os.environ.get("MEMORY_EMBEDDING_MODEL", "").strip() or "text-embedding-3-small"
)
if MEMORY_EMBEDDER == "openai" and not (MEMORY_EMBEDDING_BASE_URL or MEMORY_EMBEDDING_API_KEY):
    _fail("MEMORY_EMBEDDER=openai needs MEMORY_EMBEDDING_BASE_URL or MEMORY_EMBEDDING_API_KEY.")
MEMORY_EXACT_SEARCH_MAX = envint("MEMORY_EXACT_SEARCH_MAX", 1000)
MEMORY_AUTO_PIN_RECALLS = envint("MEMORY_AUTO_PIN_RECALLS", 25)

# Addresses HTTP tools may reach although they are private/loopback (CIDRs, comma separated).
TOOL_EGRESS_ALLOWLIST = envlist("TOOL_EGRESS_ALLOWLIST", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "django_htmx",
    "template_partials",
    "csp",
    "ninja",  # Swagger UI for /api/docs from its static files (no CDN)
    "django_structlog",
    "axes",
    "tracing",
    "tools",
    "memory",
    "knowledge",
    "agentops",
    "agentops.operators",
    "agentops.webhooks",
    "agentops.budgets",
    "agentops.widget",
    "agentops.experiments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "agentops.middleware.DatabaseConnectionMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "agentops.auth.LoginRequiredMiddleware",
    "axes.middleware.AxesMiddleware",
    "agentops.middleware.RqDashboardNotFoundMiddleware",
]

ROOT_URLCONF = "agentops.urls"
ASGI_APPLICATION = "agentops.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "agentops.auth.roles_context",
            ],
        },
    }
]

# Database connections (docs/architecture.md, "Database connections"). A web process serves
# each request in a thread of its own: it borrows from a bounded pool and gives the connection
# back when the request ends, and a request that gets none within DB_POOL_TIMEOUT is answered
# 503 (agentops.middleware). The worker lends its one connection to each forked work horse (a
# pool's connections and threads do not survive a fork) and the scheduler is single-threaded:
# they keep one persistent connection each, without an age limit (a horse closing its lent
# connection because it turned 60 s old cost the next run a new backend; the worker checks
# the connection before lending it, and health checks run before reuse).
DB_POOL_SIZE = envint("DB_POOL_SIZE", 10, minimum=1)
DB_POOL_TIMEOUT = envfloat("DB_POOL_TIMEOUT", 10.0, minimum=0.1)
# True in the process the ASGI server started: agentops/asgi.py is importing these settings.
WEB_PROCESS = "agentops.asgi" in sys.modules
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=0 if WEB_PROCESS else None, conn_health_checks=True
    )
}
if WEB_PROCESS:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_SIZE,
        "timeout": DB_POOL_TIMEOUT,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

RUN_JOB_TIMEOUT = envint("RUN_JOB_TIMEOUT", 900, minimum=10)
# Runs one agentops.worker.ConcurrentWorker process drives at once, each in a thread.
WORKER_CONCURRENCY = envint("WORKER_CONCURRENCY", 100, minimum=1)
# Runs of one agent in flight at once unless the agent sets its own limit (0: no limit); the
# rest wait, held in Postgres, so one agent's flood cannot take every worker slot.
AGENT_MAX_CONCURRENT_RUNS = envint("AGENT_MAX_CONCURRENT_RUNS", 100, minimum=0)
# A running run whose heartbeat (every 2 s) is older than this is taken over by the scheduler.
RUN_STALE_SECONDS = envint("RUN_STALE_SECONDS", 10, minimum=3)
# An online operator with no operator page open this long (the pages' /ws/inbox/ beats every
# third of it) is made away by the scheduler, and given no new conversations.
OPERATOR_AWAY_AFTER_SECONDS = envint("OPERATOR_AWAY_AFTER_SECONDS", 180, minimum=3)
# A queued run whose RQ job is missing this long (Redis restarted or flushed) is re-enqueued.
RUN_LOST_JOB_SECONDS = envint("RUN_LOST_JOB_SECONDS", 15, minimum=2)
# An endpoint's circuit breaker opens when, over the last BREAKER_WINDOW_SECONDS, at least
# BREAKER_MIN_CALLS calls were made, BREAKER_FAILURE_RATE_PERCENT of them failed as an outage
# fails (5xx, 408, 429, timeouts, lost connections), from BREAKER_MIN_SESSIONS distinct
# conversations at least: one conversation the endpoint refuses never opens it.
BREAKER_WINDOW_SECONDS = envint("BREAKER_WINDOW_SECONDS", 60, minimum=1)
BREAKER_MIN_CALLS = envint("BREAKER_MIN_CALLS", 10, minimum=1)
BREAKER_FAILURE_RATE_PERCENT = envint("BREAKER_FAILURE_RATE_PERCENT", 50, minimum=1)
if BREAKER_FAILURE_RATE_PERCENT > 100:
    _fail(f"BREAKER_FAILURE_RATE_PERCENT must be at most 100, not {BREAKER_FAILURE_RATE_PERCENT}.")
BREAKER_MIN_SESSIONS = envint("BREAKER_MIN_SESSIONS", 3, minimum=1)
# How long POST /v1/chat/completions waits for the agent's run before answering 504 (under
# the openai client's default timeout of 600 s, so a client gets the 504 rather than its own).
OPENAI_API_WAIT_SECONDS = envint("OPENAI_API_WAIT_SECONDS", 540, minimum=1)
# RQ queues (docs/configuration.md). Every job is sent through tracing.platform.enqueue; runs and
# handoff packages go to RUN_QUEUE, periodic and memory jobs to MAINTENANCE_QUEUE. The
# workers' and the scheduler's command lines name them, so they are fixed names.
RUN_QUEUE = "runs"
MAINTENANCE_QUEUE = "maintenance"
# How often a worker reports that it is alive, idle or busy (/healthz trusts a heartbeat for
# three times this). RQ's default is one every 405 s while idle.
WORKER_HEARTBEAT_SECONDS = 10
# Webhook deliveries (docs/api.md, "Webhooks"): the RQ queue their jobs go to (a worker must
# listen on it) and how long one attempt may take.
WEBHOOK_QUEUE = os.environ.get("WEBHOOK_QUEUE", "").strip() or MAINTENANCE_QUEUE
WEBHOOK_TIMEOUT_SECONDS = envfloat("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# Experiments (docs/features.md, "Datasets and experiments"): item-variant pairs of one experiment in
# flight at once (the rest of the agent's limit stays free for live conversations), and the RQ
# queue their start and scoring jobs go to.
EXPERIMENT_MAX_CONCURRENT_RUNS = envint("EXPERIMENT_MAX_CONCURRENT_RUNS", 50, minimum=1)
EXPERIMENT_QUEUE = os.environ.get("EXPERIMENT_QUEUE", "").strip() or RUN_QUEUE
RQ_QUEUES = {
    RUN_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RUN_JOB_TIMEOUT},
    MAINTENANCE_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
}
RQ_QUEUES.setdefault(WEBHOOK_QUEUE, {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300})
RQ_QUEUES.setdefault(EXPERIMENT_QUEUE, {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RUN_JOB_TIMEOUT})
RQ_SHOW_ADMIN_LINK = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT failures for one account, or from
# one client address, logins for it are refused for LOGIN_LOCKOUT_MINUTES (each further
# try restarts the wait); lockouts go to the audit log (agentops/signals.py).
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_CALLABLE = "agentops.views.login_locked_out"
AXES_USERNAME_CALLABLE = "agentops.auth.login_attempt_username"
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
# An invitation link (people page) works once, for this many days.
INVITATION_DAYS = envint("INVITATION_DAYS", 7, minimum=1)
LOGOUT_REDIRECT_URL = "login"
# Chat widget, per client address (an IPv6 one per /64) and minute, beyond the per end user
# and per key message limits: new anonymous visitors (frame loads without a visitor cookie),
# conversations opened, and identity checks (agentops/widget/services.py).
WIDGET_NEW_VISITORS_PER_MINUTE = envint("WIDGET_NEW_VISITORS_PER_MINUTE", 20, minimum=1)
WIDGET_SESSIONS_PER_MINUTE = envint("WIDGET_SESSIONS_PER_MINUTE", 30, minimum=1)
WIDGET_IDENTIFY_PER_MINUTE = envint("WIDGET_IDENTIFY_PER_MINUTE", 20, minimum=1)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# WhiteNoise serves static files from the apps' folders directly (no collectstatic step).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Security: HTTPS defaults on in production (DEBUG off); set HTTPS=0 behind plain HTTP.
HTTPS = envbool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if envbool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Tracing (docs/configuration.md, "Tracing, metrics and logs"). tracing/platform/conf.py reads these, with the same defaults for
# a project that sets none of them; this module is the one place the environment is read.
TRACE_RETENTION_DAYS = envint("TRACE_RETENTION_DAYS", 30, minimum=1)
METRICS_MINUTE_RETENTION_DAYS = envint("METRICS_MINUTE_RETENTION_DAYS", 3, minimum=1)
METRICS_RETENTION_DAYS = envint("METRICS_RETENTION_DAYS", 400, minimum=1)
RETENTION_BATCH_SIZE = envint("RETENTION_BATCH_SIZE", 5000, minimum=1)
TRACE_CONTENT_MAX_CHARS = envint("TRACE_CONTENT_MAX_CHARS", 200_000, minimum=0)
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    _fail("METRICS_TOKEN must be at least 16 characters long.")
OTEL_EXPORTER_OTLP_ENDPOINT = envurl("OTEL_EXPORTER_OTLP_ENDPOINT", {"http", "https"})
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = envurl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", {"http", "https"})
OTEL_SERVICE_NAME = os.environ.get("OTEL_SERVICE_NAME", "").strip() or "agentops"

LOG_FORMAT = os.environ.get("LOG_FORMAT", "console" if DEBUG else "json")
if LOG_FORMAT not in {"console", "json"}:
    _fail(f"LOG_FORMAT must be 'console' or 'json', not {LOG_FORMAT!r}.")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
    _fail(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {LOG_LEVEL!r}.")

from tracing.platform.logs import logging_config  # noqa: E402

# `make run` turns the per-request lines off so the terminal shows what matters.
LOG_REQUESTS = envbool("LOG_REQUESTS", True)
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL, requests=LOG_REQUESTS)
DJANGO_STRUCTLOG_CELERY_ENABLED = False
