"""The HTTP app: ``create_app(load)`` -> a FastAPI app serving one model to many clients.

Endpoints: ``POST /v1/poses`` (an image -> people JSON, or ``?draw=1`` a drawn JPEG),
``GET /health`` (503 until the model is loaded and warmed up), ``GET /v1/model``, the web page
at ``/`` (three packaged files, no build step, nothing from a CDN) and FastAPI's ``/docs`` and
``/openapi.json``. No route takes a path: the page's files are named in the code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources

import cv2
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hrpose import __version__
from hrpose.evaluation.coco_results import people_to_coco
from hrpose.predict import Predictor, default_batch_frames
from hrpose.serve.batching import Busy, MicroBatcher
from hrpose.serve.limits import (
    IMAGE_TYPES,
    Limits,
    Overrides,
    RequestError,
    check_content_length,
    check_size,
    content_kind,
    parse_overrides,
    read_image_bytes,
)
from hrpose.viz.draw import draw_people

log = logging.getLogger("hrpose.serve")

# The page's files: URL path -> (package file, media type). Nothing else is ever read.
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
WARMUP_SIZE = (64, 64)
DEFAULT_LIMITS = Limits()
DEFAULT_DRAWING = Overrides()


def _model_info(predictor: Predictor) -> dict:
    """The model record, as run (its inference settings resolved), as JSON-able data."""
    return predictor.record.to_dict()


def _inference_settings(info: dict) -> dict:
    """The record's inference settings (what "settings" of an answer starts from)."""
    return dict(info.get("inference", {}))


class _State:
    """The model once loaded, and why not while it is not."""

    def __init__(self) -> None:
        self.batcher: MicroBatcher | None = None
        self.info: dict = {}
        self.error: str | None = None
        self.loaded_s: float | None = None

    def load(self, load: Callable[[], Predictor], max_batch: int | None, timeout_s: float) -> None:
        t0 = time.perf_counter()
        try:
            predictor = load()
            # one forward before answering ready, so the first client does not pay for it
            predictor.predict(np.zeros((*WARMUP_SIZE, 3), np.uint8))
            batch = max_batch or default_batch_frames(predictor.device)
            self.info = _model_info(predictor)
            self.batcher = MicroBatcher(predictor, batch, timeout_s)
            self.loaded_s = time.perf_counter() - t0
            log.info("model loaded in %.1f s: %s", self.loaded_s, predictor.description)
        except Exception as e:  # noqa: BLE001 - reported by /health, the server stays up
            self.error = f"{type(e).__name__}: {e}"
            log.error("model failed to load: %s", self.error)

    def require(self) -> MicroBatcher:
        if self.batcher is None:
            what = f"failed to load ({self.error})" if self.error else "is still loading"
            raise RequestError(503, f"the model {what}; GET /health says when it is ready")
        return self.batcher


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


def create_app(
    load: Callable[[], Predictor],
    *,
    limits: Limits = DEFAULT_LIMITS,
    cors: str | None = None,
    max_batch: int | None = None,
    batch_timeout_ms: float = 5.0,
    drawing: Overrides = DEFAULT_DRAWING,
) -> FastAPI:
    """The app. ``load`` builds the Predictor; it runs on a thread once the server starts, so
    ``/health`` answers (503) while it loads. ``max_batch`` None: the per-device rule."""
    state = _State()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        args = (load, max_batch, batch_timeout_ms / 1e3)
        threading.Thread(target=state.load, args=args, name="hrpose-load", daemon=True).start()
        yield
        if state.batcher is not None:  # in-flight requests have finished by now
            state.batcher.close()
        log.info("stopped")

    app = FastAPI(
        title="hrpose serve",
        version=__version__,
        description="Multi-person poses (HigherHRNet) over HTTP. See docs/serve.md.",
        lifespan=lifespan,
    )
    app.state.hrpose = state
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=[cors],
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )

    @app.middleware("http")
    async def log_request(request: Request, call_next):
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            ms = (time.perf_counter() - t0) * 1e3
            log.info("%s %s %d %.1f ms", request.method, request.url.path, status, ms)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        return _error(e.status, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        return _error(400, "; ".join(parts))

    def _page(path: str) -> Callable:
        name, media = STATIC[path]

        async def page() -> Response:
            text = resources.files("hrpose.serve").joinpath("static", name).read_bytes()
            return Response(text, media_type=media, headers={"Cache-Control": "no-cache"})

        return page

    for path in STATIC:
        app.add_api_route(path, _page(path), methods=["GET"], include_in_schema=False)

    @app.get("/health", summary="ready once the model is loaded (503 before)")
    async def health() -> JSONResponse:
        if state.batcher is None:
            status = "failed" if state.error else "loading"
            return JSONResponse({"status": status, "error": state.error}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "load_s": round(state.loaded_s or 0.0, 3),
                "max_batch": state.batcher.max_batch,
                "batches": {str(k): v for k, v in sorted(state.batcher.batch_sizes.items())},
            }
        )

    @app.get("/v1/model", summary="the model record and the server's limits")
    async def model() -> JSONResponse:
        batcher = state.require()
        return JSONResponse(
            {
                "model": state.info,
                "server": {
                    "max_upload_bytes": limits.max_upload_bytes,
                    "max_pixels": limits.max_pixels,
                    "max_batch": batcher.max_batch,
                    "content_types": [*IMAGE_TYPES, "multipart/form-data"],
                    "overrides": dataclasses.asdict(drawing),
                },
            }
        )

    @app.post(
        "/v1/poses",
        summary="people in an image (JSON), or the image with their skeletons (?draw=1)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"image": {"type": "string", "format": "binary"}},
                        }
                    },
                },
            }
        },
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def poses(
        request: Request,
        draw: bool = Query(False, description="answer the drawn JPEG instead of JSON"),
        person_threshold: float | None = Query(None, ge=0, le=1, description="draw people >="),
        joint_threshold: float | None = Query(None, ge=0, le=1, description="draw joints >="),
        flip: bool | None = Query(None, description="flip test (default: the model's setting)"),
    ) -> Response:
        t0 = time.perf_counter()
        over = parse_overrides(request.query_params.multi_items(), drawing)
        kind = content_kind(request.headers.get("content-type"))
        batcher = state.require()
        check_content_length(request.headers, limits)
        try:
            data, declared = await _read_upload(request, kind, limits)
        except ClientDisconnect:
            log.info("client disconnected during the upload")
            return Response(status_code=499)
        t_read = time.perf_counter()
        image = await asyncio.to_thread(read_image_bytes, data, limits, declared)
        t_decoded = time.perf_counter()
        try:
            future = batcher.submit(image, over.flip)
        except Busy as e:
            raise RequestError(503, str(e)) from None
        try:
            pred, timing = await asyncio.wrap_future(future)
        except Busy as e:
            raise RequestError(503, str(e)) from None
        h, w = image.shape[:2]
        if over.draw:
            jpeg = await asyncio.to_thread(_drawn_jpeg, image, pred.people, batcher, over)
            return Response(
                jpeg,
                media_type="image/jpeg",
                headers={"X-People": str(len(pred.people))},
            )
        settings = _inference_settings(state.info)
        if over.flip is not None:
            settings["flip"] = over.flip
        settings.update(
            person_threshold=over.person_threshold,
            joint_threshold=over.joint_threshold,
            limb_ratio=over.limb_ratio,
        )
        people = [
            {k: row[k] for k in ("keypoints", "score", "bbox")}
            for row in people_to_coco(pred.people, 0)
        ]
        for p in people:
            flat = p["keypoints"]
            p["keypoints"] = [flat[i : i + 3] for i in range(0, len(flat), 3)]
        total = (time.perf_counter() - t0) * 1e3
        return JSONResponse(
            {
                "people": people,
                "image": {"width": w, "height": h},
                "settings": settings,
                "timing_ms": {
                    "read": round((t_read - t0) * 1e3, 2),
                    "decode_image": round((t_decoded - t_read) * 1e3, 2),
                    "queue": round(timing.queue_ms, 2),
                    "predict": round(timing.predict_ms, 2),
                    "batch_size": timing.batch_size,
                    "total": round(total, 2),
                },
            }
        )

    return app


async def _read_upload(request: Request, kind: str, limits: Limits) -> tuple[bytes, str | None]:
    """The image bytes of a raw or multipart body, counted against the limit as they arrive."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        check_size(size, limits)
        chunks.append(chunk)
    body = b"".join(chunks)
    if kind == "raw":
        return body, request.headers["content-type"].split(";")[0].strip().lower()
    if not body:
        raise RequestError(400, "empty body: send a JPEG or PNG image")
    request._body = body  # starlette parses the form from the bytes already read
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=limits.max_upload_bytes)
    except Exception as e:  # noqa: BLE001 - malformed multipart of any kind
        raise RequestError(400, f"malformed multipart body ({e})") from None
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if not files:
        raise RequestError(400, "multipart body without a file field: send the image as 'image'")
    data = await files[0].read()
    media = (files[0].content_type or "").split(";")[0].strip().lower()
    await form.close()
    return data, media if media in IMAGE_TYPES else None


def _drawn_jpeg(image: np.ndarray, people, batcher: MicroBatcher, over: Overrides) -> bytes:
    spec = batcher.predictor.spec
    drawn = draw_people(
        image,
        people,
        spec,
        joint_threshold=over.joint_threshold,
        person_threshold=over.person_threshold,
        limb_ratio=over.limb_ratio,
    )
    ok, buf = cv2.imencode(".jpg", drawn[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RequestError(500, "could not encode the drawn image")
    return buf.tobytes()
