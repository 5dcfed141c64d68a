"""Training a network: the loop (loop.py), the optimiser and schedules (optim.py), data sets
(data.py), and the timing of one step that `netdsl run` reports (timing.py). Drives the
backend; the backend never imports this package."""
