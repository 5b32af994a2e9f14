"""`hrpose serve --weights W`: the HTTP API and web page on one model (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from hrpose.viz.draw import JOINT_THRESHOLD, LIMB_RATIO, PERSON_THRESHOLD

# --workers N starts N processes; each builds its app from these settings (uvicorn imports it).
ENV = "HRPOSE_SERVE_ARGV"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hrpose serve",
        description="Serve a pose model over HTTP: POST /v1/poses, GET /health, GET /v1/model, "
        "/docs, and a web page at / (image upload or webcam). Binds 127.0.0.1 unless --host.",
    )
    p.add_argument("--weights", required=True, help="checkpoint, .onnx, URL or registered name")
    p.add_argument(
        "--config",
        help="a pose training YAML whose inference section to use (default: the one stored in "
        "an hrpose checkpoint, else the official settings)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--input-size", type=int, default=None, help="model-level input size")
    p.add_argument("--no-flip", action="store_true", help="model-level: no flip test")
    p.add_argument("--detection-threshold", type=float, default=None, help="model-level")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest body (default 20)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="largest image, width x height, checked before decoding (default 40000000)",
    )
    p.add_argument("--cors", metavar="ORIGIN", help="allow this origin (CORS is off by default)")
    p.add_argument("--workers", type=int, default=1, help="processes, each with its own model")
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="requests per network batch (default per device, as video frames: 1 on CPU, "
        "8 on CUDA)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of the network (default 1: on this project's busy 2-core CPU, torch's "
        "default of one per core served 37x fewer requests/s, its threads waiting on each "
        "other and on the server's own; benchmarks/README.md). 0: torch's default",
    )
    p.add_argument("--batch-timeout-ms", type=float, default=5.0, help="wait for batch mates")
    p.add_argument("--person-threshold", type=float, default=PERSON_THRESHOLD, help="drawing")
    p.add_argument("--joint-threshold", type=float, default=JOINT_THRESHOLD, help="drawing")
    p.add_argument("--limb-ratio", type=float, default=LIMB_RATIO, help="drawing")
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests get to finish after SIGTERM",
    )
    return p


def _checkpoint_inference(weights: str) -> dict:
    """The inference section an hrpose checkpoint stores with its training config, as
    InferenceConfig fields ({} for other files). Until the model record (issue 20) carries it."""
    path = Path(weights)
    if path.suffix == ".onnx" or not path.is_file():
        return {}
    from hrpose.models.weights import read_checkpoint

    obj = read_checkpoint(path)
    config = (obj.get("config") or {}) if isinstance(obj, dict) else {}
    section = dict(config.get("inference") or {})
    if "det_threshold" in section:  # the field's old name
        section["detection_threshold"] = section.pop("det_threshold")
    section.pop("ckpt_path", None)
    return section


def build_predictor(args: argparse.Namespace):
    """The Predictor the server runs: weights, their stored (or --config's) inference settings,
    then the model-level flags."""
    import torch

    from hrpose.config.load import from_dict, load_config
    from hrpose.config.schema import InferenceConfig, PoseTrainConfig
    from hrpose.hub import is_remote
    from hrpose.predict import WEIGHTS_HELP, Predictor

    weights = args.weights
    if weights != "random" and not Path(weights).is_file() and not is_remote(weights):
        raise ValueError(f"weights file not found: {weights}. {WEIGHTS_HELP}")
    if args.config:
        inference = load_config(PoseTrainConfig, args.config).inference
    else:
        inference = from_dict(InferenceConfig, _checkpoint_inference(weights), "inference")
    changes = {
        "input_size": args.input_size,
        "flip": False if args.no_flip else None,
        "detection_threshold": args.detection_threshold,
    }
    fields = {**inference.__dict__, **{k: v for k, v in changes.items() if v is not None}}
    inference = InferenceConfig(**fields)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Predictor.from_weights(
        weights, params=inference.decode_params(), input_size=inference.input_size, device=device
    )


def build_app(args: argparse.Namespace):
    from hrpose.serve import Limits, Overrides, create_app

    limits = Limits(int(args.max_upload_mb * 2**20), args.max_pixels)
    drawing = Overrides(
        person_threshold=args.person_threshold,
        joint_threshold=args.joint_threshold,
        limb_ratio=args.limb_ratio,
    )
    return create_app(
        lambda: build_predictor(args),
        limits=limits,
        cors=args.cors,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
        drawing=drawing,
    )


def app_from_env():
    """uvicorn's factory for --workers N: each worker process rebuilds the app."""
    _logging()
    return build_app(_parser().parse_args(json.loads(os.environ[ENV])))


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.workers < 1:
        raise SystemExit(f"hrpose serve: --workers must be >= 1, got {args.workers}")
    if args.max_batch is not None and args.max_batch < 1:
        raise SystemExit(f"hrpose serve: --max-batch must be >= 1, got {args.max_batch}")
    try:
        import uvicorn
    except ImportError:  # the serve extra is not installed
        raise SystemExit(
            "hrpose serve needs FastAPI and uvicorn: pip install 'hrpose[serve]'"
        ) from None
    from hrpose.hub import is_remote

    w = args.weights
    if w != "random" and not Path(w).is_file() and not is_remote(w):
        print(f"hrpose serve: weights file not found: {w}", file=sys.stderr)
        return 2
    if args.threads:
        if args.threads < 0:
            raise SystemExit(f"hrpose serve: --threads must be >= 0, got {args.threads}")
        # before torch starts its thread pools, so every thread and worker process gets it
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    _logging()
    common = {
        "host": args.host,
        "port": args.port,
        "log_config": None,  # our logging: one line per request from the app itself
        "access_log": False,
        "timeout_graceful_shutdown": args.graceful_timeout,
    }
    print(f"hrpose serve: http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    if args.workers == 1:
        uvicorn.run(build_app(args), **common)
    else:
        os.environ[ENV] = json.dumps(argv)
        uvicorn.run("hrpose.cli.serve:app_from_env", factory=True, workers=args.workers, **common)
    return 0
