"""`hrpose serve`: the API against a real server process with the shared W8 model (127.0.0.1).

One server for the module (input 192, no flip, detection threshold 0.3: the settings stored in
the checkpoint); a second, batching one, for batching, CORS and SIGTERM. Every request here is
bounded in count and time.
"""

from __future__ import annotations

import importlib.util
import io
import json
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrpose.decode import DecodeParams
from hrpose.predict import Predictor
from hrpose.serve.batching import Busy, MicroBatcher
from serving import HOST, Server, multipart, weights_path

IMAGE = "000000196141.jpg"
SECOND = "000000197388.jpg"


@pytest.fixture(scope="module")
def weights(shared_data: Path) -> Path:
    return weights_path(shared_data)


@pytest.fixture(scope="module")
def server(weights: Path, tmp_path_factory) -> Server:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    srv = Server(weights, log, "--max-upload-mb", "1", "--max-pixels", "4000000")
    yield srv.wait_ready()
    srv.stop()


@pytest.fixture(scope="module")
def jpeg(coco_mini: Path) -> bytes:
    return (coco_mini / "images" / IMAGE).read_bytes()


def _ok(server: Server, jpeg: bytes) -> dict:
    status, body, _ = server.poses(jpeg)
    assert status == 200, body
    return body


def test_health_model_and_docs(server: Server) -> None:
    status, _, body = server.request("GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ready"
    status, _, body = server.request("GET", "/v1/model")
    info = json.loads(body)
    assert status == 200
    assert len(info["model"]["keypoint_spec"]["names"]) == 17
    assert info["model"]["inference"]["input_size"] == 192  # the checkpoint's own settings
    assert info["model"]["inference"]["flip"] is False
    assert info["server"]["max_upload_bytes"] == 2**20
    status, _, body = server.request("GET", "/openapi.json")
    assert status == 200 and "/v1/poses" in json.loads(body)["paths"]
    assert server.request("GET", "/docs")[0] == 200


def test_people_equal_hrpose_predict(server: Server, jpeg: bytes, coco_mini, weights, tmp_path):
    """The JSON people of an image are `hrpose predict`'s predictions.json rows, same settings."""
    from hrpose.cli import predict

    out = tmp_path / "predict"
    argv = [str(coco_mini / "images" / IMAGE), "--weights", str(weights), "--output", str(out)]
    argv += ["--input-size", "192", "--no-flip", "--detection-threshold", "0.3", "--device", "cpu"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server (--threads 1): the same float sums
    try:
        assert predict.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    rows = json.loads((out / "predictions.json").read_text())
    body = _ok(server, jpeg)
    assert len(rows) >= 4 and len(body["people"]) == len(rows)
    for person, row in zip(body["people"], rows, strict=True):
        assert [v for kp in person["keypoints"] for v in kp] == row["keypoints"]
        assert person["score"] == row["score"] and person["bbox"] == row["bbox"]
    assert body["image"] == {"width": 640, "height": 429}
    s = body["settings"]
    assert (s["input_size"], s["flip"], s["detection_threshold"]) == (192, False, 0.3)
    assert set(body["timing_ms"]) >= {"decode_image", "predict", "total"}
    # the same image as PNG (lossless) and as a multipart upload: the same people
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    png = cv2.imencode(".png", image)[1].tobytes()
    assert server.poses(png, content_type="image/png")[1]["people"] == body["people"]
    data, ctype = multipart("image", IMAGE, jpeg, "image/jpeg")
    status, parsed, _ = server.poses(data, content_type=ctype)
    assert status == 200 and parsed["people"] == body["people"]


def test_draw_returns_jpeg(server: Server, jpeg: bytes) -> None:
    status, body, headers = server.poses(jpeg, "?draw=1&person_threshold=0.2")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original).max() > 100  # skeletons drawn


def test_overrides(server: Server, jpeg: bytes) -> None:
    body = server.poses(jpeg, "?flip=1&person_threshold=0.5&joint_threshold=0.1")[1]
    s = body["settings"]
    assert (s["flip"], s["person_threshold"], s["joint_threshold"]) == (True, 0.5, 0.1)
    for query, needle in [
        ("?detection_threshold=0.1", "model-level"),
        ("?input_size=512", "model-level"),
        ("?scales=2", "model-level"),
        ("?colour=red", "unknown query parameter"),
        ("?person_threshold=2", "person_threshold"),
        ("?joint_threshold=nan", "joint_threshold"),
        ("?flip=maybe", "flip"),
        ("?flip=1&flip=0", "twice"),
    ]:
        status, err, _ = server.poses(jpeg, query)
        assert status == 400, (query, err)
        assert needle in err["error"]["message"], (query, err)
        if needle == "model-level" or "unknown" in needle:
            assert "person_threshold, joint_threshold, flip" in err["error"]["message"]


def _bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A 100-byte PNG whose header declares width x height RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width * 3 + 1))  # one row of the 30000 declared
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _bad_inputs(jpeg: bytes) -> list[tuple[str, bytes, str, int, str]]:
    big = np.random.default_rng(0).integers(0, 255, (700, 700, 3), np.uint8)  # noise: ~1.3 MB
    big_png = cv2.imencode(".png", big)[1].tobytes()
    assert len(big_png) > 2**20
    return [  # name, body, content type, status, words of the message
        ("empty body", b"", "image/jpeg", 400, "empty body"),
        ("non-image bytes", b"this is not an image at all" * 20, "image/jpeg", 422, "not a JPEG"),
        ("truncated JPEG", jpeg[: len(jpeg) // 2], "image/jpeg", 422, "truncated"),
        ("decompression bomb", _bomb_png(), "image/png", 413, "--max-pixels"),
        ("big, not a bomb", _bomb_png(3000, 3000), "image/png", 413, "3000x3000"),
        ("over the size limit", big_png, "image/png", 413, "upload limit"),
        ("wrong content type", jpeg, "text/plain", 415, "image/jpeg or image/png"),
        ("no content type", jpeg, "", 415, "Content-Type"),
        ("PNG declared, JPEG sent", jpeg, "image/png", 415, "JPEG"),
        ("multipart without a file", *_form_without_file(), 400, "without a file"),
    ]


def _form_without_file() -> tuple[bytes, str]:
    b = "b0undary"
    body = f'--{b}\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--{b}--\r\n'.encode()
    return body, f"multipart/form-data; boundary={b}"


def test_bad_inputs_get_4xx_json_and_the_next_request_works(server: Server, jpeg: bytes):
    assert len(_bomb_png()) < 1000
    good = _ok(server, jpeg)["people"]
    for name, body, ctype, status, words in _bad_inputs(jpeg):
        headers = {"Content-Type": ctype} if ctype else {}
        got, hdrs, raw = server.request("POST", "/v1/poses", body, headers)
        assert got == status, (name, raw[:300])
        assert hdrs["content-type"] == "application/json", name
        err = json.loads(raw)["error"]
        assert err["status"] == status and words in err["message"], (name, err)
        assert _ok(server, jpeg)["people"] == good, f"after {name}"


def test_client_disconnecting_mid_upload(server: Server, jpeg: bytes) -> None:
    for _ in range(3):
        with socket.create_connection((HOST, server.port), timeout=10) as s:
            head = (
                f"POST /v1/poses HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(jpeg)}\r\n\r\n"
            ).encode()
            s.sendall(head + jpeg[:5000])
            time.sleep(0.2)
        # closed with most of the body unsent
    time.sleep(0.5)
    assert server.proc.poll() is None
    _ok(server, jpeg)
    assert "client disconnected during the upload" in server.text()


def test_no_request_names_a_server_file(server: Server, jpeg: bytes) -> None:
    for path in [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/static/..%2fapp.py",
        "/static/index.html",  # a packaged file, but not one of the page's three URLs
        "/static/app.js/../../app.py",
        "/etc/passwd",
        "/?file=/etc/passwd",
    ]:
        status, _, body = server.request("GET", path)
        assert b"root:" not in body and b"import " not in body, path
        assert status == 404 or (status == 200 and body.startswith(b"<!doctype html>")), path
    status, err, _ = server.poses(jpeg, "?weights=/etc/passwd")
    assert status == 400 and "model-level" in err["error"]["message"]


def test_page_needs_nothing_from_outside(server: Server) -> None:
    for path in ("/", "/static/app.js", "/static/style.css"):
        status, headers, body = server.request("GET", path)
        assert status == 200, path
        assert b"http://" not in body and b"https://" not in body and b"//cdn" not in body, path
    assert "access-control-allow-origin" not in server.request(
        "GET", "/health", headers={"Origin": "http://elsewhere.test"})[1]  # fmt: skip


def _bench_serve():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serve.py"
    spec = importlib.util.spec_from_file_location("bench_serve", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_concurrent_clients_small_load(server: Server, coco_mini: Path) -> None:
    """benchmarks/bench_serve.py's load, smaller (24 requests, 4 clients): 0 errors; then 8
    concurrent requests of two image sizes, each answered with its own image's people."""
    images = [(coco_mini / "images" / n).read_bytes() for n in (IMAGE, SECOND)]
    figures = _bench_serve().load(server.port, images, requests=24, clients=4)
    assert figures["errors"] == 0, figures
    assert figures["p50_ms"] > 0 and figures["throughput_rps"] > 0
    expected = [_ok(server, im)["people"] for im in images]

    def one(i: int) -> bool:
        status, body, _ = server.poses(images[i % 2])
        return status == 200 and body["people"] == expected[i % 2]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(8), timeout=300))
    assert all(results), results.count(False)
    lines = [line for line in server.text().splitlines() if "POST /v1/poses 200" in line]
    assert len(lines) >= 32 and lines[-1].rstrip().endswith(" ms")  # one log line per request


def test_batching_cors_and_sigterm(weights: Path, coco_mini: Path, tmp_path: Path) -> None:
    """A server that batches up to 4 requests: concurrent requests share network batches with
    the same people as alone; CORS for the one origin given; SIGTERM lets in-flight finish."""
    srv = Server(weights, tmp_path / "server.log", "--max-batch", "4", "--batch-timeout-ms",
                 "500", "--cors", "http://app.test")  # fmt: skip
    try:
        srv.wait_ready()
        jpeg = (coco_mini / "images" / IMAGE).read_bytes()
        alone = _ok(srv, jpeg)["people"]
        with ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(lambda _: srv.poses(jpeg)[1], range(4), timeout=300))
        for b in bodies:  # a batch of 4 rounds floats differently from a batch of 1
            assert len(b["people"]) == len(alone)
            for p, q in zip(b["people"], alone, strict=True):
                np.testing.assert_allclose(p["keypoints"], q["keypoints"], atol=0.05)
        assert max(b["timing_ms"]["batch_size"] for b in bodies) > 1
        batches = json.loads(srv.request("GET", "/health")[2])["batches"]
        assert any(int(k) > 1 for k in batches), batches
        _, headers, _ = srv.request("GET", "/health", headers={"Origin": "http://app.test"})
        assert headers["access-control-allow-origin"] == "http://app.test"
        _, headers, _ = srv.request("GET", "/health", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in headers
        # SIGTERM while a request is in flight (headers sent, body on its way): it still finishes
        answer: dict = {}

        def slow_client() -> None:
            with socket.create_connection((HOST, srv.port), timeout=60) as s:
                s.sendall((f"POST /v1/poses HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/jpeg"
                           f"\r\nContent-Length: {len(jpeg)}\r\nConnection: close\r\n\r\n").encode()
                          + jpeg[:1000])  # fmt: skip
                time.sleep(1.0)
                s.sendall(jpeg[1000:])
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                answer["raw"] = data

        t = threading.Thread(target=slow_client)
        t.start()
        time.sleep(0.5)
        srv.proc.send_signal(15)
        t.join(60)
        head, _, body = answer["raw"].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert json.loads(body)["people"] == alone
        assert srv.proc.wait(60) in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down
        assert "stopped" in srv.text() and "Application shutdown complete" in srv.text()
    finally:
        srv.stop()


class _FakePredictor:
    """Records the batches it is given; people = the image's first pixel value."""

    def __init__(self, delay: float = 0.05) -> None:
        from hrpose.record import registered_record
        from hrpose.structures import InferenceSettings

        self.record = registered_record(8, 17).with_inference(InferenceSettings(flip=False))
        self.batches: list[list[int]] = []
        self.delay = delay

    @property
    def params(self):
        return self.record.inference

    def predict_batch(self, images):
        time.sleep(self.delay)
        self.batches.append([int(im[0, 0, 0]) for im in images])
        return [int(im[0, 0, 0]) * (2 if self.params.flip else 1) for im in images]


def test_micro_batcher_groups_same_size_and_flip() -> None:
    fake = _FakePredictor()
    batcher = MicroBatcher(fake, max_batch=3, timeout_s=0.2)  # type: ignore[arg-type]
    try:
        small = [np.full((4, 4, 3), i, np.uint8) for i in range(5)]
        other = np.full((6, 4, 3), 9, np.uint8)
        futures = [batcher.submit(im) for im in small[:2]]
        futures.append(batcher.submit(other))
        futures += [batcher.submit(im) for im in small[2:4]]
        futures.append(batcher.submit(small[4], flip=True))
        results = [f.result(10)[0] for f in futures]
    finally:
        batcher.close()
    assert results == [0, 1, 9, 2, 3, 8]  # each its own answer; flip ran on its own copy
    assert fake.params.flip is False  # the shared predictor was never changed
    assert all(len(b) <= 3 for b in fake.batches)
    assert [0, 1, 2] in fake.batches  # same size batched, the other size waited
    assert [9] in fake.batches and [4] in fake.batches
    assert batcher.batch_sizes[3] == 1


def test_micro_batcher_busy_and_close() -> None:
    fake = _FakePredictor(delay=0.2)
    batcher = MicroBatcher(fake, max_batch=1, timeout_s=0.0, max_queue=1)  # type: ignore[arg-type]
    image = np.zeros((2, 2, 3), np.uint8)
    first = batcher.submit(image)
    time.sleep(0.05)  # the first is running, the queue is empty again
    batcher.submit(image)
    with pytest.raises(Busy):
        batcher.submit(image)
    batcher.close()
    assert first.result(5)[0] == 0
    with pytest.raises(Busy):
        batcher.submit(image)


def test_micro_batcher_same_people_as_predictor(weights: Path, coco_mini: Path) -> None:
    from hrpose.data.images import read_image

    predictor = Predictor.from_weights(
        weights, input_size=192, params=DecodeParams(flip=False, detection_threshold=0.3)
    )
    image = read_image(coco_mini / "images" / IMAGE)
    alone = predictor.predict(image).people
    batcher = MicroBatcher(predictor, max_batch=2, timeout_s=0.5)
    try:
        preds = [f.result(120)[0] for f in [batcher.submit(image), batcher.submit(image)]]
    finally:
        batcher.close()
    assert batcher.batch_sizes == {2: 1}
    for pred in preds:
        np.testing.assert_allclose(pred.people.keypoints, alone.keypoints, atol=1e-3)


def test_upload_checks_unit() -> None:
    from hrpose.serve.limits import Limits, RequestError, read_image_bytes

    limits = Limits(max_upload_bytes=2**20, max_pixels=1000)
    png = cv2.imencode(".png", np.zeros((10, 10, 3), np.uint8))[1].tobytes()
    assert read_image_bytes(png, limits).shape == (10, 10, 3)
    with pytest.raises(RequestError) as e:
        read_image_bytes(cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes(), limits)
    assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        read_image_bytes(_bomb_png(), Limits())
    assert e.value.status == 413
    buf = io.BytesIO(png[:-20])
    with pytest.raises(RequestError) as e:
        read_image_bytes(buf.getvalue(), limits)
    assert e.value.status == 422


def test_workers_each_load_the_model(weights: Path, coco_mini: Path, tmp_path: Path) -> None:
    srv = Server(weights, tmp_path / "server.log", "--workers", "2")
    try:
        srv.wait_ready()
        deadline = time.monotonic() + 120
        while srv.text().count("model loaded") < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert srv.text().count("model loaded") == 2, srv.text()
        jpeg = (coco_mini / "images" / IMAGE).read_bytes()
        with ThreadPoolExecutor(2) as pool:
            statuses = [r[0] for r in pool.map(lambda _: srv.poses(jpeg), range(4), timeout=300)]
        assert statuses == [200] * 4
    finally:
        assert srv.stop() in (0, -15)


def test_health_is_503_until_loaded_and_says_why_loading_failed() -> None:
    """In-process app with a loader held on an event: /health and /v1/poses answer 503 while it
    loads, then /health reports the loader's error; the server itself stays up."""
    import uvicorn

    from hrpose.serve import create_app
    from serving import free_port

    release = threading.Event()

    def load():
        release.wait(30)
        raise ValueError("no such weights: boom.pt")

    port = free_port()
    config = uvicorn.Config(create_app(load), host=HOST, port=port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = Server.__new__(Server)  # only its request helpers
    client.port = port
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        status, _, body = client.request("GET", "/health")
        assert status == 503 and json.loads(body)["status"] == "loading"
        status, err, _ = client.poses(b"\xff\xd8")
        assert status == 503 and "still loading" in err["error"]["message"]
        release.set()
        while json.loads(client.request("GET", "/health")[2])["status"] == "loading":
            time.sleep(0.05)
        status, _, body = client.request("GET", "/health")
        assert status == 503 and json.loads(body) == {
            "status": "failed",
            "error": "ValueError: no such weights: boom.pt",
        }
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)


def test_bad_settings_are_refused_before_serving(shared_data, capsys) -> None:
    """An unknown --inference key stops the command with the close matches (no server)."""
    from hrpose.cli import serve

    weights = str(shared_data / "weights" / "w8-coco-mini.pt")
    assert serve.main(["--weights", weights, "--inference.refin=false"]) == 2
    assert "Did you mean: inference.refine" in capsys.readouterr().err
