"""Running a network: the executor, the kernel table, device choice and the conv algorithms
(im2col, Winograd, direct). cpu/ holds what is specific to the CPU (compiled C kernels, threads,
BLAS and heap tuning), gpu/ the CUDA kernels, imported only where the device is CuPy.

Kept free of imports: netdsl/__init__ loads backend.cpu.blas_threads before numpy is loaded.
"""
