"""HTTP serving of one model to many clients (``hrpose serve``, FastAPI + uvicorn; see docs)."""

from hrpose.serve.app import create_app
from hrpose.serve.batching import MicroBatcher
from hrpose.serve.limits import Limits, Overrides, RequestError

__all__ = ["Limits", "MicroBatcher", "Overrides", "RequestError", "create_app"]
