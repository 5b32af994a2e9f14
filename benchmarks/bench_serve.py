"""Load on `hrpose serve`: N requests from C concurrent clients on 127.0.0.1, W8 model.

Starts the server as its own process (the shared W8 coco-mini weights, their stored inference
settings), waits for /health, sends a warm-up, then the measured requests, cycling over the
coco-mini images. Prints errors, p50/p95 latency, throughput and the server's RSS after
loading, after the warm-up and after the run (flat after warm-up: within 50 MB).

    python benchmarks/bench_serve.py                      # 200 requests, 8 clients
    python benchmarks/bench_serve.py --requests 40 --clients 4 --max-batch 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("HRPOSE_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
HOST = "127.0.0.1"
RSS_FLAT_MB = 50


def post(port: int, body: bytes, timeout: float = 120.0) -> tuple[int, float]:
    """(status, seconds) of one POST /v1/poses on 127.0.0.1; status 0 for a failed connection."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/poses", body=body, headers={"Content-Type": "image/jpeg"})
        r = conn.getresponse()
        data = r.read()
        status = r.status if r.status != 200 or b'"people"' in data else 599
    except OSError:
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - t0


def load(port: int, bodies: list[bytes], requests: int, clients: int) -> dict:
    """Send ``requests`` images (cycling ``bodies``) from ``clients`` threads; the figures."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: post(port, bodies[i % len(bodies)]), range(requests)))
    wall = time.perf_counter() - t0
    ok = sorted(s for status, s in results if status == 200)
    errors = [status for status, _ in results if status != 200]

    def pct(q: float) -> float:
        return ok[min(len(ok) - 1, round(q * (len(ok) - 1)))] * 1e3 if ok else float("nan")

    return {
        "requests": requests,
        "clients": clients,
        "errors": len(errors),
        "error_statuses": sorted(set(errors)),
        "p50_ms": round(pct(0.50), 1),
        "p95_ms": round(pct(0.95), 1),
        "throughput_rps": round(len(ok) / wall, 2),
        "wall_s": round(wall, 2),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench_serve: the server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"bench_serve: the server was not ready after {timeout} s")


def main(argv: list[str] | None = None) -> int:
    import psutil

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(SHARED / "weights" / "w8-coco-mini.pt"))
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--max-batch", type=int, default=None, help="server --max-batch")
    p.add_argument("--threads", type=int, default=1, help="server --threads (0: torch's default)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    if not Path(args.weights).is_file():
        raise SystemExit(f"bench_serve: weights not found: {args.weights} (set HRPOSE_SHARED_DATA)")
    images = sorted((SHARED / "coco-mini" / "images").glob("*.jpg"))
    bodies = [im.read_bytes() for im in images]
    port = _free_port()
    cmd = [sys.executable, "-m", "hrpose", "serve", "--weights", args.weights, "--port", str(port)]
    if args.max_batch:
        cmd += ["--max-batch", str(args.max_batch)]
    cmd += ["--threads", str(args.threads)]
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        _wait_ready(proc, port)
        server = psutil.Process(proc.pid)
        rss_loaded = server.memory_info().rss / 2**20
        warm = load(port, bodies, args.warmup, args.clients)
        rss_warm = server.memory_info().rss / 2**20
        figures = load(port, bodies, args.requests, args.clients)
        rss_after = server.memory_info().rss / 2**20
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    figures.update(
        warmup_errors=warm["errors"],
        rss_loaded_mb=round(rss_loaded, 1),
        rss_after_warmup_mb=round(rss_warm, 1),
        rss_after_mb=round(rss_after, 1),
        rss_growth_after_warmup_mb=round(rss_after - rss_warm, 1),
        machine=f"{platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        images=[im.name for im in images],
        max_batch=args.max_batch or "per-device default",
        threads=args.threads or "torch default (one per core)",
    )
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    flat = figures["rss_growth_after_warmup_mb"] <= RSS_FLAT_MB
    print(
        f"{figures['requests']} requests, {figures['clients']} clients: {figures['errors']} "
        f"errors, p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
        f"{figures['throughput_rps']} req/s; RSS {rss_loaded:.0f} -> {rss_warm:.0f} (warm) -> "
        f"{rss_after:.0f} MB ({'flat' if flat else 'NOT flat'} within {RSS_FLAT_MB} MB)"
    )
    return 0 if figures["errors"] == 0 and warm["errors"] == 0 and flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
