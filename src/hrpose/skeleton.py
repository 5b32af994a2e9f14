"""Keypoint sets: names, flip permutation, limbs, OKS sigmas, colours and grouping order.

A :class:`KeypointSpec` is validated once when built, so every layer can trust it. Built in:
COCO-17 (:data:`COCO17`) and CrowdPose-14 (:data:`CROWDPOSE14`);
:meth:`KeypointSpec.from_coco_category` recognises them in a COCO file's ``categories[0]`` or
reads another set from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_COCO_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
_COCO_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
# COCO's 19-edge skeleton, converted from the 1-based indices of the annotation file.
_COCO_SKELETON = tuple(
    (a - 1, b - 1)
    for a, b in (
        (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
        (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
    )
)  # fmt: skip
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
# The official HigherHRNet groups joints in this order: head, shoulders, hips, then limbs.
_COCO_GROUPING_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)

_CROWDPOSE_NAMES = (
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "head",
    "neck",
)
# The official FLIP_CONFIG['CROWDPOSE']: left/right swap, head and neck stay.
_CROWDPOSE_FLIP = (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13)
# head-neck, neck to both shoulders, arms, torso sides, hips, legs (0-based). CrowdPose's own
# annotation files carry the COCO-17 skeleton instead, which does not fit 14 joints.
_CROWDPOSE_SKELETON = (
    (12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5),
    (0, 6), (1, 7), (6, 7), (6, 8), (8, 10), (7, 9), (9, 11),
)  # fmt: skip
# crowdposetools' OKS sigmas (its cocoeval.computeOks): COCO's body sigmas, 0.079 for head/neck.
_CROWDPOSE_SIGMAS = (
    0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
    0.087, 0.087, 0.089, 0.089, 0.079, 0.079,
)  # fmt: skip
# What the official decoder does for CrowdPose: it walks the first 14 entries of its COCO-17
# joint order (a permutation of 0..13 by chance), i.e. shoulders, elbows, wrists, left hip, then
# right ankle, head, right hip, knees, left ankle, neck. Kept for parity with the official AP.
_CROWDPOSE_GROUPING_ORDER = _COCO_GROUPING_ORDER[:14]


class KeypointSpecError(ValueError):
    """A keypoint description is inconsistent (sizes, flip map, limb indices)."""


def _default_colors(k: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct RGB colours: left side warm, right side cool, centre white-ish."""
    palette = []
    for i in range(k):
        hue = (i * 37) % 180
        palette.append((int(128 + 127 * ((hue % 60) / 60)), int(255 - 2 * hue % 200), 64 + hue))
    return tuple(palette)


@dataclass(frozen=True)
class KeypointSpec:
    """A validated keypoint set.

    Attributes:
        names: K keypoint names.
        flip_index: K indices; ``flip_index[k]`` is the joint that ``k`` becomes under a
            horizontal flip. Must be an involution.
        skeleton: limbs as 0-based (a, b) pairs.
        sigmas: K OKS sigmas (COCO units).
        grouping_order: the order in which joints are matched into people when decoding.
        colors: K RGB colours for drawing.
    """

    names: tuple[str, ...]
    flip_index: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    grouping_order: tuple[int, ...] = ()
    colors: tuple[tuple[int, int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        k = len(self.names)
        if k == 0:
            raise KeypointSpecError("a keypoint spec needs at least one keypoint name")
        if len(set(self.names)) != k:
            raise KeypointSpecError(f"keypoint names must be unique, got {list(self.names)}")
        if not self.grouping_order:
            object.__setattr__(self, "grouping_order", tuple(range(k)))
        if not self.colors:
            object.__setattr__(self, "colors", _default_colors(k))
        for attr in ("flip_index", "sigmas", "grouping_order", "colors"):
            n = len(getattr(self, attr))
            if n != k:
                raise KeypointSpecError(f"{attr} has {n} entries but there are {k} keypoints")
        flip = self.flip_index
        if sorted(flip) != list(range(k)):
            raise KeypointSpecError(f"flip_index must be a permutation of 0..{k - 1}, got {flip}")
        bad = [i for i in range(k) if flip[flip[i]] != i]
        if bad:
            raise KeypointSpecError(
                f"flip_index must be an involution (flipping twice gives the identity); "
                f"it fails at joints {[self.names[i] for i in bad]}"
            )
        if sorted(self.grouping_order) != list(range(k)):
            raise KeypointSpecError("grouping_order must be a permutation of 0..K-1")
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise KeypointSpecError(f"limb ({a}, {b}) refers to a joint outside 0..{k - 1}")
        if any(s <= 0 for s in self.sigmas):
            raise KeypointSpecError("OKS sigmas must be positive")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @classmethod
    def from_coco_category(
        cls, category: Mapping, sigmas: Sequence[float] | None = None
    ) -> KeypointSpec:
        """Build a spec from a COCO ``categories[i]`` entry (``keypoints`` + 1-based ``skeleton``).

        The COCO-17 or CrowdPose-14 names give :data:`COCO17` / :data:`CROWDPOSE14` (their
        sigmas, grouping order and skeleton). Otherwise the flip map comes from ``left_``/``right_``
        name prefixes. A file skeleton that names joints outside 1..K is reported and replaced
        (built-in set) or dropped (other sets) instead of failing later or drawing garbage.
        """
        names = tuple(category.get("keypoints") or ())
        if not names:
            raise KeypointSpecError(
                f"category {category.get('name', '?')!r} has no 'keypoints' list; "
                "is this a COCO keypoints annotation file?"
            )
        raw = [tuple(int(v) for v in limb) for limb in category.get("skeleton") or ()]
        k = len(names)
        bad = [limb for limb in raw if len(limb) != 2 or not all(1 <= v <= k for v in limb)]
        builtin = next((s for s in BUILTIN_SPECS.values() if s.names == names), None)
        if builtin is not None and sigmas is None:
            if bad:
                _warn_once(
                    f"the annotation file's skeleton refers to joints outside 1..{k} (e.g. "
                    f"{list(bad[0])}; it looks like another keypoint set's skeleton): using the "
                    f"built-in {_builtin_name(builtin)} skeleton instead"
                )
            return builtin
        index = {n: i for i, n in enumerate(names)}
        flip = []
        for n in names:
            for a, b in (("left_", "right_"), ("right_", "left_"), ("l_", "r_"), ("r_", "l_")):
                if n.startswith(a) and b + n[len(a) :] in index:
                    flip.append(index[b + n[len(a) :]])
                    break
            else:
                flip.append(index[n])
        if bad:
            _warn_once(
                f"the annotation file's skeleton refers to joints outside 1..{k} (e.g. "
                f"{list(bad[0])}): drawing no limbs; fix categories[0].skeleton (1-based indices)"
            )
            raw = []
        skeleton = tuple((a - 1, b - 1) for a, b in raw)
        if sigmas is None:
            sigmas = [0.05] * k  # unknown set: a neutral OKS sigma
        return cls(names, tuple(flip), skeleton, tuple(float(s) for s in sigmas))


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a problem of an annotation file once per process (it is read at every evaluation)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def _builtin_name(spec: KeypointSpec) -> str:
    return next(name for name, s in BUILTIN_SPECS.items() if s is spec)


COCO17 = KeypointSpec(
    names=_COCO_NAMES,
    flip_index=_COCO_FLIP,
    skeleton=_COCO_SKELETON,
    sigmas=_COCO_SIGMAS,
    grouping_order=_COCO_GROUPING_ORDER,
    colors=(
        (255, 255, 255),
        (255, 160, 60), (60, 160, 255), (255, 120, 40), (40, 120, 255),
        (255, 80, 0), (0, 80, 255), (255, 170, 0), (0, 170, 255), (255, 220, 0), (0, 220, 255),
        (230, 40, 120), (40, 230, 120), (230, 80, 160), (80, 230, 160),
        (200, 0, 200), (0, 200, 200),
    ),
)  # fmt: skip

CROWDPOSE14 = KeypointSpec(
    names=_CROWDPOSE_NAMES,
    flip_index=_CROWDPOSE_FLIP,
    skeleton=_CROWDPOSE_SKELETON,
    sigmas=_CROWDPOSE_SIGMAS,
    grouping_order=_CROWDPOSE_GROUPING_ORDER,
    colors=(
        (255, 80, 0), (0, 80, 255), (255, 170, 0), (0, 170, 255), (255, 220, 0), (0, 220, 255),
        (230, 40, 120), (40, 230, 120), (230, 80, 160), (80, 230, 160), (200, 0, 200),
        (0, 200, 200), (255, 255, 255), (200, 200, 200),
    ),
)  # fmt: skip

# The built-in sets by name (``KeypointSpec.from_coco_category`` recognises them by their names).
BUILTIN_SPECS: dict[str, KeypointSpec] = {"coco17": COCO17, "crowdpose14": CROWDPOSE14}


def canonical_spec(spec: KeypointSpec) -> KeypointSpec:
    """The built-in spec equal to ``spec`` in everything but colours (those are not stored in
    checkpoints or ONNX metadata), else ``spec`` itself."""
    fields = ("names", "flip_index", "skeleton", "sigmas", "grouping_order")
    for builtin in BUILTIN_SPECS.values():
        if all(getattr(builtin, f) == getattr(spec, f) for f in fields):
            return builtin
    return spec


def builtin_spec_for(num_joints: int) -> KeypointSpec | None:
    """The built-in set with this many joints (17: COCO, 14: CrowdPose), for weights that do not
    store their keypoint set (the official checkpoints); None when there is none."""
    return next((s for s in BUILTIN_SPECS.values() if s.num_joints == num_joints), None)


def spec_to_dict(spec: KeypointSpec) -> dict:
    """Plain-data form of a spec (stored in model records, checkpoints and ONNX metadata)."""
    return {
        "names": list(spec.names),
        "flip_index": list(spec.flip_index),
        "skeleton": [list(p) for p in spec.skeleton],
        "sigmas": list(spec.sigmas),
        "grouping_order": list(spec.grouping_order),
    }


def spec_from_dict(raw: dict) -> KeypointSpec:
    """The spec :func:`spec_to_dict` wrote; a built-in set gets its drawing colours back."""
    spec = KeypointSpec(
        names=tuple(raw["names"]),
        flip_index=tuple(raw["flip_index"]),
        skeleton=tuple(tuple(p) for p in raw["skeleton"]),
        sigmas=tuple(raw["sigmas"]),
        grouping_order=tuple(raw.get("grouping_order", ())),
    )
    return canonical_spec(spec)
