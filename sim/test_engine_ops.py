"""The engine's other modes through the RTL (hw/ops.py): max pool (MAX mode), average and
global average pool (a depthwise conv of ones), residual add (ADD mode), each bit-exact
against golden with CYCLES equal to the cycle model; and a short network whose every op runs
on the engine, each fed the engine's own output (sim/chain.py), with logits equal to golden's.
"""

import pytest
import torch
from torch import nn

import golden
from golden.layers import Requant
from pyioso.data.datasets import sample_photos
from pyioso.integer import rtn
from sim import chain, layer as sim_layer


def _codes(shape, bits, seed):
    return torch.randint(0, 2 ** bits, shape, generator=torch.Generator().manual_seed(seed))


def _table(multipliers, shift, zero_point, bits, lo, hi):
    return Requant(torch.tensor(multipliers), torch.zeros(len(multipliers), dtype=torch.int64),
                   shift, zero_point, bits, lo, hi)


# id: (op, input shape [1, H, W, C], input bits); channels off the 16-channel tiles throughout.
OPS = {
    "max_pool_3x3_s2_p1_c40": (golden.MaxPool((3, 3), (2, 2), (1, 1), 4), (1, 9, 9, 40), 4),
    "max_pool_2x2_s2_c24_8bit": (golden.MaxPool((2, 2), (2, 2), (0, 0), 8), (1, 6, 8, 24), 8),
    "avg_pool_3x3_s1_p1_z5": (golden.AvgPool((3, 3), (1, 1), (1, 1), 4, 5, _table([1234567], 25, 3, 4, 0, 15)),
                              (1, 7, 7, 20), 4),
    "global_avg_pool_7x7": (golden.AvgPool((7, 7), (1, 1), (0, 0), 8, 100, _table([3 * 2 ** 20 + 7], 28, 9, 8, 0, 255)),
                            (1, 7, 7, 48), 8),
    # found by make sim-random (#1371 of seed 0): one channel folds into 4 K-tiles, the last one
    # partial, which REUSE took for a copy of the second (21 of 60 outputs wrong)
    "avg_pool_7x7_s2_p5_c1_folded": (golden.AvgPool((7, 7), (2, 2), (5, 5), 3, 2, _table([342392], 24, 3, 3, 0, 7)),
                                     (1, 15, 7, 1), 3),
    "add_relu_c40": (golden.Add((3, 7), (4, 4), _table([2 ** 20 + 12345, 3 * 2 ** 19 - 777], 21, 2, 4, 2, 15)),
                     (1, 9, 9, 40), 4),
    "add_8bit_negative_m": (golden.Add((128, 0), (8, 8), _table([-(2 ** 22) + 1, 2 ** 21], 22, 128, 8, 0, 255)),
                            (1, 5, 3, 16), 8),
}


def _check(sim, op, inputs):
    result, seconds = sim_layer.simulate_op(sim, op, inputs)
    rep = sim_layer.report("case", op, inputs, result, sim, seconds)
    assert rep["mismatches"] == 0, sim_layer.verdict(rep)
    assert result.output.unique().numel() > 1, "all outputs equal: the case checks nothing"
    assert rep["model_cycles"] == rep["cycles"], sim_layer.verdict(rep)
    return rep


@pytest.mark.parametrize("case", OPS.values(), ids=OPS.keys())
def test_op(isg_sim, case):
    op, shape, bits = case
    inputs = [_codes(shape, bits, seed) for seed in range(2 if isinstance(op, golden.Add) else 1)]
    _check(isg_sim, op, inputs)


def test_add_in_row_slices(small_sim):
    """10 rows of 9 pixels x 3 tiles: ACT (256 words) holds 4 rows of both inputs, OUT (96
    words) 3 rows of sums: 4 slices."""
    op, _, bits = OPS["add_relu_c40"]
    inputs = [_codes((1, 10, 9, 40), bits, seed) for seed in (4, 5)]
    assert _check(small_sim, op, inputs)["passes"] == 4


class Tiny(nn.Module):
    """Every op kind of a mobile network: conv, max pool, depthwise and grouped convs (group
    width 24), residual add with ReLU, global average pool, FC."""

    def __init__(self):
        super().__init__()
        block = lambda c_in, c_out, k, groups, relu=True: nn.Sequential(  # noqa: E731
            nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
            *([nn.ReLU()] if relu else []))
        self.stem, self.pool = block(3, 48, 3, 1), nn.MaxPool2d(3, 2, 1)
        self.depthwise, self.grouped = block(48, 48, 3, 48), block(48, 48, 3, 2, relu=False)
        self.relu, self.head = nn.ReLU(), nn.Linear(48, 10)

    def forward(self, x):
        x = self.pool(self.stem(x))
        x = self.relu(x + self.grouped(self.depthwise(x)))
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def test_chained_network(isg_sim):
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():       # BN statistics that keep the codes spread
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_var.uniform_(0.5, 2.0)
            bn.running_mean.uniform_(-0.2, 0.2)
    net = rtn.from_model(model, sample_photos(8, 12, seed=0))
    assert {type(s.op) for s in net.steps} == {golden.Conv, golden.MaxPool, golden.Add, golden.AvgPool}
    assert any(s.op.depthwise for s in net.steps if isinstance(s.op, golden.Conv))
    codes = net.quantize_input(sample_photos(2, 12, seed=1))
    want = net.forward(codes)[0]
    for i in range(len(codes)):
        logits, reports = chain.run_image(net, codes[i:i + 1], isg_sim)
        assert torch.equal(logits, want[i])
        assert all(r["mismatches"] == 0 and sim_layer.model_agrees(r) for r in reports)
    assert want.unique().numel() > 1
