"""The front door for Python programs: text or path in, an analysed `Network` out."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import networkx as nx

from .errors import Diagnostic, NetError, NetTypeError, NetValueError, Span, split_lines
from .files import read_bounded
from .expand import expand
from .ir import ReceptiveField, schedule
from .parser import parse
from .passes import ANALYSIS, run_pipeline
from .passes.check_limits import DEFAULT_LIMIT


@dataclass(frozen=True)
class LayerInfo:
    """Everything the lecture works out for one layer."""

    name: str
    op: str
    written: str
    shape: tuple[int, ...]
    weights: int
    biases: int
    macs: int
    activations: int
    rf: ReceptiveField
    block: tuple[tuple[str, str], ...]
    span: Span | None
    inputs: tuple[str, ...]

    @property
    def params(self) -> int:
        return self.weights + self.biases


@dataclass(frozen=True)
class Totals:
    params: int
    weights: int
    biases: int
    macs: int
    activations: int  # forward, per image, values
    training_activations: int  # kept for backward + their gradients, per image, values
    flops: int


class Network:
    """A compiled, analysed network. `graph` is the typed IR (networkx.DiGraph)."""

    def __init__(self, graph: nx.DiGraph):
        self.graph = graph
        from .ir import inputs
        self.layers: list[LayerInfo] = []
        for node in schedule(graph):
            d = graph.nodes[node]
            self.layers.append(LayerInfo(node, d["op"], d["written"], d["shape"], d["weights"], d["biases"],
                                         d["macs"], d["activations"], d["rf"], d["block"], d["span"],
                                         tuple(inputs(graph, node))))
        self._by_name = {l.name: l for l in self.layers}
        self._trunk: frozenset[str] | None = None

    # facts ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.graph.graph["name"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.graph["input_shape"]

    @property
    def source(self) -> str:
        return self.graph.graph["source"]

    @property
    def file(self) -> str:
        return self.graph.graph["file"]

    @property
    def outputs(self) -> tuple[tuple[str, str], ...]:
        """((output name, node), ...): the trunk's output first, then side outputs."""
        return self.graph.graph["outputs"]

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return self.graph.graph["warnings"]

    def layer(self, name: str) -> LayerInfo:
        try:
            return self._by_name[name]
        except KeyError:
            from .bind import did_you_mean
            raise NetError(f"no layer named '{name}' in {self.name}",
                           hint=did_you_mean(name, self._by_name) or "netdsl summary lists the layer names") from None

    def totals(self, with_side_outputs: bool = True) -> Totals:
        trunk = self.trunk_nodes() if not with_side_outputs else None  # once: it walks the whole graph
        layers = self.layers if with_side_outputs else [l for l in self.layers if l.name in trunk]
        w = sum(l.weights for l in layers)
        b = sum(l.biases for l in layers)
        macs = sum(l.macs for l in layers)
        acts = sum(l.activations for l in layers)
        return Totals(w + b, w, b, macs, acts, 2 * acts, 2 * macs)

    def trunk_nodes(self) -> frozenset[str]:
        """The nodes the main output depends on (side outputs excluded). Walked once and kept: the
        graph of a Network does not change, and a per-layer walk made summary quadratic."""
        if self._trunk is None:
            main = self.outputs[0][1]
            self._trunk = frozenset(nx.ancestors(self.graph, main) | {main})
        return self._trunk

    def explain(self, name: str):
        """The arithmetic behind a layer, block, group, branch, side output, range (`a..b`) or the
        `network`, in the lecture's words, as a report like summary()'s (views/explain.py)."""
        return _view("explain")(self, name)

    def summary(self, blocks: bool = False):
        """The summary table as a report (views/summary.py): it prints as text, shows as HTML in a
        notebook, `.to("md")` for other formats, `.as_dict()` for the `summary --json` object."""
        return _view("summary")(self, blocks)

    def draw(self, **options):
        """The graphviz diagram (views/notebook.py): inline SVG in a notebook, `.save(path)`."""
        return _view("draw")(self, **options)

    def _repr_html_(self) -> str:  # Jupyter shows a network as its summary table
        return _view("html")(self)

    def __repr__(self) -> str:
        t = self.totals()
        return f"<Network {self.name}: {len(self.layers)} layers, {t.params:,} params, {t.macs:,} MACs>"


# How a network is shown to a person lives in views/, which reads this module. So that imports run
# one way, this module never imports views/: views/__init__.py hands its functions in here
# (`provide_view`) when it is imported, and netdsl/__init__.py imports it, so `net.explain(...)`
# works wherever netdsl does.
_VIEWS: dict[str, Callable] = {}


def provide_view(name: str, function: Callable) -> None:
    """Register a view of a network under a method's name (called by netdsl/views/)."""
    _VIEWS[name] = function


def _view(name: str) -> Callable:
    try:
        return _VIEWS[name]
    except KeyError:  # only if netdsl.compiler was loaded without the netdsl package
        raise NetError(f"Network.{name}() needs netdsl.views; import netdsl first") from None


def compile_source(source: str, file: str = "<string>", *, memory_limit: int = DEFAULT_LIMIT,
                   debug: bool = False, print_after: Callable | None = None) -> Network:
    """Compile .net text. Raises NetError (with a span) for any mistake in it: one error whose
    message is the first mistake's and whose `diagnostics` are every independent one."""
    if not isinstance(source, str):
        raise NetTypeError(f"compile_source takes .net text (a str), not {_kind(source)}"
                           + ("; decode it first: data.decode('utf-8')" if isinstance(source, bytes) else ""))
    check_source_size(source, file)
    try:
        graph = expand(parse(source, file))
        graph.graph["memory_limit"] = memory_limit
        return Network(run_pipeline(graph, ANALYSIS, debug=debug, print_after=print_after))
    except NetError as err:  # keep the text: a pipe's cannot be read again to show the line
        raise err.keep_source(file, source) from None
    except RecursionError:
        raise NetError("the network nests too deeply to analyse",
                       Span(file, 1, 1, 1, 1)).keep_source(file, source) from None


def optimise(net: Network, mode: str = "inference", *, debug: bool = False,
             print_after: Callable | None = None) -> Network:
    """The network after the optimising passes: `inference` (dead side outputs, dropout, bn
    folding, fusion, memory plan) or `training` (fusion only: every value that backward
    reads is kept)."""
    from .passes import OPTIMISE_INFERENCE, OPTIMISE_TRAINING
    passes = {"inference": OPTIMISE_INFERENCE, "training": OPTIMISE_TRAINING}[mode]
    return Network(run_pipeline(net.graph, passes, debug=debug, print_after=print_after))


MAX_SOURCE_BYTES = 1 << 20  # ResNet-152 is 3 KB; a megabyte of .net is a wrong file, not a network


def check_source_size(source: str, file: str = "<string>") -> None:
    """Text from Python meets the bound files meet (MAX_SOURCE_BYTES of UTF-8), before the parser
    allocates anything for it. Only text that could pass on length alone is encoded to count."""
    size = len(source)
    if MAX_SOURCE_BYTES // 4 < size <= MAX_SOURCE_BYTES:
        size = len(source.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise NetValueError(f"{file}: .net text of more than {MAX_SOURCE_BYTES // 2**20} MiB ({len(source):,} "
                            f"characters): too large for a network, as a .net file would be",
                            hint="is it the right text? ResNet-152 is 3 KB")


def read_source(path: str | os.PathLike) -> str:
    """A .net file's text; unreadable, oversized or non-UTF-8 files are NetErrors naming the place.
    At most MAX_SOURCE_BYTES are read, so /dev/zero or a data file named by mistake is refused at once."""
    data = read_bounded(path, MAX_SOURCE_BYTES, "a .net file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        lines = split_lines(before + "x")  # the same line rule as the parser and the renderer
        line, col = len(lines), len(lines[-1])
        raise NetError(f"this is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                       Span(str(path), line, col, line, col + 1),
                       "netdsl reads .net files as UTF-8 text; is this the right file?") from None


def load(path: str | os.PathLike, **kwargs) -> Network:
    """Compile a .net file."""
    if not isinstance(path, (str, os.PathLike)):
        raise NetTypeError(f"load takes a path (a str or os.PathLike), not {_kind(path)}")
    return compile_source(read_source(path), str(path), **kwargs)


def compile(text_or_path: str | os.PathLike, **kwargs) -> Network:  # noqa: A001 - the natural name
    """Compile from a path (str/Path to an existing file, or ending in .net) or from .net text."""
    if not isinstance(text_or_path, (str, os.PathLike)):
        raise NetTypeError(f"compile takes .net text or a path (a str or os.PathLike), not {_kind(text_or_path)}"
                           + ("; decode it first: data.decode('utf-8')" if isinstance(text_or_path, bytes) else ""))
    if isinstance(text_or_path, str):
        check_source_size(text_or_path)  # first: a path is short, and os.path.isfile would copy the text
    if isinstance(text_or_path, os.PathLike) or (
            "\n" not in text_or_path and (text_or_path.endswith(".net") or os.path.isfile(text_or_path))):
        return load(text_or_path, **kwargs)
    return compile_source(text_or_path, **kwargs)


def _kind(value) -> str:
    return "None" if value is None else type(value).__name__
