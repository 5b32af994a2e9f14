import pytest

from hrpose.skeleton import COCO17, KeypointSpec, KeypointSpecError


def test_coco17_is_consistent():
    assert COCO17.num_joints == 17
    assert [COCO17.flip_index[i] for i in COCO17.flip_index] == list(range(17))
    assert COCO17.names[COCO17.flip_index[COCO17.names.index("left_wrist")]] == "right_wrist"
    assert len(COCO17.skeleton) == 19


def test_bad_flip_map_is_named():
    with pytest.raises(KeypointSpecError, match="involution"):
        KeypointSpec(("a", "b", "c"), (1, 2, 0), (), (0.1, 0.1, 0.1))


def test_size_mismatch():
    with pytest.raises(KeypointSpecError, match="sigmas has 1 entries"):
        KeypointSpec(("a", "b"), (0, 1), (), (0.1,))


def test_from_coco_category(coco_mini):
    import json

    cat = json.loads((coco_mini / "person_keypoints.json").read_text())["categories"][0]
    assert KeypointSpec.from_coco_category(cat) is COCO17
    custom = dict(keypoints=["head", "left_hand", "right_hand"], skeleton=[[1, 2], [1, 3]])
    spec = KeypointSpec.from_coco_category(custom)
    assert spec.flip_index == (0, 2, 1)
    assert spec.skeleton == ((0, 1), (0, 2))


def test_cli_unknown_command(capsys):
    from hrpose.cli import main

    assert main(["trian"]) == 2
    assert "Did you mean: train" in capsys.readouterr().err
