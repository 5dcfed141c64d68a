"""netdsl's version, in one place: the package, the command line and exported files quote it."""
__version__ = "0.1.0"
