"""People: the accounts and what they hold — roles (asked through agentops.auth), teams with
their hours and assignment policy, invitations, personal API keys and passwords. Part of the
core: it imports nothing of the runtime, the inbox or the webhooks, and announces a team's
change (`team.saved`) through agentops.events for the inbox to react. Its models (Team,
Invitation, ApiKey) stay in agentops/models.py, where the core's relations to them live."""
