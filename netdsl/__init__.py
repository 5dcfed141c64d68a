"""netdsl: a declarative compiler for convolutional network architectures.

    import netdsl
    net = netdsl.load("nets/alexnet.net")
    net.layer("conv1").shape      # (96, 55, 55)
    net.totals().params           # 62378344
"""
from .backend.cpu import blas_threads  # noqa: F401  (first: it sets OpenBLAS's environment before numpy loads)
from . import views  # noqa: F401  (gives Network its explain() and summary(): see compiler.provide_view)
from .backend.executor import Model
from .compiler import LayerInfo, Network, Totals, compile, compile_source, load, optimise
from .errors import NetError, Span
from .interchange import import_model
from .interchange.onnx_export import export_onnx
from .train.optim import SGD
from .views.explain import explain

__all__ = ["compile", "compile_source", "load", "Network", "LayerInfo", "Totals", "NetError", "Span",
           "Model", "SGD", "optimise", "export_onnx", "import_model",
           "explain"]
from .version import __version__  # noqa: E402
