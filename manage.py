#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")
    from agentops.embedded import (
        EmbeddedServiceError,
        address_services,
        command_needs_services,
        development_defaults,
        ensure_services,
        stop_services,
    )

    note = development_defaults()
    if note:
        print(f"AgentOps: {note}", file=sys.stderr)
    started: list[str] = []
    try:
        if command_needs_services(sys.argv):
            started = ensure_services()
        else:
            address_services()
    except EmbeddedServiceError as exc:
        raise SystemExit(f"AgentOps: {exc}") from None
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    finally:
        stop_services(started)  # a command stops what it started, and only that


if __name__ == "__main__":
    main()
