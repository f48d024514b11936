import os
import subprocess
import sys

from agentops import embedded
from agentops.testing.processes import PROJECT_DIR


def test_it_reuses_the_running_services():
    first = embedded.start_redis()
    assert embedded.start_redis() == first
    assert embedded.start_postgres() == embedded.start_postgres()


def test_it_explains_an_unusable_data_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["AGENTOPS_VAR_DIR"] = str(blocker / "var")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "data folder" in result.stderr and "unusable" in result.stderr


def test_it_starts_fresh_services_in_a_new_folder_and_stops_them(services_folder):
    url = embedded.start_redis()
    assert url.startswith("unix://") and embedded.redis_socket().exists()
    assert embedded.stop_redis() is True
    assert embedded.stop_redis() is False


def _service_env(folder) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["AGENTOPS_VAR_DIR"] = str(folder)
    return env


def test_it_stops_the_services_a_test_run_started(services_folder):
    folder = services_folder
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "tests/agentops/test_settings.py",
            ],
            cwd=PROJECT_DIR,
            env=_service_env(folder),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert (embedded.postgres_dir() / "PG_VERSION").exists()  # it did start them
        assert not embedded.redis_answers(embedded.redis_socket())
        assert not (embedded.postgres_dir() / "postmaster.pid").exists()
    finally:
        embedded.stop_services()


def test_it_leaves_running_the_services_it_found_running(services_folder):
    folder = services_folder
    embedded.start_redis()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "tests/agentops/test_settings.py",
            ],
            cwd=PROJECT_DIR,
            env=_service_env(folder),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert embedded.redis_answers(embedded.redis_socket())
        assert not (embedded.postgres_dir() / "postmaster.pid").exists()
    finally:
        embedded.stop_services()
