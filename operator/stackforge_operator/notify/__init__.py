"""Notifications to a tenant's Slack and webhook channels (issue #8).

- :mod:`.incidents`: pure: a tenant's status (and its BackupPolicies') -> open incidents;
- :mod:`.changes`: pure: incidents notified before vs now -> opened/resolved messages;
- :mod:`.payloads`: pure: a message -> Slack or generic webhook JSON;
- :mod:`.sender`: delivers in the background (httpx), retrying with backoff.

The open incidents live in the tenant's ``status.incidents``: one message per
incident survives repeated reconciles and operator restarts. The reconcile
writes that status first and hands messages to the sender only after the
write succeeded, so a message is sent at most once (see docs/operator.md).
"""
