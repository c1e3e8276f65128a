"""Backups outside the reconcile loop: the runner a Job's pod executes, the S3 store, retention.

Layout in the bucket: ``<prefix>/<tenant>/<run-id>/`` holds a run's artifacts
and, written last, its ``manifest.json``. A run without a manifest is
incomplete and never counts as a backup.
"""
