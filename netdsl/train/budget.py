"""The memory one training step will take, planned from the IR before anything is allocated.

`netdsl run` and `netdsl train` compare the plan at the requested batch with `--memory-limit`
(when given) and with what the device has, and refuse a batch that cannot fit, naming the figure
and the largest batch that does, instead of failing with a MemoryError gigabytes later.

The plan is an upper estimate, not a measurement: per image, every value the forward pass keeps
for backward and its gradient (the summary's training activations) twice over for the
temporaries kernels make, plus the largest conv's im2col columns twice (forward and backward);
fixed, what training holds for the parameters (passes/memory.training_parameter_values: weights,
gradients, and momentum when training) and once more for the kernels' workspace. Against the peak tracemalloc measured for a `netdsl run`
step on the CPU (issue 14: LeNet-5, AlexNet, ResNet-18, GoogLeNet and VGG16 at two batches
each), the plan's per-image figure is 1.3-2.2x the measured one and its fixed part 2.3-4x:
never under. tests/test_budget.py holds it to that.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..compiler import Network
from ..errors import NetError
from ..passes.check_limits import BYTES, human_bytes
from ..passes.memory import training_parameter_values


@dataclass(frozen=True)
class StepPlan:
    fixed_bytes: int      # parameters, gradients, optimiser state
    per_image_bytes: int  # values kept for backward, their gradients, workspaces

    def at(self, batch: int) -> int:
        return self.fixed_bytes + self.per_image_bytes * batch

    def largest_batch(self, budget: int) -> int:
        return max(0, (budget - self.fixed_bytes) // max(1, self.per_image_bytes))


def largest_columns(net: Network) -> int:
    """Values in the largest conv layer's im2col columns for one image."""
    most = 0
    for layer in net.layers:
        weight = dict(net.graph.nodes[layer.name]["params"]).get("weight")
        if layer.op == "conv" and weight is not None and len(layer.shape) == 3:
            most = max(most, weight[1] * weight[2] * weight[3] * layer.shape[1] * layer.shape[2])
    return most


def plan_step(net: Network, optimiser: bool) -> StepPlan:
    t = net.totals()
    per_image = (2 * t.training_activations + 2 * largest_columns(net)) * BYTES
    fixed = (training_parameter_values(t.params, optimiser) + t.params) * BYTES  # + the workspace
    return StepPlan(fixed, per_image)


def check_batch(net: Network, batch: int, available: int | None, limit: int | None, *,
                optimiser: bool, flag: str = "--batch", ranks: int = 1) -> StepPlan:
    """Refuse `batch` if its planned step exceeds `limit` (the user's --memory-limit) or the
    memory `available` on the device; the message gives both figures and the largest batch.
    With several ranks, `batch` is one rank's share of a global batch `ranks` times larger."""
    plan = plan_step(net, optimiser)
    need = plan.at(batch)
    bounds = [(limit, "the --memory-limit"), (available, "the memory this machine has free")]
    for budget, what in sorted((b for b in bounds if b[0] is not None), key=lambda b: b[0]):
        if need > budget:
            fits = plan.largest_batch(budget)
            hint = (f"--batch {fits * ranks} fits" + (f" ({fits} a rank)" if ranks > 1 else "") if fits >= 1 else
                    f"not even one image fits: the parameters alone plan {human_bytes(plan.fixed_bytes)}")
            shown = f"{batch * ranks} over {ranks} ranks ({batch} a rank)" if ranks > 1 else f"{batch}"
            raise NetError(f"{flag} {shown}: one training step of {net.name} plans "
                           f"{human_bytes(need)} ({human_bytes(plan.per_image_bytes)} per image + "
                           f"{human_bytes(plan.fixed_bytes)} of parameters and their state), over {what} "
                           f"({human_bytes(budget)})", hint=hint)
    return plan
