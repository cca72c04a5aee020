"""The engine's host port (ARCHITECTURE §6): decodes the command stream while the engine is
idle, holds the layer descriptor, and answers reads from OUT or the status and counter CSRs."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.controller import COUNT_BITS
from hw.host import ADDR_BITS, WORD_BITS, Csr, Space, command_layout, descriptor_layout

write_layout = data.StructLayout({"en": 1, "space": 3, "addr": ADDR_BITS, "data": WORD_BITS})


class HostPort(wiring.Component):
    """One command per cycle when idle and no response waits; one response per read.

    `write` carries every accepted write (the engine routes it by `space`); CSR writes load the
    descriptor or pulse `start`. A read addresses OUT through `out_addr`/`out_en` and answers
    with `out_data` one cycle later, or answers with a status or counter register.
    """

    def __init__(self):
        super().__init__({
            "cmd": In(stream.Signature(command_layout)), "resp": Out(stream.Signature(WORD_BITS)),
            "write": Out(write_layout), "start": Out(1), "desc": Out(descriptor_layout),
            "out_addr": Out(ADDR_BITS), "out_en": Out(1), "out_data": In(WORD_BITS),
            "busy": In(1), "done": In(1),
            "cycles": In(COUNT_BITS), "useful": In(COUNT_BITS), "stalls": In(COUNT_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cmd = self.cmd.payload
        resp_valid, resp_from_out, csr_value = Signal(), Signal(), Signal(WORD_BITS)
        accept = self.cmd.valid & self.cmd.ready
        m.d.comb += [
            self.cmd.ready.eq(~self.busy & (~resp_valid | self.resp.ready)),
            self.resp.valid.eq(resp_valid),
            self.resp.payload.eq(Mux(resp_from_out, self.out_data, csr_value)),
            self.out_addr.eq(cmd.addr), self.out_en.eq(accept & ~cmd.write),
            self.write.en.eq(accept & cmd.write), self.write.space.eq(cmd.space),
            self.write.addr.eq(cmd.addr), self.write.data.eq(cmd.data),
        ]
        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += resp_valid.eq(0)
        with m.If(self.write.en & (cmd.space == Space.CSR)):
            with m.Switch(cmd.addr):
                with m.Case(Csr.START):
                    m.d.comb += self.start.eq(1)
                for reg in Csr:
                    if reg.name.lower() in descriptor_layout.members:
                        with m.Case(reg):
                            m.d.sync += getattr(self.desc, reg.name.lower()).eq(cmd.data)
        with m.If(accept & ~cmd.write):
            m.d.sync += [resp_valid.eq(1), resp_from_out.eq(cmd.space == Space.OUT)]
            with m.Switch(cmd.addr):
                for reg, value in ((Csr.STATUS, self.done | (self.busy << 1)),
                                   (Csr.CYCLES, self.cycles), (Csr.BUSY, self.useful),
                                   (Csr.STALL, self.stalls)):
                    with m.Case(reg):
                        m.d.sync += csr_value.eq(value)
                with m.Default():
                    m.d.sync += csr_value.eq(0)
        return m
