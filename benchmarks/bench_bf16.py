"""Why bf16 moves keypoints: which part of HigherHRNet, and which decoder step, the rounding hits.

    PYTHONPATH=src python benchmarks/bench_bf16.py                 # coco-mini, examples, street
    PYTHONPATH=src python benchmarks/bench_bf16.py --frames 0      # images only

w8-coco-mini.pt (real peaks on coco-mini) at its record's input 192, no flip, detection
threshold 0.3, on the Predictor's fp32 network (BatchNorm folded, channels_last). Each row runs
one way of using bf16 and is compared with fp32 on the same network and inputs:

  a   whole network under bf16 autocast (the old ``precision="bf16"``)
  a1  a's heatmaps with fp32 tags          a2  fp32 heatmaps with a's tags
  b   backbone under bf16, its features cast to fp32, the heads in fp32
  c   fp32 network, outputs rounded to bf16 (the rounding of heatmaps and tags alone)
  c1  c on the heatmaps only               c2  c on the tags only
  d   backbone fp32, heads under bf16 autocast
  P   ``Predictor(precision="bf16")`` as shipped (equals b)
  w   fp32 compute with the backbone's weights rounded to bf16 (the weights' share of b's error)
  s1-s4  one backbone segment under bf16 (stem + layer1, stage 2, 3, 4), the rest fp32
  e   whole network under fp16 autocast (3 more mantissa bits; emulated on a CPU)

Columns: ppl: fp32 people; OKS.9 / OKS.5: share of them matched (Hungarian on OKS, COCO
sigmas, area = the fp32 person's keypoint box) at OKS >= 0.9 / >= 0.5; <=1px: share with
every joint within 1 px; +/-: people added or lost; det.med / det.max: joint shift (px) of the
matched pairs over the joints fp32 scores >= the threshold; all.max: over all joints (refine's
low-score fills included); |dheat| / |dtag|: max |diff| of the raw heatmaps (1/4 and 1/2) and
tags; top-k: candidates above the threshold gone and new, of fp32's (m: gone ones with a new
one of their joint within 4 px, one 1/4-resolution pixel: a moved peak); ties: NMS peaks tied
with another pixel of their window; tag flips: (candidate, person) pairs whose tag distance
crosses the tag threshold / changes its rounding (the grouping cost is round(distance) * 100 -
score), of all pairs. A second part gives the magnitudes of the fp32 features and outputs and
the bf16 step at them. bf16 is emulated on CPUs without AVX512-BF16/AMX: the numerics are the
same, the speed is not measured here.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from hrpose.data.images import list_images, read_image
from hrpose.decode import DecodeParams, decode, decode_maps
from hrpose.decode.aggregate import HeatSource, TagSource, aggregate
from hrpose.decode.peaks import max_filter, top_k
from hrpose.predict import Predictor
from hrpose.skeleton import COCO17
from hrpose.structures import People, PoseOutput

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HRPOSE_SHARED_DATA", ROOT.parent / "shared" / "data"))
BF16 = torch.bfloat16
K = COCO17.num_joints

Outputs = tuple[Tensor, Tensor]  # (low (1, 2K, h, w), high (1, K, 2h, 2w)), float32


def _heads(net: torch.nn.Module, feat: Tensor) -> Outputs:
    low, high = net.forward_heads(feat)
    return low.float(), high.float()


def forwards(net: torch.nn.Module, x: Tensor) -> dict[str, Outputs | Tensor]:
    """The fp32 features and outputs, and the outputs of each forward variant (a, b, d)."""
    dev = x.device.type
    feat = net.forward_features(x)[0]
    out = {"feat": feat, "fp32": _heads(net, feat)}
    with torch.autocast(dev, BF16):
        out["a"] = tuple(t.float() for t in net(x))
        feat16 = net.forward_features(x)[0]
        out["d"] = _heads(net, feat)  # fp32 features, heads under autocast
    out["feat_bf16"] = feat16.float()
    out["b"] = _heads(net, feat16.float())
    with torch.autocast(dev, torch.float16):
        out["e"] = tuple(t.float() for t in net(x))
    out["w"] = _heads(net, _rounded_weights(net).forward_features(x)[0])
    for name in SEGMENTS:
        out["s-" + name] = _heads(net, _staged(net, x, {name}))
    return out


SEGMENTS = ("stem+layer1", "stage2", "stage3", "stage4")


def _staged(net: torch.nn.Module, x: Tensor, bf16: set[str]) -> Tensor:
    """HRNet.forward_features with the named segments under bf16 autocast, fp32 in between."""

    def seg(name: str, fn: Callable[[], object]) -> object:
        with torch.autocast(x.device.type, BF16, enabled=name in bf16):
            y = fn()
        return [t.float() for t in y] if isinstance(y, list) else y.float()

    t = seg("stem+layer1", lambda: net.layer1(net.relu(net.bn2(net.conv2(
        net.relu(net.bn1(net.conv1(x))))))))  # fmt: skip
    y = seg("stage2", lambda: net.stage2(net._transit(net.transition1, [t])))
    y = seg("stage3", lambda: net.stage3(net._transit(net.transition2, y)))
    return seg("stage4", lambda: net.stage4(net._transit(net.transition3, y)))[0]


_ROUNDED: dict[int, torch.nn.Module] = {}


def _rounded_weights(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of the network with every parameter rounded to bf16 (computing in fp32; the
    bench runs its backbone only)."""
    if id(net) not in _ROUNDED:
        import copy

        twin = copy.deepcopy(net)
        for prm in twin.parameters():
            prm.data = prm.data.to(BF16).float()
        _ROUNDED[id(net)] = twin
    return _ROUNDED[id(net)]


def _mix(heat_from: Outputs, tags_from: Outputs) -> Outputs:
    low = torch.cat([heat_from[0][:, :K], tags_from[0][:, K:]], 1)
    return low, heat_from[1]


def _round(o: Outputs, heat: bool = True, tags: bool = True) -> Outputs:
    """The outputs with the heatmaps and/or tags rounded to bf16 and back."""

    def r(t: Tensor, on: bool) -> Tensor:
        return t.to(BF16).float() if on else t

    return torch.cat([r(o[0][:, :K], heat), r(o[0][:, K:], tags)], 1), r(o[1], heat)


ROWS: dict[str, tuple[str, Callable[[dict], Outputs]]] = {
    "a": ("whole network bf16 (old)", lambda f: f["a"]),
    "a1": ("  a's heatmaps, fp32 tags", lambda f: _mix(f["a"], f["fp32"])),
    "a2": ("  fp32 heatmaps, a's tags", lambda f: _mix(f["fp32"], f["a"])),
    "b": ("backbone bf16, heads fp32", lambda f: f["b"]),
    "c": ("fp32, outputs rounded to bf16", lambda f: _round(f["fp32"])),
    "c1": ("  heatmaps rounded only", lambda f: _round(f["fp32"], tags=False)),
    "c2": ("  tags rounded only", lambda f: _round(f["fp32"], heat=False)),
    "d": ("heads bf16, backbone fp32", lambda f: f["d"]),
    "P": ('Predictor(precision="bf16")', lambda f: f["P"]),
    "w": ("fp32, backbone weights in bf16", lambda f: f["w"]),
    **{f"s{i + 1}": (f"only {n} bf16", lambda f, n=n: f["s-" + n]) for i, n in enumerate(SEGMENTS)},
    "e": ("whole network fp16 (emulated)", lambda f: f["e"]),
}


def oks_match(ref: People, got: People) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(OKS of each ref person with its partner (0 if none), the matched ref people's indices
    (n,), their joint shifts (n, K) px): Hungarian on OKS."""
    n = len(ref)
    if n == 0 or len(got) == 0:
        return np.zeros(n), np.zeros(0, int), np.zeros((0, K))
    a, b = ref.keypoints[:, :, :2], got.keypoints[:, :, :2]
    box = a.max(1) - a.min(1)
    area = box[:, 0] * box[:, 1]
    var = (2 * np.asarray(COCO17.sigmas)) ** 2
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)  # (n, m, K)
    oks = np.exp(-d2 / var / (area[:, None, None] + np.spacing(1)) / 2).mean(-1)
    ia, ib = linear_sum_assignment(-oks)
    best = np.zeros(n)
    best[ia] = oks[ia, ib]
    return best, ia, np.sqrt(d2[ia, ib])


def _peaks(heat: Tensor, threshold: float, kernel: int) -> tuple[Tensor, Tensor]:
    """NMS peaks above threshold of (K, H, W) maps: their (n, 3) indices and which are tied
    with another pixel of their window (equal value: NMS keeps both or the top-k picks one)."""
    flat = heat
    peak = (max_filter(heat[None], kernel)[0] == flat) & (flat > threshold)
    idx = peak.nonzero()
    r = kernel // 2
    pad = F.pad(heat, (r, r, r, r), value=-torch.inf)
    d = torch.arange(kernel)
    dy, dx = (t.reshape(-1) for t in torch.meshgrid(d, d, indexing="ij"))
    win = pad[idx[:, :1], idx[:, 1:2] + dy, idx[:, 2:3] + dx]  # (n, kernel^2)
    ties = (win == flat[idx[:, 0], idx[:, 1], idx[:, 2]][:, None]).sum(1) > 1
    return idx, ties


def _near_ties(heat: Tensor, threshold: float, kernel: int) -> int:
    """fp32 peaks with another pixel of their window within bf16's relative step (2^-8)."""
    idx, _ = _peaks(heat, threshold, kernel)
    r = kernel // 2
    pad = F.pad(heat, (r, r, r, r), value=-torch.inf)
    d = torch.arange(kernel)
    dy, dx = (t.reshape(-1) for t in torch.meshgrid(d, d, indexing="ij"))
    win = pad[idx[:, :1], idx[:, 1:2] + dy, idx[:, 2:3] + dx]
    v = heat[idx[:, 0], idx[:, 1], idx[:, 2]][:, None]
    close = (v - win).abs() <= v.abs() * 2.0**-8
    return int((close.sum(1) > 1).sum())


def _candidates(heat: HeatSource, tags: TagSource, p: DecodeParams) -> np.ndarray:
    """Flat keys joint * H * W + y * W + x of the top-k candidates above the threshold."""
    _, loc, val = top_k(heat, tags, p.max_people, p.nms_kernel, p.detection_threshold)
    h, w = heat.out_hw
    j = np.broadcast_to(np.arange(K)[:, None], val.shape)
    keys = j * h * w + loc[..., 1] * w + loc[..., 0]
    return keys[val > p.detection_threshold]


def _changes(keys0: np.ndarray, keys1: np.ndarray, hw: tuple[int, int]) -> tuple[int, int, int]:
    """(fp32 candidates gone, candidates new, gone ones with a new one of the same joint within
    4 px, one 1/4-resolution pixel: a peak that moved rather than vanished)."""
    gone, new = np.setdiff1d(keys0, keys1), np.setdiff1d(keys1, keys0)
    h, w = hw

    def jyx(k: np.ndarray) -> np.ndarray:
        return np.stack([k // (h * w), k % (h * w) // w, k % w], 1)

    a, b = jyx(gone), jyx(new)
    near = (a[:, None, 0] == b[None, :, 0]) & (np.abs(a[:, None, 1:] - b[None, :, 1:]).max(-1) <= 4)
    return len(gone), len(new), int(near.any(1).sum())


def heads_share(width: int, hw: tuple[int, int]) -> float:
    """The heads' (final_layers, deconv_layers) share of a HigherHRNet's multiply-adds."""
    from hrpose.models import HigherHRNet, summarize

    class Backbone(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Tensor) -> list[Tensor]:
            return self.net.forward_features(x)

    net = HigherHRNet(width, init_weights=False)
    total = summarize(net, hw).macs
    return 1 - summarize(Backbone(net), hw).macs / total


def _tag_flips(
    heat: HeatSource, tags: TagSource, tags_got: TagSource, p: DecodeParams
) -> tuple[int, int, int]:
    """(pairs, threshold crossings, rounding changes) of the tag distance between each fp32
    candidate and each fp32 person (grouped, no adjust/refine), fp32 tags vs the variant's."""
    plain = replace(p, adjust=False, refine=False)
    people, _ = decode_maps(heat, tags, COCO17, plain)
    keys = _candidates(heat, tags, p)
    if len(people) == 0 or len(keys) == 0:
        return 0, 0, 0
    h, w = heat.out_hw
    cj, cy, cx = (torch.from_numpy(v) for v in (keys // (h * w), keys % (h * w) // w, keys % w))
    found = people[:, :, 2] > 0  # (P, K)
    pp, pj = np.nonzero(found)
    px, py = people[pp, pj, 0].astype(np.int64), people[pp, pj, 1].astype(np.int64)
    jt, yt, xt = torch.from_numpy(pj), torch.from_numpy(py), torch.from_numpy(px)
    n_p = len(people)
    counts = np.bincount(pp, minlength=n_p)[:, None]

    def dist(src: TagSource) -> np.ndarray:
        at = src.at(jt, yt, xt).double().numpy()  # (F, T) tags of the people's joints
        mean = np.zeros((n_p, at.shape[1]))
        np.add.at(mean, pp, at)
        mean /= np.maximum(counts, 1)
        cand = src.at(cj, cy, cx).double().numpy()
        return np.linalg.norm(cand[:, None] - mean[None], axis=2)  # (C, P)

    d0, d1 = dist(tags), dist(tags_got)
    thr = p.tag_threshold
    return d0.size, int(((d0 < thr) != (d1 < thr)).sum()), int((np.round(d0) != np.round(d1)).sum())


def _maps(o: Outputs, size: tuple[int, int]) -> tuple[HeatSource, TagSource]:
    """The decoder's heatmaps and tags of one output at the input ``size`` (w, h)."""
    return aggregate([(1.0, PoseOutput(*o), None)], COCO17.flip_index, size)


def analyse(items: dict[str, list[np.ndarray]], pred: Predictor, bf16: Predictor) -> None:
    """Print the comparison table and the magnitudes table over the image sets."""
    p = pred.params.decode_params()
    net = pred.network
    stats: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    mags: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for set_name, images in items.items():
        for image in images:
            prep = pred.prepare(image)
            x = prep.inputs[0][None].contiguous(memory_format=torch.channels_last)
            tfs = list(prep.transforms)
            with torch.inference_mode():
                f = forwards(net, x)
                f["P"] = tuple(bf16._run(x))
            ref_out = f["fp32"]
            ref = decode([ref_out], tfs, spec=COCO17, params=p)
            heat0, tags0 = _maps(ref_out, tfs[0].size)
            full0 = heat0.full()
            keys0 = _candidates(heat0, tags0, p)
            m = mags[set_name]
            feat = f["feat"]
            m["feat max"].append(float(feat.abs().max()))
            m["feat rms"].append(float(feat.pow(2).mean().sqrt()))
            m["feat bf16 rel err"].append(
                float((f["feat_bf16"] - feat).abs().max() / feat.abs().max())
            )
            m["heat max"].append(
                float(torch.cat([ref_out[0][:, :K].flatten(), ref_out[1].flatten()]).max())
            )
            m["tag max"].append(float(ref_out[0][:, K:].abs().max()))
            m["tag |v| at cand"].append(_tag_at_candidates(heat0, tags0, p))
            m["near ties"].append(_near_ties(full0, p.detection_threshold, p.nms_kernel))
            m["fp32 ties"].append(int(_peaks(full0, p.detection_threshold, p.nms_kernel)[1].sum()))
            m["candidates"].append(len(keys0))
            for row, (_, fn) in ROWS.items():
                o = fn(f)
                got = decode([o], tfs, spec=COCO17, params=p)
                heat1, tags1 = _maps(o, tfs[0].size)
                best, ia, shift = oks_match(ref, got)
                detected = ref.keypoints[ia, :, 2] >= p.detection_threshold
                s = stats[(row, set_name)]
                s["people"].append(len(ref))
                s["oks"].append(best)
                s["within1"].append(shift.max(1) <= 1.0 if len(shift) else np.zeros(0, bool))
                s["lost"].append(abs(len(got) - len(ref)))
                s["shift"].append(shift.ravel())
                s["shift_det"].append(shift[detected])
                s["dheat"].append(
                    max(
                        float((o[0][:, :K] - ref_out[0][:, :K]).abs().max()),
                        float((o[1] - ref_out[1]).abs().max()),
                    )  # fmt: skip
                )
                s["dtag"].append(float((o[0][:, K:] - ref_out[0][:, K:]).abs().max()))
                keys1 = _candidates(heat1, tags1, p)
                lost, new, moved = _changes(keys0, keys1, heat0.out_hw)
                s["lost_c"].append(lost)
                s["new_c"].append(new)
                s["moved"].append(moved)
                s["cand"].append(len(keys0))
                s["ties"].append(
                    int(_peaks(heat1.full(), p.detection_threshold, p.nms_kernel)[1].sum())
                )
                pairs, cross, rounded = _tag_flips(heat0, tags0, tags1, p)
                s["pairs"].append(pairs)
                s["cross"].append(cross)
                s["round"].append(rounded)
    _print_table(stats)
    _print_mags(mags)


def _tag_at_candidates(heat: HeatSource, tags: TagSource, p: DecodeParams) -> float:
    """Largest |tag| at the fp32 candidates (what the grouping compares)."""
    tk, _, val = top_k(heat, tags, p.max_people, p.nms_kernel, p.detection_threshold)
    return float(np.abs(tk[val > p.detection_threshold]).max(initial=0.0))


def _print_table(stats: dict) -> None:
    """One line per (row, image set): the comparison with fp32."""
    cols = (
        "row",
        "variant",
        "set",
        "ppl",
        "OKS.9",
        "OKS.5",
        "<=1px",
        "+/-",
        "det.med",
        "det.max",
        "all.max",
        "|dheat|",
        "|dtag|",
        "top-k -/+ of",
        "ties",
        "tag flips",
    )
    widths = (3, 30, 10, 4, 6, 6, 6, 3, 7, 7, 7, 7, 6, 16, 4, 22)  # fmt: skip
    print(" ".join(f"{c:<{w}}" for c, w in zip(cols, widths, strict=True)))
    for (row, set_name), s in stats.items():
        oks = np.concatenate(s["oks"])
        n = int(sum(s["people"]))
        shift, det = np.concatenate(s["shift"]), np.concatenate(s["shift_det"])
        values = (
            row, ROWS[row][0], set_name, n,
            f"{(oks >= 0.9).mean():.0%}", f"{(oks >= 0.5).mean():.0%}",
            f"{np.concatenate(s['within1']).sum() / max(n, 1):.0%}", sum(s["lost"]),
            f"{np.median(det) if len(det) else 0:.2f}", f"{det.max(initial=0):.1f}",
            f"{shift.max(initial=0):.1f}", f"{max(s['dheat']):.4f}", f"{max(s['dtag']):.3f}",
            f"{sum(s['lost_c'])}-{sum(s['new_c'])}+/{sum(s['cand'])} m{sum(s['moved'])}",
            sum(s["ties"]),
            f"{sum(s['cross'])}/{sum(s['round'])} of {sum(s['pairs'])}",
        )  # fmt: skip
        print(" ".join(f"{v!s:<{w}}" for v, w in zip(values, widths, strict=True)))


def _print_mags(mags: dict) -> None:
    """One line per image set: fp32 magnitudes and the bf16 step at them."""
    print("\nfp32 magnitudes (max over the set's images); bf16 step = 2^(floor(log2 v) - 7)")
    for set_name, m in mags.items():
        fm, hm, tm = max(m["feat max"]), max(m["heat max"]), max(m["tag |v| at cand"])

        def step(v: float) -> float:
            return 2.0 ** (np.floor(np.log2(v)) - 7) if v > 0 else 0.0

        print(f"  {set_name:<10} backbone features max {fm:.2f} (rms {max(m['feat rms']):.3f}), "
              f"bf16 backbone features max rel err {max(m['feat bf16 rel err']):.4f}; heatmap max "
              f"{hm:.3f} (bf16 step {step(hm):.4f}); |tag| at candidates max {tm:.3f} (step "
              f"{step(tm):.4f}), tag output max {max(m['tag max']):.3f}; fp32 peaks "
              f"{sum(m['candidates'])} candidates, tied {sum(m['fp32 ties'])}, within 2^-8 of "
              f"a neighbour {sum(m['near ties'])}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(SHARED / "weights" / "w8-coco-mini.pt"))
    parser.add_argument("--frames", type=int, default=3, help="street.mp4 frames (0: none)")
    args = parser.parse_args()
    kw = {"input_size": 192, "params": DecodeParams(flip=False, detection_threshold=0.3)}
    pred = Predictor.from_weights(args.weights, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emulated bf16: the numerics, not the speed
        bf16 = Predictor.from_weights(args.weights, precision="bf16", **kw)
    items = {
        "coco-mini": [read_image(p) for p in list_images(SHARED / "coco-mini" / "images")],
        "examples": [read_image(p) for p in list_images(SHARED / "examples")],
    }
    if args.frames:
        from hrpose.viz.video import read_video

        frames = []
        for frame in read_video(SHARED / "video" / "street.mp4"):
            frames.append(frame)
            if len(frames) == args.frames:
                break
        items["street"] = frames
    print(f"w8-coco-mini, input 192, no flip, threshold 0.3, CPU {torch.get_num_threads()} "
          f"threads; images: " + ", ".join(f"{k} {len(v)}" for k, v in items.items()))  # fmt: skip
    analyse(items, pred, bf16)
    w8, w32 = heads_share(8, (192, 288)), heads_share(32, (512, 832))
    print(f"heads' share of the multiply-adds (fp32 in b and P): W8 at 192x288 {w8:.1%}, "
          f"W32 at 512x832 {w32:.1%}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
