"""The platform floor: helpers every app shares and that know nothing of ours — the service
error type, web helpers, the live hub, the egress guard, logging, the settings reader and
the credential crypto. Everything above may import it; it imports nothing of ours."""
