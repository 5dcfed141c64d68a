"""The activations the op table lets run as an epilogue (OpSpec.epilogue, ops.EPILOGUES) each have
every form the back ends and the export need: the CPU rule and its layer kernel, native.c's
gradient, the CUDA expressions, the ONNX type. A walk of the table names what is missing; then
each form is checked against the definition: finite differences in float64 for the CPU rule,
the CPU rule for native.c's and the CUDA expressions' gradients (the CUDA source built for the
host as C++), onnxruntime for the ONNX type."""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from netdsl.backend.cpu import direct, native
from netdsl.backend.gpu import cuda
from netdsl.backend.im2col import Geometry
from netdsl.backend.kernels import ACTIVATIONS, KERNELS
from netdsl.interchange import onnx_export
from netdsl.ops import EPILOGUES, OPS

FORMS = {
    "CPU rule (backend/kernels/activation_rules.py ACTIVATIONS)": ACTIVATIONS,
    "layer kernel (backend/kernels KERNELS)": KERNELS,
    "native gradient (backend/cpu/native.py EPILOGUE_GRADIENTS)": native.EPILOGUE_GRADIENTS,
    "CUDA forward (backend/gpu/cuda.py ACTIVATION_EXPR)": cuda.ACTIVATION_EXPR,
    "CUDA gradient (backend/gpu/cuda.py GRADIENT_EXPR)": cuda.GRADIENT_EXPR,
    "ONNX type (interchange/onnx_export.py ACTIVATION_TYPES)": onnx_export.ACTIVATION_TYPES,
}
RNG = np.random.default_rng(11)


def test_the_table_has_epilogues_and_they_are_parameterless_activations():
    # the lecture's three, and MobileNet's relu6 and hsigmoid (piecewise linear: their gradient
    # is the slope where the output lies strictly between the clamps); leaky has a slope, and
    # hswish and silu differentiate from their input
    assert set(EPILOGUES) == {"relu", "tanh", "sigmoid", "relu6", "hsigmoid"}
    for name in EPILOGUES:
        assert OPS[name].kind == "elementwise" and not OPS[name].signature.positional, name


def test_every_epilogue_has_every_form():
    missing = [f"{name}: no {form}" for name in EPILOGUES for form, table in FORMS.items() if name not in table]
    assert missing == [], "\n".join(missing)


def test_no_form_for_an_op_that_is_not_an_epilogue():
    """A form left behind for an op the table no longer fuses is a fact written twice."""
    stale = [f"{form}: {name}" for form, table in FORMS.items() if "kernel" not in form
             for name in table if name is not None and name not in EPILOGUES]
    assert stale == [], "\n".join(stale)


KINKS = np.array([0.0, -3.0, 3.0, 6.0])  # relu's and relu6's, hsigmoid's at -3 and 3


def _inputs():
    """100 values over every piece of every activation (below -3, between the kinks, above 6)."""
    v = RNG.standard_normal(400) * 4
    v = v[np.abs(v[:, None] - KINKS).min(axis=1) > 1e-3][:100]
    assert (v < -3).any() and (v > 6).any() and ((v > 0) & (v < 3)).any()
    return v.reshape(4, 25)


@pytest.mark.parametrize("name", EPILOGUES)
def test_cpu_rule_gradient_is_the_derivative(name):
    rule = ACTIVATIONS[name]
    v, dy, h = _inputs(), RNG.standard_normal((4, 25)), 1e-6
    y = rule.apply(np, v.copy())
    numeric = (rule.apply(np, v + h) - rule.apply(np, v - h)) / (2 * h) * dy
    np.testing.assert_allclose(rule.grad(np, dy, y), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", EPILOGUES)
def test_native_gradient_matches_the_cpu_rule(name):
    """native.c's case for the activation (direct_grad_planes, through the direct conv's backward)
    against the backward of dy already through the CPU rule's gradient."""
    assert native.library() is not None, "no working C compiler: native.c is untested"
    x, w = RNG.standard_normal((2, 2, 6, 7)), RNG.standard_normal((3, 2, 3, 3))
    geo = Geometry.of(x.shape, (3, 3), (1, 1), (1, 1))
    out, saved = direct.forward(np, x, w, None, geo)
    y = ACTIVATIONS[name].apply(np, out.copy())
    dy = RNG.standard_normal(out.shape)
    fused = direct.backward(np, saved, dy, w, True, (name, y))
    plain = direct.backward(np, saved, ACTIVATIONS[name].grad(np, dy, y), w, True)
    for got, ref in zip(fused, plain):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_cuda_expressions_match_the_cpu_rules(tmp_path):
    """Each activation's CUDA forward and gradient expression, compiled as C++ for the host in
    double, against the CPU rule."""
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    assert compiler, "no C++ compiler: the CUDA expressions cannot be run on the host"
    funcs = []
    for k, name in enumerate(EPILOGUES):
        funcs.append(f'extern "C" void fwd{k}(const double* x, double* out, int n) {{ typedef double T; '
                     f'for (int i = 0; i < n; ++i) {{ T v = x[i]; out[i] = {cuda.ACTIVATION_EXPR[name]}; }} }}')
        funcs.append(f'extern "C" void grad{k}(const double* d, const double* yy, double* out, int n) {{ '
                     f'typedef double T; for (int i = 0; i < n; ++i) {{ T dy = d[i], y = yy[i]; '
                     f'out[i] = {cuda.GRADIENT_EXPR[name]}; }} }}')
    src, lib = tmp_path / "expr.cpp", tmp_path / "expr.so"
    src.write_text("#include <cmath>\nusing std::tanh; using std::exp;\n" + "\n".join(funcs) + "\n")
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O1", str(src), "-o", str(lib)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    host = ctypes.CDLL(str(lib))
    at = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    for k, name in enumerate(EPILOGUES):
        v, dy = _inputs().ravel(), RNG.standard_normal(100)
        y, dx = np.empty(100), np.empty(100)
        getattr(host, f"fwd{k}")(at(v), at(y), 100)
        np.testing.assert_allclose(y, ACTIVATIONS[name].apply(np, v.copy()), rtol=1e-14, atol=1e-15, err_msg=name)
        getattr(host, f"grad{k}")(at(dy), at(y), at(dx), 100)
        np.testing.assert_allclose(dx, ACTIVATIONS[name].grad(np, dy, y), rtol=1e-14, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("name", EPILOGUES)
def test_onnx_type_computes_the_cpu_rule(name):
    import onnxruntime as ort
    from onnx import TensorProto, helper
    spec = onnx_export.ACTIVATION_TYPES[name]
    node = helper.make_node(spec.op_type, ["x", *(k for k, _ in spec.constants)], ["y"], **dict(spec.attrs))
    bounds = [helper.make_tensor(k, TensorProto.FLOAT, [], [v]) for k, v in spec.constants]
    graph = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 25])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 25])], initializer=bounds)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.DEFAULT_OPSET)])
    model.ir_version = 8
    v = _inputs().astype(np.float32)
    (got,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": v})
    np.testing.assert_allclose(got, ACTIVATIONS[name].apply(np, v.astype(np.float64)), rtol=1e-6, atol=1e-6)
