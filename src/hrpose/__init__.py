"""hrpose: multi-person pose estimation with HigherHRNet in PyTorch."""

__version__ = "0.1.0"
