"""A loopback HTTP server for the tests of the HTTP modules (127.0.0.1, an ephemeral port)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

Route = Callable[[str, str, Any, dict[str, str]], tuple[int, Any]]


class Server:
    """A loopback HTTP server answering with `route(method, path, json body, headers)` -> (status, JSON); it
    records every request it got."""

    def __init__(self, route: Route) -> None:
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers = {k: v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, body, headers))
                status, payload = route(self.command, self.path, body, headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
