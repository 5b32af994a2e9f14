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


def test_total_is_sum_of_batch_means_with_weights() -> None:
    torch.manual_seed(0)
    k, r = 3, 8
    outputs = [torch.randn(2, 2 * k, r, r, requires_grad=True), torch.randn(2, k, 2 * r, 2 * r)]
    heat = [torch.rand(2, k, r, r), torch.rand(2, k, 2 * r, 2 * r)]
    masks = [torch.ones(2, r, r), torch.ones(2, 2 * r, 2 * r)]
    j = torch.cat([_joints([[(0, 1, 1), (2, 3, 3)], [(1, 5, 5)]], k, r)] * 2)
    joints = [j, torch.zeros_like(j)]
    loss = HigherHRNetLoss(num_joints=k)
    total, parts = loss(outputs, heat, masks, joints)
    assert set(parts) == {"heatmaps_0", "heatmaps_1", "push", "pull"}
    assert math.isclose(float(total.detach()), float(sum(parts.values())), rel_tol=1e-6)
    hm0 = heatmap_loss(outputs[0][:, :k], heat[0], masks[0]).mean()
    assert torch.isclose(parts["heatmaps_0"], hm0)
    push, pull = ae_loss(outputs[0][:, k:], j)
    assert torch.isclose(parts["push"], push.mean() * 0.001)
    total.backward()
    assert outputs[0].grad is not None and outputs[0].grad[:, k:].abs().sum() > 0


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
