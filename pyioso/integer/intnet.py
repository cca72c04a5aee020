"""An integer network: golden's ops in execution order over named code tensors (ARCHITECTURE
§1-§5), the whole network in integers. Built by round to nearest (pyioso.integer.rtn) or from a
calibration (pyioso.calib.export), stored as an artifact (pyioso.integer.artifact); every conv/FC
layer's golden input and output can be replayed on the RTL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import golden
from pyioso.quant.layer import Coding, encode

_RUN = {
    golden.Conv: lambda op, x: golden.conv(x, op),      # an FC is a 1x1 conv on a 1x1 map (§5)
    golden.Add: lambda op, a, b: golden.residual_add(a, b, op),
    golden.AvgPool: lambda op, x: golden.avg_pool(x, op),
    golden.MaxPool: lambda op, x: golden.max_pool(x, op.kernel, op.stride, op.padding, op.bits),
}


def run_op(op, *inputs: torch.Tensor) -> torch.Tensor:
    """golden's result of one integer-network op on its input code tensors."""
    return _RUN[type(op)](op, *inputs)


@dataclass(frozen=True)
class Step:
    """One integer op: golden runs `op` on the tensors named `inputs` and names the result `output`."""

    name: str                   # module path, or the fx node name of a function (add_3)
    op: golden.Conv | golden.Add | golden.AvgPool | golden.MaxPool
    inputs: tuple[str, ...]
    output: str

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        """golden's op on the input code tensors."""
        return run_op(self.op, *inputs)


@dataclass(frozen=True)
class LayerRun:
    """A conv/FC layer's golden input and output codes, NHWC (an FC's as [N, 1, 1, C])."""

    path: str
    layer: golden.Conv
    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class IntNet:
    """golden ops in execution order over named code tensors: the whole network in integers."""

    steps: tuple[Step, ...]
    codings: dict[str, Coding]  # every tensor a step reads or writes, by name
    input_name: str
    output_name: str

    def quantize_input(self, images: torch.Tensor) -> torch.Tensor:
        """Float NCHW images -> the network's NHWC input codes."""
        return encode(images, self.codings[self.input_name])

    def forward(self, x: torch.Tensor, record: bool = False) -> tuple[torch.Tensor, list[LayerRun]]:
        """Logit codes [N, classes] for NHWC input codes, and with `record` every conv/FC
        layer's input and output codes in execution order (else an empty list)."""
        values, runs = {self.input_name: x}, []
        for step in self.steps:
            args = [values[name] for name in step.inputs]
            values[step.output] = step.run(*args)
            if record and isinstance(step.op, golden.Conv):
                runs.append(LayerRun(step.name, step.op, args[0], values[step.output]))
        return values[self.output_name][:, 0, 0, :], runs

    def dequantize_logits(self, codes: torch.Tensor) -> torch.Tensor:
        c = self.codings[self.output_name]
        return c.scale * (codes.to(torch.float64) - c.zero_point)
