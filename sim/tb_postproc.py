"""cocotb testbench of hw.postproc.BnUnit and ActUnit against ARCHITECTURE §3 and golden.

BnUnit: u = (S*M + B + 2^(F-1)) >> F for F from 1 to 62, S and M at their bounds, t near both
ends of its range, small, and on rounding ties (negative ones included); the reference is also
checked against golden.requantize: clamp(u + z, 0, 2^a-1) must equal golden's output code.
ActUnit: y = clamp(u + z, lo, hi) for plain, ReLU (lo = z) and ReLU6-like (lowered hi) bounds
from golden.activation_bounds, lo = hi, and u far outside the code range (full-width compare).
The tests of each unit are named bn_* and act_*: one simulator per unit runs its own.
"""

import cocotb
import numpy as np
import torch
from amaranth import unsigned

import golden
from hw.postproc import ActUnit, BnUnit
from sim import streams

TAG = unsigned(5)
SHIFTS = (1, 2, 3, 9, 16, 23, 31, 40, 55, 56, 57, 58, 61, 62)


def make_bn(params):
    return BnUnit(params, TAG)


def make_act(params):
    return ActUnit(params, TAG)


def signed_range(width):
    return -2 ** (width - 1), 2 ** (width - 1) - 1


def with_bounds(rng, width, shape):
    """Random signed values of `width` bits, a quarter of them at the bounds."""
    lo, hi = signed_range(width)
    values = rng.integers(lo, hi + 1, shape)
    return np.where(rng.random(shape) < 0.25, rng.choice([lo, hi], shape), values)


def bn_beats(rng, params, shift, n):
    """S, M, B [n, lanes] with t = S*M + B inside signed(t_width): a third of t uniform, a third
    small (u lands in the code range), a third on ties (2k+1)*2^(F-1) where those fit."""
    shape = (n, params.lanes)
    s = with_bounds(rng, params.acc_width, shape)
    m = with_bounds(rng, params.mult_width, shape)
    t_max = signed_range(params.t_width)[1] - 2 ** (params.acc_width + params.mult_width - 2)
    uniform = rng.integers(-t_max, t_max + 1, shape)
    small = 2 ** min(shift + params.a_bits + 1, params.t_width - 3)
    half = 2 ** (shift - 1)
    odd = (t_max // half - 1) // 2          # (2k+1)*half fits for k in -odd-1 .. odd
    ties = (2 * rng.integers(-odd - 1, odd + 1, shape) + 1) * half if half <= t_max else uniform
    t = np.choose(rng.integers(0, 3, shape), [uniform, rng.integers(-small, small, shape), ties])
    return s, m, t - s * m


def golden_codes(params, s, m, b, shift, zero_point):
    """golden.requantize beat by beat (a beat's lanes are the channels of its tables)."""
    codes = []
    for beat in zip(s, m, b):
        s_k, m_k, b_k = (torch.from_numpy(v) for v in beat)
        rq = golden.Requant(multiplier=m_k, offset=b_k, shift=shift, zero_point=zero_point,
                            bits=params.a_bits, lo=0, hi=2 ** params.a_bits - 1)
        codes.append(golden.requantize(s_k[None], rq)[0].numpy())
    return np.array(codes)


async def bn_stream(dut, unit, rng, shift, n, *, bubbles=0.0, stalls=0.0):
    params = unit.params
    dut.shift.value = shift
    s, m, b = bn_beats(rng, params, shift, n)
    u = (s * m + b + (1 << (shift - 1))) >> shift        # §3, exact in int64 (t_width <= 63)
    zero_point = int(rng.integers(0, 2 ** params.a_bits))
    y = np.clip(u + zero_point, 0, 2 ** params.a_bits - 1)
    assert np.array_equal(y, golden_codes(params, s, m, b, shift, zero_point)), f"F={shift}"
    return await streams.pipe_requant(dut, unit, rng, s, m, b, u, bubbles=bubbles, stalls=stalls)


@cocotb.test()
async def bn_full_rate(dut):
    """One beat per cycle, each out exactly `latency` cycles after it went in."""
    unit = make_bn(streams.dut_params())
    rng = await streams.reset(dut, unit)
    source, sink = await bn_stream(dut, unit, rng, 16, 300)
    streams.expect_full_rate(source, sink, unit.latency)


@cocotb.test()
async def bn_shifts(dut):
    """Every F from 1 to 62 that matters (tiny, around the t width, the maximum), with random
    bubbles and backpressure; F changes only while the unit is empty."""
    unit = make_bn(streams.dut_params())
    rng = await streams.reset(dut, unit)
    for shift in SHIFTS:
        await bn_stream(dut, unit, rng, shift, 60, bubbles=0.2, stalls=0.3)


def act_configs(params):
    """(zero_point, lo, hi): plain, ReLU and ReLU6-like (6.0 is 60 codes) bounds, and lo = hi."""
    top = 2 ** params.a_bits - 1
    return [(z, *golden.activation_bounds(activation, params.a_bits, z, 0.1))
            for z in (0, 3, top // 2, top) for activation in ("none", "relu", "relu6")
            ] + [(7, top // 3, top // 3)]


def act_inputs(rng, params, zero_point, lo, hi, n):
    """u [n, lanes]: a third uniform over signed(t_width), a third small, a third on edges
    (the u bounds and one code either side of lo and hi)."""
    shape = (n, params.lanes)
    u_lo, u_hi = signed_range(params.t_width)
    edges = [u_lo, u_lo + 1, u_hi - 1, u_hi, -1, 0, 1,
             *(bound - zero_point + d for bound in (lo, hi) for d in (-1, 0, 1))]
    small = 2 ** (params.a_bits + 1)
    return np.choose(rng.integers(0, 3, shape), [
        rng.integers(u_lo, u_hi + 1, shape), rng.integers(-small, small, shape),
        rng.choice(edges, shape)])


async def act_stream(dut, unit, rng, config, n, *, bubbles=0.0, stalls=0.0):
    zero_point, lo, hi = config
    dut.zero_point.value, dut.lo.value, dut.hi.value = config
    u = act_inputs(rng, unit.params, zero_point, lo, hi, n)
    y = np.minimum(np.maximum(u + zero_point, lo), hi)
    tags = rng.integers(0, 32, n).tolist()
    items = [{"u": u[k].tolist(), "tag": tags[k]} for k in range(n)]
    expected = [{"y": y[k].tolist(), "tag": tags[k]} for k in range(n)]
    return await streams.pipe(dut, unit, items, expected, rng=rng, bubbles=bubbles, stalls=stalls)


@cocotb.test()
async def act_full_rate(dut):
    """One beat per cycle, each out exactly `latency` cycles after it went in."""
    unit = make_act(streams.dut_params())
    rng = await streams.reset(dut, unit)
    source, sink = await act_stream(dut, unit, rng, act_configs(unit.params)[4], 300)
    streams.expect_full_rate(source, sink, unit.latency)


@cocotb.test()
async def act_clamps(dut):
    """Every clamp configuration, with random bubbles and backpressure."""
    unit = make_act(streams.dut_params())
    rng = await streams.reset(dut, unit)
    for config in act_configs(unit.params):
        await act_stream(dut, unit, rng, config, 40, bubbles=0.2, stalls=0.3)
