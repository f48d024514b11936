"""Make sure Debian's Chromium is there for the browser tests (`make test` runs this)."""

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            f"Browser tests need Debian's Chromium at {CHROMIUM}: run `sudo apt-get install chromium` "
            "(this user cannot install packages).",
            file=sys.stderr,
        )
        return 1
    print("Installing Chromium for the browser tests (apt-get)…", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
