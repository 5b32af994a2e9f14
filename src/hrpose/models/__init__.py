"""Networks (nn only): HRNet backbone, HRNet-C classifier, HigherHRNet, and weight loading."""

from hrpose.models.classifier import HRNetClassifier
from hrpose.models.higher_hrnet import HigherHRNet
from hrpose.models.hrnet import HRNet, branch_channels
from hrpose.models.summary import ModelSummary, summarize
from hrpose.models.weights import (
    LoadReport,
    WeightsError,
    describe_arch,
    extract_state_dict,
    load_weights,
    read_checkpoint,
)

__all__ = [
    "HRNet",
    "HRNetClassifier",
    "HigherHRNet",
    "LoadReport",
    "ModelSummary",
    "WeightsError",
    "branch_channels",
    "describe_arch",
    "extract_state_dict",
    "load_weights",
    "read_checkpoint",
    "summarize",
]
