"""Microsoft Teams: botbuilder CloudAdapter, Adaptive Cards, the outbox sender, the app package."""
