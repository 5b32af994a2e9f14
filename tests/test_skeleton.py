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


def test_crowdpose14_matches_the_official_sets():
    from hrpose.skeleton import CROWDPOSE14

    assert CROWDPOSE14.num_joints == 14 and CROWDPOSE14.names[12:] == ("head", "neck")
    # official FLIP_CONFIG['CROWDPOSE'] and crowdposetools' sigmas
    assert CROWDPOSE14.flip_index == (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13)
    assert CROWDPOSE14.sigmas[:12] == COCO17.sigmas[5:] and CROWDPOSE14.sigmas[12:] == (0.079,) * 2
    # the official decoder walks the first 14 entries of its COCO joint order
    assert CROWDPOSE14.grouping_order == COCO17.grouping_order[:14]
    # the limbs connect all 14 joints into one body
    reached, frontier = {12}, [12]
    while frontier:
        j = frontier.pop()
        for a, b in CROWDPOSE14.skeleton:
            for x, y in ((a, b), (b, a)):
                if x == j and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    assert reached == set(range(14))


def test_wrong_file_skeleton_is_reported_and_replaced(shared_data, caplog, monkeypatch):
    import json

    from hrpose import skeleton
    from hrpose.skeleton import CROWDPOSE14

    monkeypatch.setattr(skeleton, "_WARNED", set())  # other tests may have read the file already

    path = shared_data / "crowdpose-mini" / "person_keypoints.json"
    cat = json.loads(path.read_text())["categories"][0]
    assert max(max(limb) for limb in cat["skeleton"]) == 17  # the COCO skeleton, 14 joints
    with caplog.at_level("WARNING", logger="hrpose.skeleton"):
        assert KeypointSpec.from_coco_category(cat) is CROWDPOSE14
    assert "outside 1..14" in caplog.text and "built-in crowdpose14 skeleton" in caplog.text
    # an unknown set with an impossible skeleton keeps its joints and draws no limbs
    caplog.clear()
    custom = dict(keypoints=["head", "left_hand", "right_hand"], skeleton=[[1, 2], [3, 9]])
    with caplog.at_level("WARNING", logger="hrpose.skeleton"):
        spec = KeypointSpec.from_coco_category(custom)
    assert spec.num_joints == 3 and spec.skeleton == () and "[3, 9]" in caplog.text
