"""jubako: build, store, ship and serve ML models as bentos."""

__version__ = "0.1.0"

from . import models  # noqa: E402
from .io import Tensor, TorchTensor  # noqa: E402
from .service import Api, Service, api, service  # noqa: E402
from .tags import Tag  # noqa: E402

__all__ = ["Api", "Service", "Tag", "Tensor", "TorchTensor", "__version__", "api", "models", "service"]
