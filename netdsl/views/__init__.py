"""What shows a network to a person: the summary table and its JSON, the arithmetic of one layer
(explain), diagrams (render), the difference of two networks (diff) and the IR as text.

Views read the front end, the IR and plain arrays, never the backend. Importing this package
gives `Network` its `explain()` and `summary()` methods (see compiler.provide_view): the front
end does not import its views.
"""
from ..compiler import provide_view
from .explain import explain
from .summary import summary_dict

provide_view("explain", explain)
provide_view("summary", summary_dict)
