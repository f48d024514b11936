#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")
    from agentops.embedded import EmbeddedServiceError, development_defaults, ensure_services

    note = development_defaults()
    if note:
        print(f"AgentOps: {note}", file=sys.stderr)
    try:
        ensure_services()
    except EmbeddedServiceError as exc:
        raise SystemExit(f"AgentOps: {exc}") from None
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
