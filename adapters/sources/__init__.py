"""Where customer conversations come from: polled feeds (`feeds`) and signed webhooks (`webhooks`)."""
