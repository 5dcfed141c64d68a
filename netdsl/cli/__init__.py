"""The command line: main.py builds the parser from one module per group of subcommands
(analyse: check, summary, explain; execute: run, train; draw: draw, diff); args.py holds the
argument types and flags they share."""
from .main import main

__all__ = ["main"]
