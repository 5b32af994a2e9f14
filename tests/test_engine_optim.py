"""Parameter groups and the pure LR schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrpose.engine.optim import build_optimizer, lr_factor, param_groups


def test_no_decay_on_norms_and_biases() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 1e-4)
    assert [p.shape for p in decay["params"]] == [(4, 3, 3, 3), (2, 4)]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
    opt = build_optimizer([decay, no_decay], "sgd", 0.05, nesterov=True)
    assert opt.param_groups[0]["weight_decay"] == 1e-4 and opt.param_groups[0]["nesterov"]
    assert len(param_groups(model, 0.0)) == 1


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_multi_tensor_updates_equal_single_tensor(name) -> None:
    """foreach is forced on for Adam/AdamW (also on CPU) and changes no value."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opt = build_optimizer([{"params": list(models[0].parameters())}], name, 0.01)
    assert opt.defaults["foreach"] is True
    ref_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    ref = ref_cls(models[1].parameters(), lr=0.01, foreach=False)
    for _ in range(3):
        x = torch.randn(2, 3, 8, 8)
        for model, o in zip(models, (opt, ref), strict=True):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_multistep_matches_official_epoch_steps() -> None:
    f = [lr_factor(e, schedule="multistep", max_epochs=300, milestones=[200, 260]) for e in
         (0, 199.99, 200, 259.5, 260, 299)]  # fmt: skip
    assert f == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_and_warmup() -> None:
    kw = {"schedule": "cosine", "max_epochs": 10, "warmup_epochs": 1.0, "warmup_factor": 0.1}
    assert lr_factor(0, **kw) == pytest.approx(0.1)
    assert lr_factor(0.5, **kw) == pytest.approx(
        0.55 * lr_factor(0.5, schedule="cosine", max_epochs=10)
    )
    assert lr_factor(5, **kw) == pytest.approx(0.5)
    assert lr_factor(10, **kw) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(1, schedule="poly", max_epochs=3)
