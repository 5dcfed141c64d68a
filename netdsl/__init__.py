"""netdsl: a declarative compiler for convolutional network architectures.

    import netdsl
    net = netdsl.load("nets/alexnet.net")
    net.layer("conv1").shape      # (96, 55, 55)
    net.totals().params           # 62378344
"""
from .backend.cpu import blas_threads  # noqa: F401  (first: it sets OpenBLAS's environment before numpy loads)
from . import views  # noqa: F401  (gives Network its explain() and summary(): see compiler.provide_view)
from . import render  # noqa: F401  (netdsl.render.diagram(net) works after a plain `import netdsl`)
from .backend.executor import Model
from .compiler import LayerInfo, Network, Totals, compile, compile_source, load, optimise
from .errors import NetError, Span
from .interchange import import_model
from .interchange.onnx_export import export_onnx
from .train.optim import SGD
from .views.explain import explain

__all__ = ["compile", "compile_source", "load", "Network", "LayerInfo", "Totals", "NetError", "Span",
           "Model", "SGD", "optimise", "export_onnx", "import_model",
           "explain", "draw", "page", "train"]


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


def _train(network, data: str = "digits", *, device: str = "cpu", progress: bool = True, **settings):
    """Train `network` (a Network or a .net path) on `data` (as --data says it) with the settings
    of netdsl.train.loop.TrainConfig (epochs, batch, lr, save, resume, log, ...). Shows the same
    progress as `netdsl train` (live in a notebook); returns a History: `.rows` (one per epoch),
    `.steps`, `.plot()`, and `.model`, the trained Model."""
    from .backend.device import get_device
    from .train import data as datasets, fit
    from .train.loop import TrainConfig, train as run_training
    from .train.progress import Progress, Silent
    from .views.curves import History, run_from_rows
    from . import runlog
    net = network if isinstance(network, Network) else load(network)
    classes = fit.check_outputs(net)
    cfg = TrainConfig(**settings)
    ds = datasets.prepare(datasets.load(data), net.input_shape, classes, cfg.seed)
    model = Model(net, device=get_device(device), seed=cfg.seed)
    result = run_training(model, ds, cfg, progress=Progress() if progress else Silent(),
                          log=None if progress else (lambda s: None))
    run = runlog.read(cfg.log) if cfg.log else run_from_rows(net.name, ds.name, result.settings, result.history,
                                                             result.step_rows)
    history = History(run, result)
    history.model = model
    return history
from .version import __version__  # noqa: E402


class _TrainPackage(type(views)):
    """netdsl.train is both the package (netdsl.train.loop, .data, ...) and the call
    netdsl.train(network, ...): a module whose class makes it callable."""

    def __call__(self, *args, **kwargs):
        """netdsl.train(network, data="digits", epochs=..., lr=..., log=...) -> History: see _train."""
        return _train(*args, **kwargs)


from . import train  # noqa: E402  (the package, made callable below)
train.__class__ = _TrainPackage
