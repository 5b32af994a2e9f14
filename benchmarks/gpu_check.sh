#!/usr/bin/env bash
# One lent-GPU check (issue 14), under 8 minutes on one GPU:
#  (a) pose on coco-mini on CUDA, 3 epochs with validation, checkpoint and resume: bf16 +
#      channels_last, then fp16; (b) the same under torchrun --nproc_per_node=1 (NCCL);
#  (c) bench_train.py: strict fp32 (TF32 off), default fp32, fp16, bf16 (channels_last) at batch
#      12 and at each one's largest batch that fits (--find-max-batch); (d) the loader's
#      samples/s with N workers beside the step rate.
# Time, estimated (not yet run) from the H200 figures in benchmarks/README.md (W32 at 512: ~80
# img/s fp32 at batch 12, 11.5 GiB; strict fp32 assumed ~2x slower): (a)+(b) 4+1 short
# coco-mini runs ~2 min; (c) batch 12 ~0.5 min; (c) largest batch: doubling from 12, bisecting
# to 1/8, 2 steps a try, then 2+5 timed steps, ~1 min a variant, cut at 210 s by `timeout`;
# (d) ~0.5 min. Each section prints the seconds elapsed so far.
# Usage: bash benchmarks/gpu_check.sh [DATA_ROOT=../shared/data/coco-mini]
set -euo pipefail
VENV_PY=$(dirname "$0")/../.venv/bin/python
[ -x "$VENV_PY" ] && DEFAULT_PY=$VENV_PY || DEFAULT_PY=python3
PY=${PYTHON:-$DEFAULT_PY}
if ! $PY -c "import torch" 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch; set PYTHON to a Python that has it." >&2
  exit 2
fi
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
echo "== (a) bf16 + channels_last, fp16 [${SECONDS} s]"
pose bf16cl --trainer.amp=bf16 --trainer.channels_last=True
pose fp16 --trainer.amp=fp16
echo "== (b) torchrun --nproc_per_node=1 (NCCL) [${SECONDS} s]"
$PY -m torch.distributed.run --standalone --nproc_per_node=1 -m hrpose train pose "${common[@]}" \
  --setup.run_name=ddp --trainer.max_epochs=3 --trainer.use_DDP=True --trainer.amp=bf16
echo "== (c) bench_train.py, W32 at 512, batch 12 (strict = TF32 off, cl = channels_last) [${SECONDS} s]"
$PY benchmarks/bench_train.py --batch 12 --warmup 3 --iters 10 \
  --variants strict,strict+cl,cl,cl+fp16,cl+bf16 || true
echo "== (c) bench_train.py, each variant's largest batch that fits [${SECONDS} s]"
timeout 210 $PY benchmarks/bench_train.py --find-max-batch --batch 12 --max-batch-limit 512 \
  --warmup 2 --iters 5 --variants strict+cl,cl,cl+fp16,cl+bf16 || true
echo "== (d) loader samples/s (4 workers) vs the training step rate above [${SECONDS} s]"
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
echo "gpu_check: done in ${SECONDS} s ($OUT)"
