#!/usr/bin/env bash
# One lent-GPU check (issue 14), under 8 minutes on one GPU:
#  (a) pose on coco-mini on CUDA, 3 epochs with validation, checkpoint and resume: bf16 +
#      channels_last, then fp16; (b) the same under torchrun --nproc_per_node=1 (NCCL);
#  (c) bench_train.py: strict fp32 (TF32 off), default fp32, fp16, bf16 (channels_last) at batch
#      12 and at a larger batch; (d) the loader's samples/s with N workers beside the step rate.
# Usage: bash benchmarks/gpu_check.sh [DATA_ROOT=../shared/data/coco-mini]
set -euo pipefail
PY=${PYTHON:-python}
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing to check."
  exit 0
fi
DATA=${1:-../shared/data/coco-mini}
OUT=${OUT:-$(mktemp -d)}
export PYTHONPATH=${PYTHONPATH:-src}
common=(--config configs/pose/coco-mini.yaml --trainer.accelerator=cuda
  "--dataloader.train_ds.root=$DATA" "--dataloader.val_ds.root=$DATA"
  --dataloader.num_workers=4 --trainer.val_every=1 --trainer.progress=False
  --tracking.mlflow=False "--setup.results_dir=$OUT")
pose() {  # name, extra args...: 2 epochs, then resume to 3
  local name=$1; shift
  $PY -m hrpose train pose "${common[@]}" "--setup.run_name=$name" --trainer.max_epochs=2 "$@"
  $PY -m hrpose train pose "${common[@]}" "--setup.run_name=$name" --trainer.max_epochs=3 \
    "--setup.ckpt_path=$OUT/coco-mini/$name/checkpoints/last.pt" "$@"
}
echo "== (a) bf16 + channels_last, fp16"
pose bf16cl --trainer.amp=bf16 --trainer.channels_last=True
pose fp16 --trainer.amp=fp16
echo "== (b) torchrun --nproc_per_node=1 (NCCL)"
$PY -m torch.distributed.run --standalone --nproc_per_node=1 -m hrpose train pose "${common[@]}" \
  --setup.run_name=ddp --trainer.max_epochs=3 --trainer.use_DDP=True --trainer.amp=bf16
echo "== (c) bench_train.py, W32 at 512"
for batch in 12 32; do
  $PY benchmarks/bench_train.py --batch $batch --iters 10 --no-tf32 --variants fp32 || true
  $PY benchmarks/bench_train.py --batch $batch --iters 10 --variants fp32,cl+fp16,cl+bf16 || true
done
echo "== (d) loader samples/s (4 workers) vs the training step rate above"
$PY - "$DATA" <<'PY'
import sys, time
from hrpose.data.coco import CocoKeypoints, coco_paths
from hrpose.data.loaders import build_loader
from hrpose.data.pipeline import PoseTrainTransform
ann, images = coco_paths(sys.argv[1], "mini", "person_keypoints.json", "images")
ds = CocoKeypoints(ann, images)
ds.transform = PoseTrainTransform(ds.spec.flip_index, 512, (128, 256))
for workers in (0, 4, 8):
    loader = build_loader(ds, 4, num_workers=workers)
    t0, n = time.perf_counter(), 0
    for epoch in range(8):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            n += batch[0].shape[0]
    print(f"loader {workers} workers: {n / (time.perf_counter() - t0):.1f} samples/s at 512")
PY
echo "gpu_check: done ($OUT)"
