"""On-demand backups asked of many tenants at once, and the Jobs that answer them:
for chaos tests on kwok, where the runner pods never run and what counts is that
each request has exactly one Job and each policy one CronJob, whatever broke
while they were made."""

from __future__ import annotations

import yaml

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.builders.backup import (
    BACKUP_NOW_ANNOTATION,
    cron_job_name,
    manual_job_name,
)
from tests.support import children, tenants
from tests.support.clusters import ClusterHandle


def ask(cluster: ClusterHandle, names: list[str], policy: str, request: str) -> None:
    """A BackupPolicy ``policy`` per tenant, asked for backup ``request`` now. Its S3
    is nowhere (the operator's reads of the bucket fail): only the Jobs count."""
    for name in names:
        namespace = tenants.namespace_of(name)
        tenants.put_secret(cluster, namespace, "s3-credentials", {
            "AWS_ACCESS_KEY_ID": "AKIACHAOSCHAOSCHAOS1",
            "AWS_SECRET_ACCESS_KEY": "chaos-chaos-chaos-chaos-chaos-chaos-chaos1"})
        manifest = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "BackupPolicy",
            "metadata": {"name": policy, "namespace": namespace,
                         "annotations": {BACKUP_NOW_ANNOTATION: request}},
            "spec": {"tenantRef": {"name": name}, "targets": ["Postgres"],
                     "storage": {"bucket": "nowhere", "endpoint": "http://127.0.0.1:9",
                                 "credentialsSecretRef": {"name": "s3-credentials"}},
                     "retention": {"keepLast": 3}}}
        cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(manifest))


def jobs(cluster: ClusterHandle, names: list[str], policy: str) -> dict[str, list[str]]:
    """Per tenant: the names of its policy's own Jobs and its CronJobs, sorted."""
    found = {name: children.policy_jobs(cluster, tenants.namespace_of(name), policy)
             for name in names}
    return {name: sorted([j.metadata.name for j in own] + crons)
            for name, (own, crons) in found.items()}


def expected(policy: str, request: str) -> list[str]:
    """What :func:`jobs` lists for a tenant once its one request is answered: one
    Job for the request, one CronJob for the schedule."""
    return sorted([manual_job_name(policy, request), cron_job_name(policy)])
