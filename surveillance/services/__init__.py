"""Use cases shared by the API, the coordinator screens, the CLI and the scheduled jobs.

Services change the session but never commit: the caller owns the transaction, so one user
action is one transaction and a failure half-way leaves nothing behind.
"""
