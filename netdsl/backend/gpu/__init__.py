"""The NVIDIA GPU's own code through CuPy: cuda.py (im2col/col2im, the generated elementwise
chains, the SGD update) and layers.py (whole-layer batch-norm, LRN and max-pool kernels).
Imported only on code paths where the arrays are CuPy's."""
