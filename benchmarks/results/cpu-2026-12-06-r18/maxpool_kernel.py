# cb_maxpool_f32 alone on ResNet-18 pool1 (64 x 112 x 112, 3x3 /2 pad 1), one core, fastest of 200, against a float64 reference
import time, numpy as np, sys
from netdsl.backend.cpu import native
lib = native.library()
x = np.random.default_rng(0).standard_normal((64,112,112)).astype(np.float32)
out = np.empty((64,56,56), np.float32)
f = lib.cb_maxpool_f32
def run():
    f(native._at(x), native._at(out), 64, 112,112,3,3,2,2,1,1,56,56)
best=1e9
for _ in range(200):
    t=time.perf_counter(); run(); best=min(best,time.perf_counter()-t)
# reference
xp = np.pad(x.astype(np.float64), ((0,0),(1,1),(1,1)), constant_values=-np.inf)
ref = np.full((64,56,56), -np.inf)
for i in range(3):
    for j in range(3):
        ref = np.maximum(ref, xp[:, i:i+111:2, j:j+111:2])
print("ms", best*1e3, "maxerr", np.abs(ref-out).max())
y=np.empty_like(x)
b=1e9
for _ in range(200):
    t=time.perf_counter(); np.copyto(y,x); b=min(b,time.perf_counter()-t)
print("copy ms", b*1e3)
b=1e9
for _ in range(200):
    t=time.perf_counter(); np.maximum(x[:, ::2, :], x[:, 1::2,:], out=y[:,:56,:]); b=min(b,time.perf_counter()-t)
print("max half ms", b*1e3)
