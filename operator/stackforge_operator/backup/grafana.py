"""Grafana dashboards exported through Grafana's HTTP API (search, then each by uid).

The token comes from the environment (GRAFANA_TOKEN) and travels only in the
Authorization header; nothing here logs a request.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from stackforge_operator.backup.failures import BackupFailure

PAGE_SIZE = 1000
MAX_PAGES = 100  # 100,000 dashboards: far beyond any tenant; a stuck server ends here


def export_dashboards(
    base_url: str, token: str | None, *, timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> bytes:
    """One JSON document with every dashboard's model and its folder. An export
    that cannot be whole fails: a server (or a proxy) that ignores ``page`` answers
    the same dashboards on every page, and the backup stored them a hundred
    times over, with none past the first page, as a success."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    dashboards: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        with httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
            transport=transport,
        ) as client:
            for page in range(1, MAX_PAGES + 1):
                response = client.get(
                    "/api/search", params={"type": "dash-db", "limit": PAGE_SIZE, "page": page}
                )
                response.raise_for_status()
                hits = response.json()
                repeated = seen.intersection(hit["uid"] for hit in hits)
                if repeated:
                    raise BackupFailure(
                        "GrafanaExportFailed",
                        f"the search's page {page} repeats dashboards of earlier pages "
                        f"({len(repeated)}): its paging is not honoured")
                seen.update(hit["uid"] for hit in hits)
                for hit in hits:
                    full = client.get(f"/api/dashboards/uid/{hit['uid']}")
                    full.raise_for_status()
                    body = full.json()
                    dashboards.append(
                        {
                            "uid": hit["uid"],
                            "title": hit.get("title"),
                            "folderUid": hit.get("folderUid"),
                            "folderTitle": hit.get("folderTitle"),
                            "dashboard": body.get("dashboard"),
                            "meta": body.get("meta"),
                        }
                    )
                if len(hits) < PAGE_SIZE:
                    break
            else:
                raise BackupFailure(
                    "GrafanaExportFailed",
                    f"more than {MAX_PAGES * PAGE_SIZE} dashboards: the export would be cut")
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        reason = "GrafanaAuthenticationFailed" if status in (401, 403) else "GrafanaExportFailed"
        raise BackupFailure(
            reason, f"GET {exc.request.url.path} answered {status}"
        ) from exc
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise BackupFailure("GrafanaExportFailed", f"{type(exc).__name__}: {exc}") from exc
    document = {
        "exportedAt": datetime.now(UTC).isoformat(),
        "source": base_url,
        "dashboards": dashboards,
    }
    return json.dumps(document, indent=2, sort_keys=True).encode()
