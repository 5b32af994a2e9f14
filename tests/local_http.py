"""A file server on 127.0.0.1 for download tests: Range requests, a connection cut half way,
servers that ignore Range, answers of 503 for a while, and a log of what was asked. Never
reaches the internet."""

from __future__ import annotations

import http.server
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes); the class attributes are reset per server."""

    files: dict[str, bytes] = {}
    break_once: set[str] = set()  # paths whose first full response stops half way
    ignore_range: set[str] = set()  # paths answered in full (200) even to a Range request
    unavailable: dict[str, int] = {}  # path -> how many more requests get 503 first
    log: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802
        data = self.files.get(self.path)
        rng = self.headers.get("Range")
        self.log.append((self.path, rng))
        if data is None:
            self.send_error(404)
            return
        if self.unavailable.get(self.path, 0) > 0:
            self.unavailable[self.path] -= 1
            self.send_error(503)
            return
        start = 0
        if rng and self.path not in self.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data) > 0:
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.break_once and start == 0:
            self.break_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LocalServer:
    """A running server on a free loopback port; ``stop()`` ends it (idempotent)."""

    def __init__(self) -> None:
        Handler.files, Handler.break_once, Handler.ignore_range, Handler.log = {}, set(), set(), []
        Handler.unavailable = {}
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.handler = Handler
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.running = False
