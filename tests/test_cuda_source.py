"""The CUDA source of the CuPy back end compiles, checked with nvcc where it is installed (no GPU
is needed to compile), so a syntax slip in GPU code shows up on CPU-only machines too; and the
im2col/col2im kernels' and batch norm's one-pass sums' source, built for the host with its C++
compiler (so on every machine), computes what numpy does."""
import shutil
import subprocess

import pytest

from netdsl.backend.gpu.cuda import _SOURCE, ACTIVATION_EXPR, GRADIENT_EXPR

# nvcc ships with the CUDA toolkit, not with pip: where it is missing, these checks cannot run
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None,
                                reason="nvcc (the CUDA compiler) is not installed: the CUDA source cannot be compiled here")


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
            for index in ("i32", "i64"):
                assert f" T {kernel}_{tag}_{index}\n" in symbols


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


def _harness(name: str, in_params: str, out_params: str, body: str) -> str:
    """A CUDA kernel equivalent to what CuPy's ElementwiseKernel builds from a spec: `raw`
    parameters as pointers indexed freely, the others as the i-th element (outputs by reference),
    `i` the element index; instantiated for float and double by a host function."""
    params, prologue, zeros = [], [], []
    for kind, spec in (("in", in_params), ("out", out_params)):
        for p in spec.split(","):
            words = p.split()
            raw = words[0] == "raw"
            ctype, var = words[-2], words[-1]
            ctype = {"int32": "int", "float64": "double", "T": "T"}[ctype]
            if raw or kind == "out" or ctype == "T":
                params.append(f"{'const ' if kind == 'in' else ''}{ctype}* {var}{'' if raw else '_ptr'}")
                zeros.append("nullptr")
                if not raw:
                    prologue.append(f"{ctype}{'&' if kind == 'out' else ''} {var} = {var}_ptr[i];")
            else:
                params.append(f"{ctype} {var}")
                zeros.append("0")
    return (f"template <typename T> __global__ void {name}({', '.join(params)}, ptrdiff_t n) {{\n"
            f"  for (ptrdiff_t i = blockIdx.x * (ptrdiff_t)blockDim.x + threadIdx.x; i < n; "
            f"i += (ptrdiff_t)blockDim.x * gridDim.x) {{\n    {' '.join(prologue)}\n{body}\n  }}\n}}\n"
            f"void launch_{name}() {{ {name}<float><<<1, 1>>>({', '.join(zeros)}, 0); "
            f"{name}<double><<<1, 1>>>({', '.join(zeros)}, 0); }}\n")


@needs_nvcc
def test_layer_kernels_compile(tmp_path):
    """The bn, LRN and max-pooling kernels of gpu_layers.py (every activation variant), through a
    harness that declares their parameters the way CuPy does, and bn's RawKernels as they are."""
    from netdsl.backend.gpu.layers import elementwise_specs
    specs = {}
    for activation in ACTIVATION_EXPR:
        specs.update(elementwise_specs(activation))
    # and bn's one-pass sum kernels (RawKernels), each in a namespace of its own for its typedef
    from netdsl.backend.gpu.layers import channel_sums_sources
    raw = {name: code for activation in ACTIVATION_EXPR for ctype in ("float", "double")
           for name, code in channel_sums_sources(ctype, activation).items()}
    src = tmp_path / "layers.cu"
    src.write_text("#include <cstddef>\n" + "\n".join(_harness(n, *spec) for n, spec in specs.items())
                   + "".join(f"\nnamespace {name} {{\n{code}\n}}\n" for name, code in raw.items()))
    result = subprocess.run(["nvcc", "-c", str(src), "-o", str(tmp_path / "layers.o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + src.read_text()


# CUDA source run on the host: one block of one thread (the kernels' loops then visit every
# element in turn), the block index set from Python through set_block.
HOST_CUDA = ("#define __global__\n#define __device__\n#define __shared__ static\n"
             "struct Dim { unsigned x, y; };\nstatic Dim blockIdx{0, 0};\n"
             "static const Dim blockDim{1, 1}, threadIdx{0, 0}, gridDim{1, 1};\n"
             "static inline void __syncthreads() {}\n"
             'extern "C" void set_block(unsigned x, unsigned y) { blockIdx.x = x; blockIdx.y = y; }\n')


def _build_for_host(tmp_path, source: str):
    """CUDA source built as C++ for this machine (the host's C++ compiler: no CUDA toolkit
    needed) and loaded through ctypes."""
    import ctypes
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    assert compiler, "no C++ compiler: the kernels' source cannot be run on the host"
    src, lib = tmp_path / "host.cpp", tmp_path / "host.so"
    src.write_text(HOST_CUDA + source)
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O1", str(src), "-o", str(lib)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(lib))


@pytest.mark.parametrize("index", ["i32", "i64"])
def test_im2col_kernels_compute_what_numpy_does(tmp_path, index):
    """The im2col/col2im kernels' own source, run on the host: compiled as C++ with a grid of
    one thread (the plane and position loops then visit every element in turn) and called through
    ctypes, against the numpy im2col/col2im, both layouts, strided, padded, rectangular."""
    import ctypes

    import numpy as np

    from netdsl.backend.gpu import cuda as gpu_kernels
    from netdsl.backend import im2col as ref

    kernels = _build_for_host(tmp_path, gpu_kernels._COMMON + gpu_kernels._TEMPLATES
                              + gpu_kernels.entry_points(dtypes=(("f64", "double"),), qualifier=""))

    def call(name, src_array, dst_array, geo):
        fn = getattr(kernels, f"{name}_f64_{index}")
        ints = [geo.c, geo.h, geo.w, *geo.kernel, *geo.stride, *geo.pad, geo.oh, geo.ow]
        fn(src_array.ctypes.data_as(ctypes.c_void_p), dst_array.ctypes.data_as(ctypes.c_void_p),
           ctypes.c_longlong(dst_array.size), *[ctypes.c_int(v) for v in ints])
        return dst_array

    rng = np.random.default_rng(0)
    for shape, kernel, stride, pad in [((2, 3, 7, 6), (3, 3), (1, 1), (1, 1)), ((3, 2, 9, 8), (3, 2), (2, 3), (1, 0)),
                                       ((2, 4, 5, 5), (5, 5), (1, 1), (2, 2)), ((1, 2, 6, 6), (1, 1), (2, 2), (0, 0))]:
        geo = ref.Geometry.of(shape, kernel, stride, pad)
        n, rows = shape[0], geo.c * kernel[0] * kernel[1]
        x = rng.standard_normal(shape)
        cols = call("im2col", x, np.empty((n, rows, geo.oh * geo.ow)), geo)
        np.testing.assert_array_equal(cols, ref.im2col(np, x, geo))
        cols_bm = call("im2col_bm", x, np.empty((rows, n * geo.oh * geo.ow)), geo)
        np.testing.assert_array_equal(cols_bm, ref.im2col_batch_major(np, x, geo))
        d = rng.standard_normal(cols.shape)
        np.testing.assert_allclose(call("col2im", d, np.empty(shape), geo), ref.col2im(np, d, geo), rtol=1e-12)
        d_bm = rng.standard_normal(cols_bm.shape)
        np.testing.assert_allclose(call("col2im_bm", d_bm, np.empty(shape), geo),
                                   ref.col2im_batch_major(np, d_bm, geo, n), rtol=1e-12, atol=1e-12)


def test_bn_channel_sums_compute_what_numpy_does(tmp_path):
    """batch norm's one-pass per-channel sums (gpu_layers.channel_sums_sources), built for the
    host with one thread a block and called block by block through ctypes: every slice of the
    batch, both walks (map by map, and flat over short maps), strided operands as a conv's
    transposed output gives them, every activation's gradient, against numpy in float64."""
    import ctypes

    import numpy as np

    from netdsl.backend.gpu import layers as gpu_layers
    from netdsl.backend.kernels import ACTIVATIONS

    sources = {}  # the statistics kernel comes with every activation's set: once
    for activation in ACTIVATION_EXPR:
        sources.update(gpu_layers.channel_sums_sources("double", activation))
    sums = _build_for_host(tmp_path, "typedef double T;\n" + "\n".join(sources.values()).replace("typedef double T;", ""))

    def run(name, operands, strides, flat, slices):
        n, c, m = operands[0].shape
        partial = np.zeros((c, slices, 2))
        ptrs = [ctypes.c_void_p(a.ctypes.data) for a in operands]
        for ch in range(c):
            for sl in range(slices):
                sums.set_block(ch, sl)
                getattr(sums, name)(*ptrs, partial.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(n), ctypes.c_int(c),
                                    ctypes.c_int(m), ctypes.c_longlong(strides[0]), ctypes.c_longlong(strides[1]),
                                    ctypes.c_int(slices), ctypes.c_int(flat))
        return partial.sum(axis=1)

    rng = np.random.default_rng(0)
    n, c, m = 5, 3, 7
    base = rng.standard_normal((c, n, m)) + 3.0  # (C, N, M) memory seen as (N, C, M): strides (m, n*m)
    x = base.transpose(1, 0, 2)
    for flat in (0, 1):
        for slices in (1, 2, 5):
            got = run("netdsl_bn_sums_double", [x], (m, n * m), flat, slices)
            np.testing.assert_allclose(got[:, 0], x.sum(axis=(0, 2)), rtol=1e-12)
            np.testing.assert_allclose(got[:, 1], (x * x).sum(axis=(0, 2)), rtol=1e-12)
    dy, xhat = rng.standard_normal((n, c, m)), rng.standard_normal((n, c, m))
    for activation, (fn, grad) in [(None, (None, None)), *((a, ACTIVATIONS[a]) for a in ACTIVATION_EXPR if a)]:
        y = fn(np, rng.standard_normal((n, c, m))) if fn else dy
        g = grad(np, dy, y) if grad else dy
        for flat in (0, 1):
            got = run(f"netdsl_bn_grad_sums_{activation or 'id'}_double", [dy, y, xhat], (c * m, m), flat, 2)
            np.testing.assert_allclose(got[:, 0], g.sum(axis=(0, 2)), rtol=1e-12, err_msg=str(activation))
            np.testing.assert_allclose(got[:, 1], (g * xhat).sum(axis=(0, 2)), rtol=1e-12, err_msg=str(activation))
