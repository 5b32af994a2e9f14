"""Data preparation: resumable verified downloads, COCO 2017, ImageNet and CrowdPose layouts."""
