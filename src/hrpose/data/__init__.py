"""Datasets, augmentation, target encoding and loaders for training."""
