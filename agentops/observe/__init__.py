"""Observability pages and streams over the core models: runs, run detail, failures, metrics,
alerts, storage, the Prometheus endpoint and the `/ws/runs/`, `/ws/ops/` WebSockets.

The tracing app holds the data and the stream machinery; this package adds what needs
the core models and roles.
"""
