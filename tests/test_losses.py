"""HigherHRNet loss: masked MSE and AE push/pull with the official normalisation."""

from __future__ import annotations

import math

import torch

from hrpose.losses import HigherHRNetLoss, ae_loss, heatmap_loss


def _joints(people: list[list[tuple[int, int, int]]], k: int, r: int, p: int = 4) -> torch.Tensor:
    """(1, p, k, 2) packed indices from (joint, y, x) triples per person."""
    out = torch.zeros(1, p, k, 2, dtype=torch.long)
    for i, person in enumerate(people):
        for slot, (j, y, x) in enumerate(person):
            out[0, i, slot] = torch.tensor([j * r * r + y * r + x, 1])
    return out


def test_heatmap_loss_mask_and_mean() -> None:
    pred, gt = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    pred[0, 1, 2, 2] = 2.0
    mask = torch.ones(2, 4, 4)
    assert torch.allclose(heatmap_loss(pred, gt, mask), torch.tensor([4 / 48, 0.0]))
    mask[0, 2, 2] = 0
    assert heatmap_loss(pred, gt, mask)[0] == 0


def test_ae_pull_and_push_by_hand() -> None:
    k, r = 2, 4
    tags = torch.zeros(1, k, r, r)
    tags[0, 0, 0, 0], tags[0, 1, 1, 1] = 1.0, 3.0  # person A: tags 1 and 3 (mean 2)
    tags[0, 0, 2, 2], tags[0, 1, 3, 3] = 2.0, 2.0  # person B: tags 2 and 2
    joints = _joints([[(0, 0, 0), (1, 1, 1)], [(0, 2, 2), (1, 3, 3)]], k, r)
    push, pull = ae_loss(tags, joints)
    assert torch.isclose(pull[0], torch.tensor((1.0 + 0.0) / 2))  # A: mean((1-2)^2,(3-2)^2)=1
    assert torch.isclose(push[0], torch.tensor(0.5 * (4 - 2) / 2))  # equal means: exp(0) pairs
    tags[0, :, 2:, 2:] = 12.0  # B far from A: no push
    push, _ = ae_loss(tags, joints)
    assert push[0] < 1e-20


def test_ae_edge_cases() -> None:
    tags = torch.randn(2, 2, 4, 4)
    joints = torch.cat([_joints([], 2, 4), _joints([[(0, 1, 1)]], 2, 4)])
    push, pull = ae_loss(tags, joints)
    assert torch.equal(push, torch.zeros(2)) and torch.equal(pull, torch.zeros(2))


def test_total_by_hand() -> None:
    """Two joints, a 2x2 low and 4x4 high map, a batch of two (the second image all zero)."""
    k = 2
    low = torch.zeros(2, 2 * k, 2, 2)
    low[0, 0, 0, 0] = 1.0  # heatmap error 1 of 2*2*2 values: 1/8
    low[0, 2, 0, 0], low[0, 3, 1, 1] = 1.0, 3.0  # person A: tags 1, 3 (mean 2, pull 1)
    low[0, 2, 1, 0], low[0, 3, 0, 1] = 4.0, 4.0  # person B: tags 4, 4 (mean 4, pull 0)
    low.requires_grad_(True)
    high = torch.zeros(2, k, 4, 4)
    high[0, 1, 2, 3] = 3.0  # error 9 of 2*4*4 values: 9/32
    high[0, 0, 0, 0] = 5.0  # masked out below
    heat = [torch.zeros(2, k, 2, 2), torch.zeros(2, k, 4, 4)]
    masks = [torch.ones(2, 2, 2), torch.ones(2, 4, 4)]
    masks[1][0, 0, 0] = 0
    j = _joints([[(0, 0, 0), (1, 1, 1)], [(0, 1, 0), (1, 0, 1)]], k, 2)
    joints = [torch.cat([j, torch.zeros_like(j)]), torch.zeros(2, 4, k, 2, dtype=torch.long)]
    total, parts = HigherHRNetLoss(num_joints=k)([low, high], heat, masks, joints)
    # batch means: the second image contributes zeros; push/pull weights 0.001
    expected = {
        "heatmaps_0": (1 / 8) / 2,
        "heatmaps_1": (9 / 32) / 2,
        "push": 0.001 * (0.5 * 2 * math.exp(-4) / 2) / 2,  # 2 ordered pairs, d = 2
        "pull": 0.001 * ((1 + 0) / 2) / 2,
    }
    assert set(parts) == set(expected)
    for name, value in expected.items():
        assert math.isclose(float(parts[name]), value, rel_tol=1e-5), name  # fp32
    assert math.isclose(float(total.detach()), sum(expected.values()), rel_tol=1e-6)
    total.backward()
    assert low.grad is not None and low.grad[0, k:].abs().sum() > 0  # tags get a gradient
    assert float(low.grad[1].abs().sum()) == 0.0  # the empty image none


def test_fp32_under_autocast() -> None:
    outputs = [torch.randn(1, 4, 8, 8), torch.randn(1, 2, 16, 16)]
    heat = [torch.rand(1, 2, 8, 8), torch.rand(1, 2, 16, 16)]
    masks = [torch.ones(1, 8, 8), torch.ones(1, 16, 16)]
    joints = [torch.zeros(1, 2, 2, 2, dtype=torch.long)] * 2
    with torch.autocast("cpu", torch.bfloat16):
        total, _ = HigherHRNetLoss(num_joints=2)(
            [o.bfloat16() for o in outputs], heat, masks, joints
        )
    assert total.dtype == torch.float32
