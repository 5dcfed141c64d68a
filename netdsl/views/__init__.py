"""What shows a network to a person: the analysed model every view reads (model), tables in every
format (tables), the summary and its JSON, explain (layers, blocks, groups, branches, ranges),
the design arguments (designs), diagrams (render), the difference of two networks (diff), the IR
as text and the notebook display.

Views read the front end, the IR and plain arrays, never the backend. Importing this package
gives `Network` its `explain()` and `summary()` methods and its notebook display (see
compiler.provide_view): the front end does not import its views.
"""
from ..compiler import provide_view
from . import notebook
from .explain import explain
from .summary import summary

provide_view("explain", explain)
provide_view("summary", summary)
provide_view("draw", notebook.draw)
provide_view("html", notebook.html)
