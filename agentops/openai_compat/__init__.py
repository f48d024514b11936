"""The OpenAI-compatible endpoint (`/v1/chat/completions`, `/v1/models`): existing OpenAI
clients talk to an agent, with everything around it (tools, memory, traces, fallbacks,
handoff). See docs/api.md, "OpenAI-compatible endpoint"."""
