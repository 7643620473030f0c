"""Host side of qaccel: golden model, wire protocol, driver and quantization tools.

Importing this package (or anything below it) never imports Amaranth or cocotb: the host
driver installs with NumPy and pyserial only.
"""

from .driver import Accelerator, LinkStats
from .errors import (QaccelDeviceError, QaccelError, QaccelLinkError, QaccelNotFoundError,
                     QaccelTimeoutError)

__all__ = ["Accelerator", "LinkStats", "QaccelError", "QaccelTimeoutError", "QaccelLinkError",
           "QaccelDeviceError", "QaccelNotFoundError"]
