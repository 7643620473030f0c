"""qaccel: an open FPGA accelerator generator for quantized neural networks.

Subpackages
-----------
qaccel.sw
    Host side: golden model (the bit-exact specification), driver, quantization tools.
    Needs only NumPy and pyserial.
qaccel.hw
    Gateware in Amaranth HDL 0.5 (the ``gateware`` extra).
qaccel.sim
    Simulation harness and cocotb testbenches (the ``sim`` extra).
qaccel.boards
    Board definitions and bitstream builds (the ``build`` extra).
"""

__version__ = "0.1.0"
