import os
import subprocess

import pytest

from agentops.testing.processes import python_run


def run_check(env_changes: dict[str, str | None], *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return python_run(["manage.py", "check", *args], env=env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://nope"),
        ("REDIS_URL", "http://localhost"),
        ("CSRF_TRUSTED_ORIGINS", "example.com"),
        ("OPENAI_BASE_URL", "not a url"),
        ("RUN_JOB_TIMEOUT", "soon"),
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_TIMEOUT", "soon"),
        ("DB_POOL_TIMEOUT", "0"),
        ("TRACE_RETENTION_DAYS", "thirty"),
        ("TRACE_RETENTION_DAYS", "0"),
        ("METRICS_TOKEN", "too-short"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
    ],
)
def test_it_fails_with_one_sentence_naming_a_malformed_variable(variable, value):
    result = run_check({variable: value})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


def test_it_requires_a_secret_key_in_production():
    result = run_check({"DEBUG": "0", "SECRET_KEY": None, "CREDENTIALS_KEY": "x" * 44})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_it_passes_deploy_checks_in_production():
    from cryptography.fernet import Fernet

    result = run_check(
        {
            "DEBUG": "0",
            "SECRET_KEY": "k" * 20 + "-Zq7#x9!mP2$vL8^tR4&wN6*yB3@cF5" + "j" * 10,
            "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        },
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


DEV_INSTALL = {  # a shell beside `make run`: nothing set, the data folder of the tests
    "DEBUG": None,
    "SECRET_KEY": None,
    "CREDENTIALS_KEY": None,
    "DATABASE_URL": None,
    "REDIS_URL": None,
}


def test_it_runs_a_command_beside_a_development_install_and_says_so():
    result = run_check(DEV_INSTALL)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    assert "development install" in result.stderr and "DEBUG=1" in result.stderr


@pytest.mark.parametrize("production_sign", ["DEBUG", "DATABASE_URL", "CREDENTIALS_KEY"])
def test_it_never_takes_a_development_key_when_anything_says_production(production_sign):
    from cryptography.fernet import Fernet

    values = {
        "DEBUG": "0",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
    }
    result = run_check({**DEV_INSTALL, production_sign: values[production_sign]})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "development install" not in result.stderr
