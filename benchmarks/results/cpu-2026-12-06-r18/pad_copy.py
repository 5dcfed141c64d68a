# The padded-plane copy alone: native.c cb_pad_copy (this branch) against numpy.copyto into the strided interior (the branch point), 300 calls, fastest
import numpy as np, time
from netdsl.backend.cpu import native, blocked
from netdsl.backend import im2col
for c,h in ((64,56),(128,28),(256,14),(512,7)):
    geo = im2col.Geometry.of((1,c,h,h),(3,3),(1,1),(1,1))
    L = blocked.Layer(np.random.rand(c,c,3,3).astype(np.float32), None, geo)
    x=np.random.rand(c,h,h).astype(np.float32)
    f = L._copy_into_planes(x)
    b=1e9
    for _ in range(300):
        t=time.perf_counter(); f(); b=min(b,time.perf_counter()-t)
    b2=1e9
    for _ in range(300):
        t=time.perf_counter(); np.copyto(L.interior, x); b2=min(b2,time.perf_counter()-t)
    assert np.array_equal(L.interior, x)
    print(c,h,"C copy us",round(b*1e6,1),"numpy",round(b2*1e6,1))
