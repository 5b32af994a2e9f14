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
    from hrpose.cli.options import add_inference_flags

    p = argparse.ArgumentParser(
        prog="hrpose serve",
        allow_abbrev=False,
        description="Serve a pose model over HTTP: POST /v1/poses, GET /health, GET /v1/model, "
        "/docs, and a web page at / (image upload or webcam). Binds 127.0.0.1 unless --host. "
        "The model-level settings come from the weights' record, then --config's inference "
        "section, then flags (--inference.FIELD=VALUE or the shorthands below).",
    )
    p.add_argument("--weights", required=True, help="checkpoint, .onnx, URL or registered name")
    p.add_argument("--config", help="a YAML config whose inference section overrides the record")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    add_inference_flags(p)
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


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(flags, ``--inference.field=value`` overrides), in the grammar of every command."""
    from hrpose.cli.options import parse

    return parse(_parser(), argv, ("inference",))


def build_predictor(args: argparse.Namespace, overrides: list[str] = ()):
    """The Predictor the server runs: the weights with their record's settings, overridden by
    --config's inference section and the model-level flags (as `hrpose predict`)."""
    import torch

    from hrpose.cli.options import command_config, resolve_inference
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.loading import load_model
    from hrpose.predict import Predictor

    overrides = list(overrides)
    command_config(PoseTrainConfig, args, overrides)  # unknown keys name close matches
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(args.weights, device=device)
    settings, _ = resolve_inference(loaded.record.inference, args, overrides)
    return Predictor.from_loaded(loaded, params=settings, device=device)


def build_app(args: argparse.Namespace, overrides: list[str] = ()):
    from hrpose.serve import Limits, Overrides, create_app

    limits = Limits(int(args.max_upload_mb * 2**20), args.max_pixels)
    drawing = Overrides(
        person_threshold=args.person_threshold,
        joint_threshold=args.joint_threshold,
        limb_ratio=args.limb_ratio,
    )
    return create_app(
        lambda: build_predictor(args, overrides),
        limits=limits,
        cors=args.cors,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
        drawing=drawing,
    )


def app_from_env():
    """uvicorn's factory for --workers N: each worker process rebuilds the app."""
    _logging()
    return build_app(*parse_args(json.loads(os.environ[ENV])))


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
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
    from hrpose.cli.options import command_config
    from hrpose.config.load import ConfigError
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.hub import is_remote

    w = args.weights
    if w != "random" and not Path(w).is_file() and not is_remote(w):
        print(f"hrpose serve: weights file not found: {w}", file=sys.stderr)
        return 2
    try:  # a bad --config or override is a message now, not a failed load behind /health
        command_config(PoseTrainConfig, args, overrides)
    except ConfigError as e:
        print(f"hrpose serve: {e}", file=sys.stderr)
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
        uvicorn.run(build_app(args, overrides), **common)
    else:
        os.environ[ENV] = json.dumps(argv)
        uvicorn.run("hrpose.cli.serve:app_from_env", factory=True, workers=args.workers, **common)
    return 0
