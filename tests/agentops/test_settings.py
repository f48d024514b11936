import os
import subprocess
import sys

import pytest

from agentops.testing.processes import PROJECT_DIR


def run_check(env_changes: dict[str, str | None], *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
