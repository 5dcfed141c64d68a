# The pooling steps of ResNet-18 batch 1 timed alone (50 calls after 3 warm passes), run from the worktree under test
import time, numpy as np, sys
import netdsl
from netdsl.backend.cpu.blas_threads import single_threaded
net = netdsl.load("nets/resnet18.net")
model = netdsl.Model(net, device="cpu", seed=0)
x = np.random.default_rng(0).standard_normal((1,3,224,224)).astype(np.float32)
model.predict(x)
plan = model._inference.plan(1)
names = list(plan.names)
for want in ("pool1", "pool2", "conv5_x/basic2/add1"):
  if want not in names: continue
  i = names.index(want); step = plan.steps[i]
  print(want, step, getattr(step, "__qualname__", None))
  with single_threaded():
    for _ in range(3): [s() for s in plan.steps]
    b=[]
    for _ in range(50):
        t=time.perf_counter(); step(); b.append(time.perf_counter()-t)
  print(want, "min ms", min(b)*1e3, "median", sorted(b)[25]*1e3)
print(names[-6:])
