"""Webhooks: admins subscribe HTTPS endpoints to events; deliveries are signed per the
Standard Webhooks spec, sent at least once through the egress guard by an RQ job, retried
with backoff for about a day. See docs/api.md, "Webhooks"."""
