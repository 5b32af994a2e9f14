"""Data preparation: resumable verified downloads, COCO 2017 and ImageNet layouts."""
