"""cocotb testbenches of the RTL in hw/, built and run through sim.runner."""
