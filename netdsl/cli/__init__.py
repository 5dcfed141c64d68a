"""The command line: main.py builds the parser from one module per group of subcommands
(analyse: check, summary, explain; execute: run, train; draw: draw, diff; interchange: export,
import); args.py holds the argument types and flags they share; usage.py and paths.py the checks
every command passes before it runs (flags that do nothing; outputs onto inputs); launch.py starts
`train --ranks N` under mpiexec."""
from .main import main

__all__ = ["main"]
