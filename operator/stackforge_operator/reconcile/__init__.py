"""Reconcilers: observe -> desired -> diff -> apply, idempotent, one entry per kind."""
