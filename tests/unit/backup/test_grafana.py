"""The Grafana export is whole or fails (backup/grafana.py, against a stand-in API)."""

from __future__ import annotations

import json

import httpx
import pytest

from stackforge_operator.backup import grafana
from stackforge_operator.backup.failures import BackupFailure


def _api(pages: dict[int, list[dict[str, str]]] | None, *,
         ignores_paging: list[dict[str, str]] | None = None) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/search":
            page = int(request.url.params["page"])
            hits = ignores_paging if ignores_paging is not None else (pages or {}).get(page, [])
            return httpx.Response(200, json=hits)
        uid = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"dashboard": {"uid": uid}, "meta": {}})
    return httpx.MockTransport(answer)


def test_every_page_is_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grafana, "PAGE_SIZE", 2)
    pages = {1: [{"uid": "a"}, {"uid": "b"}], 2: [{"uid": "c"}]}
    exported = json.loads(grafana.export_dashboards("http://grafana", None,
                                                    transport=_api(pages)))
    assert [d["uid"] for d in exported["dashboards"]] == ["a", "b", "c"]


def test_a_server_that_ignores_paging_fails_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """It answered the first page for ever: a hundred copies of it were stored as a
    success, and nothing past it."""
    monkeypatch.setattr(grafana, "PAGE_SIZE", 2)
    with pytest.raises(BackupFailure, match="page 2 repeats dashboards") as failed:
        grafana.export_dashboards("http://grafana", None, transport=_api(
            None, ignores_paging=[{"uid": "a"}, {"uid": "b"}]))
    assert failed.value.reason == "GrafanaExportFailed"


def test_more_dashboards_than_the_export_takes_fail_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grafana, "PAGE_SIZE", 1)
    monkeypatch.setattr(grafana, "MAX_PAGES", 3)
    pages = {n: [{"uid": f"d{n}"}] for n in range(1, 5)}
    with pytest.raises(BackupFailure, match="more than 3 dashboards"):
        grafana.export_dashboards("http://grafana", None, transport=_api(pages))
