"""Evaluation: COCO keypoint AP (pycocotools / faster-coco-eval), protocol records, top-k."""
