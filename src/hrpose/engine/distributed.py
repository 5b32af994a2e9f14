"""The one module that talks to torch.distributed: torchrun env -> DistInfo, reductions.

Everything else asks :func:`is_main` or receives a :class:`DistInfo`. Without torchrun (or with
``use_DDP=False``) every function here degrades to the single-process answer.
"""

from __future__ import annotations

import datetime
import gc
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class PeerFailed(RuntimeError):
    """Another rank failed during setup; its message, as this rank can tell it."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE (defaults: a single process)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def init_distributed(use_ddp: bool, device: torch.device, timeout_s: int = 600) -> DistInfo:
    """Join the process group when launched by torchrun with ``use_ddp``; nccl on CUDA, gloo else.

    The timeout makes collectives fail (and the job end) when a rank dies instead of hanging.
    """
    info = env_info()
    if not use_ddp:
        if info.world_size > 1:
            raise RuntimeError(
                f"launched with WORLD_SIZE={info.world_size} but trainer.use_DDP=False: "
                "pass --trainer.use_DDP=True or run without torchrun"
            )
        return DistInfo()
    if "RANK" not in os.environ:
        # DDP asked for but not under torchrun: a one-process group keeps the code path equal.
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
        info = env_info()
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
        backend = "nccl"
        # Make NCCL errors/timeouts abort the process instead of blocking forever.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    else:
        backend = "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, store=_attempt_store(info, timeout), rank=info.rank,
                            world_size=info.world_size, timeout=timeout)  # fmt: skip
    return info


def _attempt_store(info: DistInfo, timeout: datetime.timedelta) -> dist.Store | None:
    """The rendezvous store of a torchrun restart, its keys prefixed by the attempt; None on a
    first attempt (env:// as usual). torchrun's agent keeps one store across restarts and the
    workers' keys are not per attempt, so a restarted rank may read the address a dead rank
    published and fail with "connection refused" (seen here on gloo about 3 restarts in 4)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt in ("", "0"):
        return None
    store, _, _ = next(dist.rendezvous("env://", info.rank, info.world_size, timeout=timeout))
    return dist.PrefixStore(f"hrpose/attempt_{attempt}", store)


def cleanup() -> None:
    """Leave the process group (safe to call when none exists). Unreachable objects that hold
    it (a DDP wrapper in a reference cycle) are collected first: left to the interpreter's
    shutdown, gloo's threads can free them without the GIL there and abort the process (seen in
    tests/test_engine_ddp_faults.py under load: a rank that had finished its work exited with
    SIGABRT, "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 or when not distributed: the only process that writes."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_mean(values: Mapping[str, float], weight: float = 1.0) -> dict[str, float]:
    """Weighted mean of scalar metrics over ranks (weight = e.g. this rank's sample count)."""
    if world_size() == 1 or not values:
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) * weight for k in keys] + [weight], dtype=torch.float64)
    t = t.to(_device())
    dist.all_reduce(t)
    t = t.cpu()
    return {k: float(t[i] / t[-1]) for i, k in enumerate(keys)}


def reduce_sum(values: Mapping[str, float]) -> dict[str, float]:
    """Sum of scalar metrics over ranks (counts, correct predictions)."""
    if world_size() == 1 or not values:
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64).to(_device())
    dist.all_reduce(t)
    return {k: float(v) for k, v in zip(keys, t.cpu().tolist(), strict=True)}


def any_rank(*flags: bool) -> list[bool]:
    """For each flag, whether it is set on any rank (one all-reduce for all flags)."""
    if world_size() == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([float(f) for f in flags], dtype=torch.float32).to(_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.cpu().tolist()]


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (run ids, run folders)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank (validation predictions)."""
    if world_size() == 1:
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def _portable(error: Exception) -> Exception:
    """``error`` itself when it survives pickling (the same type and message on every rank)."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:
        return PeerFailed(f"{type(error).__name__}: {error}")


def _agree(error: Exception | None, value: object) -> object:
    """Every rank says whether its part failed (one all-gather); any failure raises on all
    ranks: the failed rank its own error, the others a copy of the first failure."""
    if world_size() == 1:
        if error is not None:
            raise error
        return value
    said: list[object] = [None] * world_size()
    dist.all_gather_object(said, (None if error is None else _portable(error), value))
    for rank, (failure, _) in enumerate(said):  # type: ignore[misc]
        if failure is not None:
            if error is not None:
                raise error
            failure.add_note(f"(raised on rank {rank}; rank {dist.get_rank()} stops with it)")
            raise failure
    return said[0][1]  # type: ignore[index]


def main_decides(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only, its value on every rank; if it raises, every rank raises
    within one collective, instead of the others waiting in a broadcast until the timeout."""
    if not is_main():
        return _agree(None, None)  # type: ignore[return-value]
    try:
        value = fn()
    except Exception as e:
        return _agree(e, None)  # type: ignore[return-value]
    return _agree(None, value)  # type: ignore[return-value]


def all_succeed(fn: Callable[[], T]) -> T:
    """``fn()`` on every rank, its own value; if it raises on any rank, every rank raises."""
    try:
        value = fn()
    except Exception as e:
        _agree(e, None)
        raise  # unreachable: _agree raises
    _agree(None, None)
    return value
