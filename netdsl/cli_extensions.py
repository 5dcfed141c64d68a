"""Subcommands that live with their own concern (run, train, draw, diff) register here."""
