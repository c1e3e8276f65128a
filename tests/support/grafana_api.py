"""A minimal Grafana HTTP API (search + dashboard by uid) on a loopback port.

Grafana is not packaged by Debian, so the export is tested against this
small real HTTP server that answers the two endpoints the runner calls, the
way Grafana does, and insists on the bearer token.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class GrafanaAPI:
    def __init__(self, token: str, dashboards: list[dict[str, Any]]) -> None:
        self.token = token
        self.dashboards = dashboards
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: ARG002 - silence
                return

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                api.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    self._send(401, {"message": "Unauthorized"})
                    return
                url = urlparse(self.path)
                if url.path == "/api/search":
                    query = parse_qs(url.query)
                    limit = int(query.get("limit", ["1000"])[0])
                    page = int(query.get("page", ["1"])[0])
                    hits = [
                        {"uid": d["uid"], "title": d["title"], "type": "dash-db",
                         "folderUid": "ops", "folderTitle": "Operations"}
                        for d in api.dashboards
                    ][(page - 1) * limit : page * limit]
                    self._send(200, hits)
                elif url.path.startswith("/api/dashboards/uid/"):
                    uid = url.path.rsplit("/", 1)[1]
                    found = [d for d in api.dashboards if d["uid"] == uid]
                    if not found:
                        self._send(404, {"message": "Dashboard not found"})
                        return
                    self._send(200, {"dashboard": found[0], "meta": {"folderUid": "ops"}})
                else:
                    self._send(404, {"message": "Not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GrafanaAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
