"""`hrpose train classifier` learns on a small synthetic ImageNet-layout folder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hrpose.cli import main
from hrpose.data.coco import DatasetError
from hrpose.data.imagenet import ImageFolder, TrainTransform, ValTransform
from hrpose.engine.checkpoint import load_checkpoint


def _make_folder(root, per_class: int, seed: int) -> None:
    """Three classes told apart by colour: red, green and blue noisy squares."""
    rng = np.random.default_rng(seed)
    for c, wnid in enumerate(("n000red", "n001green", "n002blue")):
        d = root / wnid
        d.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (48, 64, 3)).astype(np.uint8)
            img[..., c] = rng.integers(150, 255, (48, 64))
            cv2.imwrite(str(d / f"{i}.JPEG"), img[:, :, ::-1])


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    _make_folder(root / "train", 12, 0)
    _make_folder(root / "val", 6, 1)
    (root / "labels.json").write_text('{"n000red": "red thing"}')
    return root


def test_transforms_and_errors(imagenet, tmp_path) -> None:
    ds = ImageFolder(imagenet / "train", TrainTransform(32))
    assert len(ds) == 36 and ds.classes[0] == "n000red"
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and y == 0
    assert ValTransform(32, 40)(np.zeros((50, 80, 3), np.uint8)).shape == (3, 32, 32)
    with pytest.raises(DatasetError, match="prepare imagenet"):
        ImageFolder(tmp_path / "absent")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        ImageFolder(tmp_path / "empty")


def test_dataloader_shuffle_reaches_both_tasks(imagenet, coco_mini) -> None:
    """dataloader.shuffle is a shared field: each task's training loader honours it."""
    from hrpose.cli.train import classifier_task, pose_task
    from hrpose.config import ClassifierTrainConfig, PoseTrainConfig
    from hrpose.config.load import load_config
    from hrpose.engine.distributed import DistInfo

    info, cpu = DistInfo(), torch.device("cpu")
    cls_args = [
        f"--dataloader.train_ds.root={imagenet}",
        f"--dataloader.val_ds.root={imagenet}",
        "--model.num_classes=3",
        "--model.width=8",
    ]
    pose_args = ["--model.width=8"] + [
        f"--dataloader.{split}.{k}={v}"
        for split in ("train_ds", "val_ds")
        for k, v in (
            ("root", coco_mini),
            ("split", "mini"),
            ("ann_file", "person_keypoints.json"),
            ("images_dir", "images"),
        )
    ]
    for shuffle in (True, False):
        flag = f"--dataloader.shuffle={shuffle}"
        cls_cfg = load_config(ClassifierTrainConfig, None, [*cls_args, flag])
        pose_cfg = load_config(PoseTrainConfig, None, [*pose_args, flag])
        for parts in (classifier_task(cls_cfg, cpu, info), pose_task(pose_cfg, cpu, info)):
            order = parts.train_loader.sampler.order()
            assert parts.train_loader.sampler.shuffle is shuffle
            assert (list(order) == sorted(order)) is not shuffle


@pytest.mark.slow
def test_classifier_learns(imagenet, tmp_path, capsys) -> None:
    rc = main(
        [
            "train",
            "classifier",
            f"--dataloader.train_ds.root={imagenet}",
            f"--dataloader.val_ds.root={imagenet}",
            "--dataloader.batch_size=6",
            "--dataloader.num_workers=0",
            "--model.width=8",
            "--model.num_classes=3",
            "--data.input_size=32",
            "--data.resize_size=36",
            "--trainer.max_epochs=4",  # 24 steps (BatchNorm running stats settle), one validation
            "--trainer.val_every=4",
            "--optimizer.name=adam",
            "--optimizer.lr=2e-3",
            "--scheduler.name=constant",
            f"--setup.results_dir={tmp_path}",
            "--setup.run_name=r",
            "--tracking.mlflow=False",
            "--trainer.progress=False",
        ]
    )
    assert rc == 0
    state = load_checkpoint(tmp_path / "classifier" / "r" / "checkpoints" / "best.pt")
    assert state["metrics"]["top1"] > 60  # chance is 33%
    assert state["extra"]["class_names"][0] == "red thing"
    rc = main(
        [
            "train",
            "classifier",
            f"--dataloader.train_ds.root={imagenet}",
            "--model.num_classes=5",
            f"--setup.results_dir={tmp_path}",
            "--tracking.mlflow=False",
        ]
    )
    assert rc == 1 and "--model.num_classes=3" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_and_classify_cli(imagenet, tmp_path, capsys) -> None:
    import torch

    from hrpose.models import HRNetClassifier

    torch.manual_seed(0)
    weights = tmp_path / "cls.pth"
    torch.save(HRNetClassifier(8, 3).state_dict(), weights)
    assert (
        main(
            [
                "eval",
                "classifier",
                "--weights",
                str(weights),
                f"--dataloader.val_ds.root={imagenet}",
                "--input-size",
                "32",
                "--resize",
                "36",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "top-1" in capsys.readouterr().out
    old = ["eval", "classifier", "--weights", str(weights), f"--data.root={imagenet}"]
    assert main(old) == 2  # the old flag names the new form
    assert "--data.root was renamed: use --dataloader.val_ds.root=" in capsys.readouterr().err
    rc = main(
        [
            "classify",
            str(imagenet / "val" / "n000red"),
            "--weights",
            str(weights),
            "--labels",
            str(imagenet / "labels.json"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and out.count("%") >= 6 and len(list((tmp_path / "o").iterdir())) == 6


def test_eval_classifier_log_has_no_redraws(imagenet, tmp_path, capfd) -> None:
    """`hrpose eval classifier` with stderr not a terminal: one plain progress line."""
    from hrpose.models import HRNetClassifier

    torch.manual_seed(0)
    weights = tmp_path / "cls.pth"
    torch.save(HRNetClassifier(8, 3).state_dict(), weights)
    argv = ["eval", "classifier", "--weights", str(weights), f"--dataloader.val_ds.root={imagenet}",
            "--input-size", "32", "--resize", "36", "--workers", "0",
            "--batch-size", "2"]  # fmt: skip
    assert main(argv) == 0
    said = capfd.readouterr()
    assert "\r" not in said.err and "top-1" in said.out
    (line,) = said.err.splitlines()
    assert line.startswith("evaluating: 9/9 batch in ")


def test_classify_reads_images_as_imagenet_training(tmp_path, capsys) -> None:
    """`hrpose classify` decodes with the ImageNet loader (Pillow, EXIF orientation ignored):
    its drawn picture keeps the stored layout and its top-k equal the val preset's on the
    ImageFolder sample of the same file."""
    from PIL import Image

    from hrpose.models import HRNetClassifier

    torch.manual_seed(0)
    weights = tmp_path / "cls.pth"
    model = HRNetClassifier(8, 3).eval()
    torch.save(model.state_dict(), weights)
    folder = tmp_path / "val" / "n000red"
    folder.mkdir(parents=True)
    stored = np.random.default_rng(0).integers(0, 255, (40, 80, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(folder / "rot.jpg", exif=exif)
    args = ["classify", str(folder), "--weights", str(weights), "--output", str(tmp_path / "o")]
    assert main(args) == 0
    drawn = cv2.imread(str(tmp_path / "o" / "rot_top5.jpg"))
    assert drawn.shape == (40, 80, 3)
    x, _ = ImageFolder(tmp_path / "val", ValTransform())[0]
    with torch.no_grad():
        prob = torch.softmax(model(x[None]), 1)[0]
    order = prob.argsort(descending=True).tolist()
    expected = "; ".join(f"class {i} {prob[i]:.1%}" for i in order)
    assert capsys.readouterr().out.strip() == f"rot.jpg: {expected}"
