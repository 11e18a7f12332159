"""Everything that speaks a foreign protocol (Slack, Teams, feeds, webhooks)."""
