"""Session-4 GPU A/B: old vs new im2col/col2im kernels; 1x1 per-image threshold; bn pieces."""
import importlib.util, os, sys
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.getcwd() + "/benchmarks")
import numpy as np
import cupy
from timing import median_ms
from netdsl.backend import gpu_kernels as new
from netdsl.backend.im2col import Geometry
sync = cupy.cuda.runtime.deviceSynchronize
what = sys.argv[1]

if what == "kernels":
    spec = importlib.util.spec_from_file_location("old_gk", ".ab/old_gpu_kernels.py")
    old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
    cases = [((64, 64, 56, 56), 3, 1, 1), ((64, 128, 28, 28), 3, 1, 1), ((64, 128, 56, 56), 3, 2, 1),
             ((64, 256, 14, 14), 3, 1, 1), ((64, 512, 7, 7), 3, 1, 1), ((64, 3, 224, 224), 7, 2, 3),
             ((32, 64, 224, 224), 3, 1, 1), ((128, 96, 27, 27), 5, 1, 2), ((64, 256, 56, 56), 1, 1, 0),
             ((64, 1024, 14, 14), 1, 2, 0)]
    print(f"{'shape':>22} k s  layout  im2col old/new ms   col2im old/new ms   MB cols")
    for shape, k, s, p in cases:
        geo = Geometry.of(shape, (k, k), (s, s), (p, p))
        x = cupy.random.standard_normal(shape, dtype=cupy.float32)
        for bm in (True, False):
            a, b = old.im2col(x, geo, bm), new.im2col(x, geo, bm)
            assert bool((a == b).all()), (shape, bm)
            d = cupy.random.standard_normal(a.shape, dtype=cupy.float32)
            n = shape[0] if bm else None
            ca, cb = old.col2im(d, geo, n), new.col2im(d, geo, n)
            err = float(cupy.abs(ca - cb).max() / (cupy.abs(ca).max() + 1e-30))
            assert err < 1e-5, (shape, bm, err)
            t = [median_ms(lambda: m.im2col(x, geo, bm), 9, 2, sync) for m in (old, new)]
            u = [median_ms(lambda: m.col2im(d, geo, n), 9, 2, sync) for m in (old, new)]
            print(f"{str(shape):>22} {k} {s}  {'bm' if bm else 'img':6}  {t[0]:7.3f} {t[1]:7.3f}  "
                  f"     {u[0]:7.3f} {u[1]:7.3f}       {a.nbytes/1e6:8.1f}", flush=True)
            del a, b, d, ca, cb
        cupy.get_default_memory_pool().free_all_blocks()

elif what == "pointwise":  # in this process: CUPY_TF32 as set by the caller
    import netdsl
    from netdsl.backend import conv
    for name, batch in (("resnet50", 64), ("googlenet", 64)):
        net = netdsl.optimise(netdsl.load(f"nets/{name}.net"), "training")
        model = netdsl.Model(net, device="gpu", seed=0)
        opt = netdsl.SGD(model, lr=1e-3, momentum=0.9, weight_decay=5e-4)
        rng = np.random.default_rng(0)
        xd = cupy.asarray(rng.standard_normal((batch, *net.input_shape)).astype(np.float32))
        yd = cupy.asarray(rng.integers(0, 1000, batch))
        def step():
            model.loss(xd, yd, training=True); model.backward(); opt.step()
        res = {}
        for rep in range(3):
            for v in (10**9, 56 * 56, 28 * 28, 14 * 14, 1):
                conv.GPU_POINTWISE_MIN_MAP = v
                res.setdefault(v, []).append(median_ms(step, 5, 2, sync))
        print(name, f"b{batch} tf32={os.environ.get('CUPY_TF32', '0')}: ms per step by GPU_POINTWISE_MIN_MAP "
              "(three alternated readings each, medians of 5 steps)", flush=True)
        for v, ts in res.items():
            print(f"  {('off' if v == 10**9 else v):>6}: " + " ".join(f"{t:7.1f}" for t in ts), flush=True)
        del model, opt; cupy.get_default_memory_pool().free_all_blocks()

elif what == "bn":  # old (commit bd20453) vs new one-pass bn kernels: results and ms
    from netdsl.backend import gpu_layers as new_bn
    spec = importlib.util.spec_from_file_location("old_gl", ".ab/old_gpu_layers.py")
    old_bn = importlib.util.module_from_spec(spec); spec.loader.exec_module(old_bn)
    rel = lambda a, b: float(cupy.abs(a - b).max() / (cupy.abs(b).max() + 1e-30))
    for shape in ((64, 64, 112, 112), (64, 256, 56, 56), (64, 64, 56, 56), (64, 512, 28, 28), (64, 1024, 14, 14), (64, 2048, 7, 7)):
        n, c = shape[:2]
        xt = (cupy.random.standard_normal((c, n, shape[2] * shape[3]), dtype=cupy.float32) + 0.5).transpose(1, 0, 2)
        g, b = cupy.random.random(c, dtype=cupy.float32) + 0.5, cupy.random.random(c, dtype=cupy.float32)
        dy = cupy.random.standard_normal(xt.shape, dtype=cupy.float32)
        def old_fwd():
            rm, rv = cupy.zeros(c, cupy.float32), cupy.ones(c, cupy.float32)
            cen, inv = old_bn.bn_statistics(xt, rm, rv, 0.1, 1e-5)
            return old_bn.bn_apply(cen, inv, g, b, "relu") + (inv, rm, rv)
        def new_fwd():
            rm, rv = cupy.zeros(c, cupy.float32), cupy.ones(c, cupy.float32)
            mean, inv = new_bn.bn_statistics(xt, rm, rv, 0.1, 1e-5)
            return new_bn.bn_apply(xt, mean, inv, g, b, "relu") + (inv, rm, rv)
        o, nw = old_fwd(), new_fwd()
        errs = [rel(a, b_) for a, b_ in zip(nw, o)]
        xhat, y, inv = o[0], o[1], o[2]
        ob = old_bn.bn_backward(dy, y, xhat, g, inv, True, "relu")
        nb = new_bn.bn_backward(dy, y, xhat, g, inv, True, "relu")
        errs += [rel(a, b_) for a, b_ in zip(nb, ob)]
        t = [median_ms(f, 15, 3, sync) for f in (old_fwd, new_fwd,
             lambda: old_bn.bn_backward(dy, y, xhat, g, inv, True, "relu"),
             lambda: new_bn.bn_backward(dy, y, xhat, g, inv, True, "relu"),
             lambda: xt.copy())]
        print(f"{str(shape):>20} {xt.nbytes/1e6:7.1f} MB  fwd old/new {t[0]:.3f}/{t[1]:.3f}  bwd old/new {t[2]:.3f}/{t[3]:.3f}"
              f"  copy {t[4]:.3f}  max rel diff {max(errs):.1e}", flush=True)
        del xt, dy, o, nw, ob, nb; cupy.get_default_memory_pool().free_all_blocks()
