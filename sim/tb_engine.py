"""cocotb testbench of the engine harness: clock, reset, then wait for the command file to end.

All data moves through the harness's memories (sim/engine_harness.sv); the comparison with
golden happens in the calling process (sim/layer.py), which wrote the command file.
"""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

TIMEOUT_ENV = "PYIOSO_SIM_TIMEOUT_NS"


@cocotb.test()
async def run_commands(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    timeout = int(os.environ.get(TIMEOUT_ENV, 10 ** 10))
    await with_timeout(RisingEdge(dut.finished), timeout, "ns")
    await ClockCycles(dut.clk, 1)
