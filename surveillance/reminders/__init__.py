"""Reminders: pure rules (``rules``), clinic settings, the outbox (queueing and withdrawal),
message rendering, transports and delivery."""
