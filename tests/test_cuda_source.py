"""The CUDA source of the CuPy back end compiles, checked with nvcc where it is installed (no GPU
is needed to compile), so a syntax slip in GPU code shows up on CPU-only machines too."""
import shutil
import subprocess

import pytest

from netdsl.backend.gpu_kernels import _SOURCE


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA compiler) is not installed")
def test_cuda_kernels_compile(tmp_path):
    src = tmp_path / "kernels.cu"
    src.write_text(_SOURCE)
    result = subprocess.run(["nvcc", "-c", str(src), "-o", str(tmp_path / "kernels.o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    symbols = subprocess.run(["nm", str(tmp_path / "kernels.o")], capture_output=True, text=True).stdout
    for name in ("im2col_f32", "im2col_f64", "col2im_f32", "col2im_f64"):
        assert f" T {name}\n" in symbols
