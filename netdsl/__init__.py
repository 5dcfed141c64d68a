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
           "explain", "draw", "page"]


def draw(net: Network, style: str = "diagram", **options):
    """A picture of the network: style="diagram" returns render's graphviz.Digraph (options are
    DrawOptions' fields); style="volumes" returns a volumes.Picture (options: collapse, focus),
    whose .svg() is the SVG text and which a notebook shows inline."""
    from .views import render, volumes
    if style == "volumes":
        return volumes.volumes(net, **options)
    if style == "diagram":
        return render.diagram(net, render.DrawOptions(**options))
    raise NetError(f"style={style!r}: expected 'diagram' or 'volumes'")


def page(net: Network) -> str:
    """The network's self-contained interactive HTML page (views/page.py), as text."""
    from .views.page import page as html_page
    return html_page(net)
from .version import __version__  # noqa: E402
