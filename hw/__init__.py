"""qaccel gateware (Amaranth HDL 0.5). Needs the ``gateware`` extra."""
