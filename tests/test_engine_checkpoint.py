"""Checkpoints are atomic, versioned, loadable with weights_only and restore RNG streams."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hrpose.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_round_trip_restores_rng(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(
        tmp_path / "ck" / "last.pt", {"model": model.state_dict(), "rng": rng_state(), "epoch": 4}
    )
    expected = (random.random(), np.random.rand(), float(torch.rand(1)))  # noqa: NPY002
    state = load_checkpoint(path)
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), float(torch.rand(1))) == expected  # noqa: NPY002
    assert state["epoch"] == 4 and state["format_version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp files left


def test_failed_write_keeps_previous_file(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "bad": Boom()})
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_bad_checkpoints(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="setup.ckpt_path"):
        load_checkpoint(tmp_path / "absent.pt")
    weights_only = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.zeros(1)}, weights_only)
    with pytest.raises(ValueError, match="pretrained_ckpt_path"):
        load_checkpoint(weights_only)
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(save_checkpoint(tmp_path / "ok.pt", {"a": 1}).read_bytes()[:50])
    with pytest.raises(ValueError, match="cut short"):
        load_checkpoint(truncated)
