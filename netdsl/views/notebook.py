"""How a network shows itself in Jupyter: `net` alone is its summary table (HTML), `net.draw()` its
graphviz diagram as inline SVG, and reports (summary, explain) print as text and show as HTML."""
from __future__ import annotations

import graphviz

from ..compiler import Network
from .render import DrawOptions, diagram, write
from .summary import summary


class Diagram:
    """A drawn network: inline SVG in a notebook, `.save("x.svg"|".png"|".pdf"|".dot")` elsewhere,
    `.dot` for the graphviz.Digraph itself."""

    def __init__(self, dot: graphviz.Digraph):
        self.dot = dot

    def _repr_svg_(self) -> str:
        return self.dot.pipe(format="svg").decode("utf-8")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"image/svg+xml": self._repr_svg_(), "text/plain": repr(self)}

    def save(self, path) -> None:
        write(self.dot, path)

    def __repr__(self) -> str:
        return f"<Diagram {self.dot.name}: {len(self.dot.body)} graphviz statements>"


def draw(net: Network, **options) -> Diagram:
    """`net.draw(shapes=True, depth=0, focus="inception3a", ...)`: the options of views.render.DrawOptions."""
    return Diagram(diagram(net, DrawOptions(**options)))


def html(net: Network) -> str:
    return summary(net)._repr_html_()
