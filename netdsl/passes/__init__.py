"""The pass pipeline: plain functions graph -> graph, each a new graph, one concern per file."""
from __future__ import annotations

from typing import Callable, Iterable

import networkx as nx

from .check_limits import check_limits
from .count import count
from .eliminate_dead import eliminate_dead
from .fold_bn import fold_bn
from .fuse import fuse_activation, fuse_elementwise
from .infer_shapes import infer_shapes
from .lower_shortcuts import lower_shortcuts
from .memory import activation_memory
from .plan_memory import plan_memory
from .receptive_field import receptive_field
from .remove_dropout import remove_dropout
from .verify import verify

Pass = Callable[[nx.DiGraph], nx.DiGraph]

# Order matters: shortcuts need shapes; counts need the lowered graph; limits need counts.
ANALYSIS: tuple[Pass, ...] = (infer_shapes, lower_shortcuts, count, activation_memory, receptive_field, check_limits)

# After analysis. Inference may drop what only training needs; training keeps every value the
# backward pass reads (fusion is exact there too: see passes/fuse.py). count and
# activation_memory run again because folding and fusion change parameters and stored values.
OPTIMISE_INFERENCE: tuple[Pass, ...] = (eliminate_dead, remove_dropout, fold_bn, fuse_activation, fuse_elementwise,
                                        count, activation_memory, plan_memory)
OPTIMISE_TRAINING: tuple[Pass, ...] = (fuse_activation, fuse_elementwise, count, activation_memory)


def run_pipeline(graph: nx.DiGraph, passes: Iterable[Pass] = ANALYSIS, *, debug: bool = False,
                 print_after: Callable[[str, nx.DiGraph], None] | None = None) -> nx.DiGraph:
    """Run passes in order. `debug` verifies the IR after each one; `print_after` sees each result
    (`--print-after-all`)."""
    for p in passes:
        graph = p(graph)
        if debug:
            verify(graph, after=p.__name__)
        if print_after is not None:
            print_after(p.__name__, graph)
    return graph
