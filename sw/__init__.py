"""Host side of qaccel: golden model, driver and quantization tools.

Importing this package (or anything below it) must never import Amaranth or cocotb:
the host driver installs with NumPy and pyserial only.
"""
