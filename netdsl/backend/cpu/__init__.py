"""The CPU's own code: native.c and its loader, direct convolutions in C, the thread splitter,
OpenBLAS's threads and glibc's heap. Never imports CuPy; kept free of imports (see
backend/__init__)."""
