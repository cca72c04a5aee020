"""Flow control shared by the fixed-latency units: one enable stalls a whole pipeline."""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream


def stall_control(m: Module, i: stream.Interface, o: stream.Interface, depth: int) -> Signal:
    """Flow control of a fixed-latency pipeline that stalls as a whole; returns its enable.

    Every register advances on `en = ~o.valid | o.ready`, so a beat leaves `depth` enabled
    cycles after it entered and bubbles travel like beats. `i.ready = en` is combinational from
    `o.ready`: full rate without skid buffers, at the cost of a ready path through chained units.
    """
    en = Signal()
    valid = Signal(depth)
    m.d.comb += [en.eq(~o.valid | o.ready), i.ready.eq(en), o.valid.eq(valid[-1])]
    with m.If(en):
        m.d.sync += valid.eq(Cat(i.valid, valid[:-1]))
    return en


def delay(m: Module, en, value, cycles: int, *, name: str, shape=None):
    """`value` delayed by `cycles` enabled cycles in reset-less registers (datapath only: the
    valid bits of `stall_control` are the only registers that need a reset)."""
    shape = value.shape() if shape is None else shape
    for k in range(cycles):
        reg = Signal(shape, name=f"{name}_{k}", reset_less=True)
        with m.If(en):
            m.d.sync += reg.eq(value)
        value = reg
    return value
