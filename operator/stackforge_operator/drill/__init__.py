"""DR drills outside the reconcile loop: the restore runner a drill Job's pod executes.

``stackforge-operator drill run`` picks a complete backup, streams its dump
from S3 into ``pg_restore`` (hashing it on the way), verifies the restored
database, grades the run against the RTO/RPO objectives, and leaves a JSON
report beside the backup: ``<prefix>/<tenant>/<backup-run-id>/drills/<run-id>.json``
(or ``<prefix>/<tenant>/drills/<run-id>.json`` when no backup was found). The
operator's Jobs give the sandbox's name as the run id: unique to the drill and
its run, where a second of start time is not.
"""
