# One blocked conv layer call (the padded-plane copy and the kernel) timed alone: ResNet-18 b1 shapes
import numpy as np, time
from netdsl.backend.cpu import blocked
from netdsl.backend import im2col
rng=np.random.default_rng(0)
for c,o,h,k,s,p in ((64,128,56,1,2,0),(64,64,56,3,1,1),(128,128,28,3,1,1),(512,512,7,3,1,1)):
    geo = im2col.Geometry.of((1,c,h,h),(k,k),(s,s),(p,p))
    L = blocked.Layer(rng.standard_normal((o,c,k,k)).astype(np.float32), None, geo)
    x = rng.standard_normal((c,h,h)).astype(np.float32); out=np.empty((o,geo.oh,geo.ow),np.float32)
    run = L.bind(x,out)
    for _ in range(5): run()
    ts=[]
    for _ in range(30):
        t=time.perf_counter(); run(); ts.append(time.perf_counter()-t)
    print(c,o,h,k,s, "min ms %.3f med %.3f" % (min(ts)*1e3, sorted(ts)[15]*1e3), L.xpad.shape)
