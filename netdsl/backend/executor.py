"""Lowering the typed IR to an executable plan, and running it forward and backward.

The plan is the IR's schedule (a topological order) with each node bound to its kernel, its
parameters and a scratch area. Reverse-mode autodiff walks the plan backwards, accumulating
gradients where a value feeds several consumers (branches, side outputs).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import checkpoint
from ..compiler import Network
from ..init import initial_state
from ..errors import NetError, NetTypeError, NetValueError
from ..ir import inputs as ir_inputs
from ..ir import schedule
from ..ops import LOWERED, OPS, shape_text
from ..passes.fold_bn import folded_conv_params
from .device import Device, get_device
from .cpu.heap import keep_freed_memory
from .kernels import ACTIVATIONS, KERNELS
from .tuner import check_precision

DEFAULT_COL_BUDGET = 256 * 2**20  # bytes of im2col columns per conv call before the batch is split
AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's weight for its auxiliary classifiers


class Workspace:
    """Scratch buffers allocated once per shape and reused across steps (padding buffers)."""

    def __init__(self):
        self.buffers: dict[Any, Any] = {}

    def get(self, key, make):
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = make()
        return buf

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())


class NodeState:
    """What one node's kernel sees: its attributes, parameters, buffers, and a place to save
    values for the backward pass."""

    def __init__(self, name: str, op: str, attrs, inputs: list[int], model: "Model"):
        self.name, self.op, self.attrs, self.inputs = name, op, attrs, inputs
        self.kernel = KERNELS[op]
        self.model = model
        self.xp = model.xp
        self.params: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        # set by each forward pass: the kernel's variant that ran, the state it saved for its
        # backward, and the fused activation's output (its gradient is a function of it)
        self.variant = None
        self.saved: Any = None
        self.epilogue_out: Any = None
        self.workspace = model.workspace
        self.keep_cols = True
        data = model.net.graph.nodes[name]
        self.epilogue = data.get("epilogue")  # an activation fused in place (passes/fuse.py)
        self.folded_bn = data.get("folded_bn")  # parameters derived from conv + bn (passes/fold_bn.py)

    @property
    def training(self) -> bool:
        return self.model.training

    def rng_uniform(self, shape):
        return self.model.uniform(shape)


class Model:
    """An executable network: parameters on a device, forward, loss, backward.

        model = Model(netdsl.load("nets/lenet5.net"), device="cpu", seed=0)
        loss = model.loss(x, labels)       # forward in training mode, averaged loss
        grads = model.backward()           # {"c1.weight": array, ...}
    """

    def __init__(self, net: Network, device: str | Device = "auto", dtype: str = "float32", seed: int = 0,
                 col_budget: int = DEFAULT_COL_BUDGET, aux_weight: float = AUX_LOSS_WEIGHT,
                 params_from: "Model | None" = None, winograd: bool = True, precision: str = "default"):
        if not isinstance(net, Network):
            raise NetTypeError(f"Model takes a compiled network (netdsl.load or netdsl.compile), not "
                               f"{type(net).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise NetValueError(f"Model(seed=...) takes a whole number, 0 or more, not {seed!r}")
        self.net = net
        self.device = device if isinstance(device, Device) else get_device(device)
        self.xp = self.device.xp
        if self.device.name == "cpu":
            keep_freed_memory()  # no fresh page mapping every step (backend/cpu/heap.py)
        self.dtype = np.dtype(dtype)
        self.col_budget = col_budget
        self.winograd = winograd  # F(2x2, 3x3) for 3x3 stride-1 pad-1 convs on the CPU (backend/winograd.py)
        self.precision = check_precision(precision)  # the convolutions' float32 error budget (backend/tuner.py)
        self.aux_weight = aux_weight
        self.training = False
        # --sync-bn: batch norm's statistics over every rank's batch (train/sync_bn.py); None: this batch's
        self.bn_sync = None
        self.workspace = Workspace()
        self.seed = seed
        self._rng = np.random.default_rng(seed + 1)
        g = net.graph
        self.order = schedule(g)
        self.index = {name: i for i, name in enumerate(self.order)}
        self.nodes = [NodeState(n, g.nodes[n]["op"], g.nodes[n]["attrs"],
                                [self.index[s] for s in ir_inputs(g, n)], self) for n in self.order]
        self.consumers: list[list[int]] = [[] for _ in self.nodes]
        for i, node in enumerate(self.nodes):
            for j in node.inputs:
                self.consumers[j].append(i)
        self.outputs = [(name, self.index[n]) for name, n in net.outputs]
        # heads at outputs are differentiated through their loss, not their own backward
        self._head_outputs = {i for _, i in self.outputs if self.nodes[i].kernel.loss is not None}
        if params_from is None:
            self._init_params(seed)
        else:  # every tensor comes from the other model: no random initial state to draw first
            self._allocate_params()
            self._derive_params(params_from)
        # inference frees each value after its last reader (the lifetimes passes/plan_memory plans)
        outputs = {i for _, i in self.outputs}
        self.last_use = [len(self.nodes) if i in outputs else max(self.consumers[i], default=i)
                         for i in range(len(self.nodes))]
        self._values: list[Any] = []
        self._loss_grads: dict[int, Any] = {}
        self._inference: Any = None  # predict's prepared engine (backend/inference.py), made on first use
        self._inference_stale = True  # parameters changed since it took them

    # parameters ----------------------------------------------------------------------------------
    def _init_params(self, seed: int) -> None:
        """netdsl/init.py's seeded initial state, put on the device."""
        state = initial_state(self.net.graph, seed, self.dtype)
        for node in self.nodes:
            data = self.net.graph.nodes[node.name]
            for pname, _ in data["params"]:
                node.params[pname] = self.xp.asarray(state[f"{node.name}.{pname}"])
            for bname, _ in data["buffers"]:
                node.buffers[bname] = self.xp.asarray(state[f"{node.name}.{bname}"])

    def _allocate_params(self) -> None:
        for node in self.nodes:
            data = self.net.graph.nodes[node.name]
            for pname, shape in data["params"]:
                node.params[pname] = self.xp.empty(shape, dtype=self.dtype)
            for bname, shape in data["buffers"]:
                node.buffers[bname] = self.xp.empty(shape, dtype=self.dtype)

    def _derive_params(self, other: "Model") -> None:
        """Take parameters from a model of the unoptimised network: by name, or for a conv that
        absorbed a batch norm, folded (passes/fold_bn.py)."""
        theirs = {n.name: n for n in other.nodes}
        xp = self.xp
        for node in self.nodes:
            src = theirs[node.name]
            if node.folded_bn:
                bn = theirs[node.folded_bn]
                node.params["weight"][...], node.params["bias"][...] = folded_conv_params(
                    xp, src.params["weight"], src.params.get("bias"), bn.params["weight"], bn.params["bias"],
                    bn.buffers["running_mean"], bn.buffers["running_var"], bn.attrs["eps"])
                continue
            for pname in node.params:
                node.params[pname][...] = src.params[pname]
            for bname in node.buffers:
                node.buffers[bname][...] = src.buffers[bname]

    def parameters(self) -> dict[str, Any]:
        """{"conv1.weight": array, ...} in schedule order (the arrays themselves, not copies)."""
        return {f"{n.name}.{p}": v for n in self.nodes for p, v in n.params.items()}

    def buffers(self) -> dict[str, Any]:
        return {f"{n.name}.{b}": v for n in self.nodes for b, v in n.buffers.items()}

    def gradients(self) -> dict[str, Any]:
        return {f"{n.name}.{p}": n.grads[p] for n in self.nodes for p in n.params if p in n.grads}

    def state_dict(self) -> dict[str, Any]:
        return {**self.parameters(), **self.buffers()}

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Copy arrays in by name; a missing, extra or mis-shaped tensor is refused by name."""
        mine = self.state_dict()
        for name, value in mine.items():
            if name not in state:
                raise NetError(f"{source} has no tensor '{name}': it was saved from a different network")
            if tuple(state[name].shape) != tuple(value.shape):
                raise NetError(f"{source}: tensor '{name}' is {shape_text(tuple(state[name].shape))}, "
                               f"this network needs {shape_text(tuple(value.shape))}: a different network")
        extra = sorted(set(state) - set(mine))
        if extra:
            raise NetError(f"{source} has tensor '{extra[0]}', which this network lacks: a different network")
        for name, value in mine.items():
            value[...] = self.xp.asarray(state[name], dtype=value.dtype)
        self._inference_stale = True

    def num_parameters(self) -> int:
        return sum(int(v.size) for v in self.parameters().values())

    # running -------------------------------------------------------------------------------------
    def reseed(self, seed: int | None = None) -> None:
        """Restart the dropout random stream (same masks again: gradient checks need this)."""
        self._rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        if self.device.name == "gpu":
            self.xp.random.seed(self.seed + 1 if seed is None else seed)

    def uniform(self, shape):
        if self.device.name == "gpu":
            return self.xp.random.random_sample(shape).astype(self.dtype)
        return self._rng.random(shape, dtype=np.float32 if self.dtype == np.float32 else np.float64)

    def _check_input(self, x):
        want = tuple(self.net.input_shape)
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise NetTypeError(f"the input batch must be an array of shape Nx{shape_text(want)}, not "
                               f"{type(x).__name__}", hint="np.asarray(x, dtype=np.float32) makes one")
        if x.ndim != len(want) + 1:
            raise NetValueError(f"the input batch is {shape_text(tuple(x.shape)) if x.ndim else 'a scalar'}, but "
                                f"{self.net.name} takes Nx{shape_text(want)} (one more axis: the batch)")
        if x.shape[0] == 0:
            raise NetValueError("the input batch is empty (0 images)")
        if tuple(x.shape[1:]) != want:
            raise NetError(f"the input batch is {shape_text(tuple(x.shape))}, but {self.net.name} takes "
                           f"Nx{shape_text(want)}")
        return self.xp.asarray(x, dtype=self.dtype)

    def forward(self, x, training: bool = False, keep: bool = False) -> dict[str, Any]:
        """Run the plan; returns {output name: array} (the trunk's output under 'output').
        Inference (training False, keep False) frees every value after its last reader."""
        self.training = training
        x = self._check_input(x)
        # the last step's values and saved state go before this step makes its own, not as each
        # node overwrites them: else the peak holds two steps' worth (issue 28, memory)
        self._values, self._loss_grads = [], {}
        for node in self.nodes:
            node.saved = node.epilogue_out = None
        values: list[Any] = [None] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            node.grads = {}
            args = [x] if not node.inputs else [values[j] for j in node.inputs]
            out = node.kernel.forward(node, args)
            if node.epilogue:
                if not node.variant.epilogue:  # a variant that fuses it applied it already
                    out = ACTIVATIONS[node.epilogue].apply(self.xp, out)
                node.epilogue_out = out
            values[i] = out
            if not (training or keep):
                node.saved = node.epilogue_out = None  # inference: no backward step will read them
                for j in node.inputs:
                    if self.last_use[j] == i:
                        values[j] = None
        self._values = values
        self._loss_grads = {}
        return {name: values[i] for name, i in self.outputs}

    def predict(self, x, refresh: bool = False):
        """The trunk's output for a batch through the inference path (backend/inference.py): the
        inference-optimised graph (bn folded, activations fused) as one prepared call list per
        batch size in the memory plan's buffers, no autodiff state. It takes the parameters on
        first use and again after a training step, load or load_state_dict; after editing
        parameters by hand, pass refresh=True."""
        if refresh or self._inference_stale or self._inference is None:
            self._inference = self._inference_engine()
            self._inference_stale = False
        outputs = self._inference(x)
        return outputs[next(iter(outputs))]

    def _inference_engine(self):
        from ..compiler import optimise
        from .inference import Inference
        if "buffers" in self.net.graph.graph:  # already the inference-optimised network
            fast = self
        elif self._inference is not None:
            fast = self._inference.model
            fast._derive_params(self)
        else:
            fast = Model(optimise(self.net, "inference"), device=self.device, dtype=self.dtype, seed=self.seed,
                         col_budget=self.col_budget, winograd=self.winograd, precision=self.precision,
                         params_from=self)
        if self.device.name != "cpu":  # the prepared path is the CPU's; a GPU runs the optimised forward
            return lambda x: fast.forward(x)
        return Inference(fast)

    def __call__(self, x, training: bool = False):
        """The trunk's output (the first of net.outputs: decided by structure, not by a name)."""
        return self.forward(x, training)[self.outputs[0][0]]

    def loss(self, x, labels, training: bool = True) -> float:
        """Forward pass and the summed loss of every output: each head's own loss (softmax
        cross-entropy or multiclass hinge), weight 1 for the trunk and `aux_weight` for side
        outputs. An output that ends without a head gets softmax cross-entropy."""
        self.forward(x, training, keep=True)
        self._inference_stale = self._inference_stale or training  # an optimiser step may follow
        labels = self.xp.asarray(self._check_labels(labels, len(x)))
        total = 0.0
        for k, (name, i) in enumerate(self.outputs):
            node = self.nodes[i]
            weight = 1.0 if k == 0 else self.aux_weight
            if node.kernel.loss is not None:
                value, dx = node.kernel.loss(node, self._values[node.inputs[0]], labels)
                self._loss_grads[node.inputs[0]] = self._accumulate(self._loss_grads.get(node.inputs[0]), dx * weight)
            else:
                value, dx = KERNELS["softmax"].loss(node, self._values[i], labels)
                self._loss_grads[i] = self._accumulate(self._loss_grads.get(i), dx * weight)
            total += weight * float(value)
        return total

    def _check_labels(self, labels, n: int) -> np.ndarray:
        """Class indices, one per image, each from 0 to classes-1, as int64."""
        on_device = not isinstance(labels, np.ndarray) and hasattr(labels, "get") and hasattr(labels, "shape")
        host = np.asarray(labels.get() if on_device else labels)  # a CuPy array comes to the host: labels are small
        classes = self.net.layer(self.net.outputs[0][1]).shape[0]
        if host.ndim != 1 or len(host) != n:
            raise NetValueError(f"labels must be {n} class indices, one per image, not an array of shape "
                                f"{tuple(host.shape)}")
        if host.dtype.kind not in "iu":
            whole = host.dtype.kind == "f" and np.isfinite(host).all() and (host == np.round(host)).all()
            if host.dtype.kind == "b" or not whole:
                raise NetValueError(f"labels must be whole class indices, not {host.dtype} values like "
                                    f"{host.ravel()[0].item()!r}")
        if len(host) and (host.min() < 0 or host.max() >= classes):
            bad = host[(host < 0) | (host >= classes)][0]
            raise NetValueError(f"label {bad} is out of range: {self.net.name} has {classes} classes (0 to {classes - 1})")
        return host.astype(np.int64)

    @staticmethod
    def _accumulate(acc, g):
        return g if acc is None else acc + g

    def backward(self, input_grad: bool = False, on_ready: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Reverse-mode autodiff from the losses of the last `loss` call. Returns the parameter
        gradients by name; with input_grad, the input's gradient too under 'input'. `on_ready(i)`
        is told as soon as node i's parameter gradients are final (data-parallel training starts
        summing them across ranks while the rest of the backward pass runs)."""
        if not self._loss_grads:
            raise NetError("backward() needs a loss first: call model.loss(x, labels)")

        grads: list[Any] = [None] * len(self.nodes)
        for i, g in self._loss_grads.items():
            grads[i] = g
        for i in range(len(self.nodes) - 1, 0, -1):
            node = self.nodes[i]
            if grads[i] is None or (node.kernel.loss is not None and i in self._head_outputs):
                continue
            need_dx = input_grad or any(j != 0 for j in node.inputs)
            dout = grads[i]
            if node.epilogue and not node.variant.epilogue:
                dout = ACTIVATIONS[node.epilogue].grad(self.xp, dout, node.epilogue_out)
            in_grads = node.kernel.backward(node, dout, need_dx)
            for j, gj in zip(node.inputs, in_grads):
                if gj is None or (j == 0 and not input_grad):
                    continue
                grads[j] = gj if grads[j] is None else grads[j] + gj
            grads[i] = None  # free as we go: only live gradients stay in memory
            if on_ready is not None and node.params:
                on_ready(i)
        out = self.gradients()
        if input_grad:
            out["input"] = grads[0]
        return out

    def forward_outputs_argmax(self):
        """The trunk output's predicted class per example, from the last forward pass."""
        return self._values[self.outputs[0][1]].argmax(axis=1)

    def save(self, path, optimizer=None, extra=None) -> None:
        """Write weights, buffers (and optimiser state) to a safetensors checkpoint, atomically;
        refused, with the file left as it was, if any of them is not finite."""
        tensors = {name: self.device.asnumpy(v) for name, v in self.state_dict().items()}
        if optimizer is not None:
            tensors.update({checkpoint.OPTIMISER + k: self.device.asnumpy(v)
                            for k, v in optimizer.state_dict().items()})
        checkpoint.write(path, tensors, self.net.name, self.net.source, extra)

    def load(self, path, optimizer=None, warn=None) -> dict:
        """Load weights (and optimiser state) from a checkpoint of the same network. Names,
        shapes and dtypes are checked from the file's header before any tensor is read: a
        tensor that is missing, extra, of another shape or another type is refused by name, and
        one holding NaN or inf as well. A checkpoint of another network whose tensors happen to
        fit loads, and `warn` (default: warnings.warn) is told the first line where the two
        sources differ. Returns the checkpoint's info (epoch, step, ...)."""
        where = str(path)
        with checkpoint.Checkpoint(path) as ck:
            mine = self.state_dict()
            checkpoint.check_state({k: tuple(v.shape) for k, v in mine.items()},
                                   {k: ck.entries[k] for k in ck.model_keys()}, where)
            info = ck.info
            arrays = {}
            for name in mine:
                arrays[name] = ck.tensor(name)
                if not np.isfinite(arrays[name]).all():
                    raise NetError(f"{where}: tensor '{name}' holds NaN or inf values: this checkpoint is "
                                   "not a state to continue from")
            state = {}
            if optimizer is not None:
                prefix = ck.optimiser_prefix
                for key in ck.optimiser_keys():
                    state[key[len(prefix):]] = ck.tensor(key)
            difference = ck.source_difference(self.net.source)
        for name, value in mine.items():
            value[...] = self.xp.asarray(arrays[name], dtype=value.dtype)
        self._inference_stale = True
        if optimizer is not None:
            optimizer.load_state_dict(state, source=where)
        if difference:
            message = (f"{where} was saved from another network whose tensors fit this one ({difference}); "
                       "its weights are loaded")
            if warn is None:
                import warnings
                warnings.warn(message, stacklevel=2)
            else:
                warn(message)
        return info

    def value(self, name: str):
        """A node's output from the last forward pass (for inspection and tests)."""
        return self._values[self.index[name]]


def check_kernel_table() -> list[str]:
    """Ops in the language without a kernel (the op-table walk test asserts this is empty)."""
    return [op for op in OPS if op not in KERNELS and op not in LOWERED]

