"""`netdsl.render`, the diagrams' public path since the README first showed it
(`netdsl.render.diagram(net)`): a thin alias of netdsl.views.render, where the code lives."""
from .views.render import FORMATS, DrawOptions, diagram, dot_program, write

__all__ = ["DrawOptions", "FORMATS", "diagram", "dot_program", "write"]
