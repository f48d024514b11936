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


def test_it_starts_fresh_services_in_a_new_folder_and_stops_them(tmp_path, monkeypatch):
    folder = tmp_path / "v"
    monkeypatch.setenv("AGENTOPS_VAR_DIR", str(folder))
    url = embedded.start_redis()
    assert url.startswith("unix://") and embedded.redis_socket().exists()
    assert embedded.stop_redis() is True
    assert embedded.stop_redis() is False
