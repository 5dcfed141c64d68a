"""The CUDA source of the CuPy back end compiles, checked with nvcc where it is installed (no GPU
is needed to compile), so a syntax slip in GPU code shows up on CPU-only machines too."""
import shutil
import subprocess

import pytest

from netdsl.backend.gpu_kernels import _SOURCE, ACTIVATION_EXPR, GRADIENT_EXPR

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA compiler) is not installed")


@needs_nvcc
def test_cuda_kernels_compile(tmp_path):
    src = tmp_path / "kernels.cu"
    src.write_text(_SOURCE)
    result = subprocess.run(["nvcc", "-c", str(src), "-o", str(tmp_path / "kernels.o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    symbols = subprocess.run(["nm", str(tmp_path / "kernels.o")], capture_output=True, text=True).stdout
    for kernel in ("im2col", "col2im", "im2col_bm", "col2im_bm"):
        for tag in ("f32", "f64"):
            assert f" T {kernel}_{tag}\n" in symbols


@needs_nvcc
def test_elementwise_expressions_compile(tmp_path):
    """The activation and gradient expressions that gpu_kernels pastes into generated
    ElementwiseKernels, compiled for float and double as CuPy would (T is the element type)."""
    bodies = [f"template <typename T> __device__ T act{k}(T v) {{ return {e}; }}"
              for k, e in enumerate(ACTIVATION_EXPR.values())]
    bodies += [f"template <typename T> __device__ T grad{k}(T dy, T y) {{ return {e}; }}"
               for k, e in enumerate(GRADIENT_EXPR.values())]
    uses = [f"out[i] = act{k}<T>(x[i]);" for k in range(len(ACTIVATION_EXPR))]
    uses += [f"out[i] = grad{k}<T>(x[i], out[i]);" for k in range(len(GRADIENT_EXPR))]
    kernel = "template <typename T> __global__ void all(const T* x, T* out) { int i = threadIdx.x; " + \
        " ".join(uses) + " }\ntemplate __global__ void all<float>(const float*, float*);\n" + \
        "template __global__ void all<double>(const double*, double*);\n"
    src = tmp_path / "expr.cu"
    src.write_text("\n".join(bodies) + "\n" + kernel)
    result = subprocess.run(["nvcc", "-c", str(src), "-o", str(tmp_path / "expr.o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
