"""How the model meets the hardware: device resolution, AMP dtype, channels_last, SyncBatchNorm,
torch.compile and DistributedDataParallel.

The loop keeps the bare model (checkpoints, validation) and trains the wrapped one; these
functions take plain values (the trainer section's fields) and return new objects.
"""

from __future__ import annotations

import torch
from torch import nn

from hrpose.engine.distributed import DistInfo


def resolve_device(accelerator: str) -> torch.device:
    """auto -> cuda if available (else mps, else cpu); explicit names are checked."""
    if accelerator == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "trainer.accelerator=cuda but no CUDA device is visible; use auto or cpu"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("trainer.accelerator=mps but MPS is not available; use auto or cpu")
    return torch.device(accelerator)


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """This rank's device: its own CUDA device (LOCAL_RANK) under torchrun, else ``device``."""
    return torch.device("cuda", info.local_rank) if device.type == "cuda" else device


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: auto = bf16 on CUDA when supported, else fp16; CPU runs in fp32."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model`` on ``device``, in channels_last memory format when asked."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def wrap_model(
    model: nn.Module, device: torch.device, info: DistInfo, *, sync_batchnorm: bool,
    use_compile: bool,
) -> nn.Module:  # fmt: skip
    """The model the loop trains: SyncBatchNorm (DDP on CUDA), torch.compile, then DDP."""
    if sync_batchnorm and info.enabled:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif info.is_main:
            print("trainer.sync_batchnorm ignored: SyncBatchNorm needs CUDA devices")
    if use_compile:
        model = torch.compile(model)
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model
