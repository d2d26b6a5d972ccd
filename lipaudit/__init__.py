"""lipaudit: spectral-norm bounds for convolution layers and Lipschitz certificates for CNNs.

Python API (see docs/api.md)::

    import lipaudit
    report = lipaudit.audit("model.onnx")            # or an onnx.ModelProto, or a torch.nn.Module
    report.network.certified.value, report.network.certified.kind
    report.to_dict()                                  # the JSON report lipaudit check --json writes

Every error is a :class:`LipauditError` subclass; the CLI maps them to exit code 2.
"""

__version__ = "0.1.0"

from lipaudit.api import audit, certify  # noqa: E402
from lipaudit.budget import BudgetError  # noqa: E402
from lipaudit.errors import (  # noqa: E402
    BaselineError,
    BaselineMismatch,
    DataError,
    InputShapeError,
    LipauditError,
    ModelLoadError,
    UnsupportedOpError,
    UsageError,
)
from lipaudit.safe_io import OutputError  # noqa: E402
from lipaudit.report.view import Finding, Layer, Network, NetworkValue, Report, Robustness, Value  # noqa: E402

__all__ = [
    "__version__", "audit", "certify", "Report", "Network", "NetworkValue", "Layer", "Value", "Finding", "Robustness",
    "LipauditError", "ModelLoadError", "InputShapeError", "UnsupportedOpError", "UsageError", "BaselineError",
    "DataError", "BaselineMismatch", "BudgetError", "OutputError",
]
