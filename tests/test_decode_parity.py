"""The decoder reproduces the official HigherHRNet decoder's people (stored golden outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrpose.decode import Transform, decode, input_size_for
from synthetic import make_outputs, random_people

GOLDEN = np.load(Path(__file__).with_name("data") / "decode_golden.npz")
CASES = json.loads(str(GOLDEN["cases"]))


@pytest.mark.parametrize("i", range(len(CASES)), ids=lambda i: f"{CASES[i]['n']}people")
def test_matches_official(i: int) -> None:
    case = CASES[i]
    iw, ih = case["image"]
    scales = case["scales"]
    outs, flips = [], []
    (bw, bh), _, _ = input_size_for((iw, ih), 512, 1.0, min(scales))
    for s in scales:
        (sw, sh), _, _ = input_size_for((iw, ih), 512, s, min(scales))
        xy, _ = random_people(case["n"], (iw, ih), seed=case["seed"])
        xy = np.clip(xy * np.array([sw / bw, sh / bh]), 1, [sw - 2, sh - 2])
        o, f = make_outputs(
            xy, np.arange(case["n"]) * case["tag_step"], (sw, sh), seed=case["seed"]
        )
        outs.append(o)
        flips.append(f)
    people = decode(
        outs,
        [Transform.for_image((iw, ih), 512, s, min(scales)) for s in scales],
        flip_outputs=flips if case["flip"] else None,
        scales=tuple(scales),
        refine=case["refine"],
    )
    kp, sc, tags = (GOLDEN[f"case{i}_{n}"] for n in ("keypoints", "scores", "tags"))
    assert len(people) == len(kp)
    if len(kp):
        assert np.abs(people.keypoints - kp).max() < 1e-3
        assert np.abs(people.scores - sc).max() < 1e-6
        assert np.array_equal(people.tags, tags)
