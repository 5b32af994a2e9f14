"""A real `hrpose serve` process on 127.0.0.1 for the serve tests, and a tiny stdlib client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def weights_path(shared_data: Path) -> Path:
    path = shared_data / "weights" / "w8-coco-mini.pt"
    if not path.is_file():
        pytest.fail(f"the shared W8 weights are missing: expected {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``python -m hrpose serve --weights W ARGS`` on a free port; its log goes to ``log``."""

    def __init__(self, weights: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get(
            "PYTHONPATH", "")}  # fmt: skip
        cmd = [sys.executable, "-m", "hrpose", "serve", "--weights", str(weights)]
        cmd += ["--host", HOST, "--port", str(self.port), *args]
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 180.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"hrpose serve exited with {self.proc.returncode}:\n{self.text()}")
            try:
                status, _, _ = self.request("GET", "/health", timeout=5)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"hrpose serve was not ready after {timeout} s:\n{self.text()}")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 120.0,
    ) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def poses(self, data: bytes, query: str = "", content_type: str = "image/jpeg") -> tuple:
        """(status, parsed JSON or raw bytes, headers) of POST /v1/poses."""
        status, headers, body = self.request(
            "POST", "/v1/poses" + query, data, {"Content-Type": content_type}
        )
        parsed = json.loads(body) if headers.get("content-type", "").startswith(
            "application/json") else body  # fmt: skip
        return status, parsed, headers

    def text(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def multipart(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    """A multipart/form-data body with one file field, and its Content-Type header."""
    boundary = "hrposeboundary7d93"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"'
        f"\r\nContent-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )
