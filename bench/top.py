"""Resources of the accelerator top (hw/top.py) on the iCE40 UP5K, by Yosys synthesis.

Prints, per configuration, what ``synth_ice40 -dsp`` used: LUTs (SB_LUT4; 5,280 logic cells
on the UP5K), flip-flops, block RAMs (SB_RAM40_4K, 30 on the UP5K), SB_MAC16 (8 on the UP5K),
and the memory bits the configuration asks for
(``TopConfig.memory_bits()``). Placement is not run: this says whether a configuration can
fit, the board build (``qaccel.boards``) says whether it does.

Usage: ``python bench/top.py [name ...]`` (names from ``CONFIGS``; all by default). Each
synthesis takes a few minutes on one core.
"""

import sys
import time

from qaccel.hw.resources import synthesize
from qaccel.hw.top import AcceleratorTop, TopConfig

#: UP5K resources, for the percentages.
UP5K = {"luts": 5280, "ebr": 30, "dsps": 8}

CONFIGS = {
    # the default (simulation) configuration, on the iCE40 backend
    "default-ice40": TopConfig(backend="ice40"),
    # a configuration sized for the iCEBreaker: 1 KiB buffers, smaller binary maxima
    "icebreaker": TopConfig(backend="ice40", weights_bytes=1024, activations_bytes=1024,
                            params_bytes=512, outputs_bytes=1024, binary_max_k=256,
                            binary_max_n=32, max_thresholds=2, counter_width=32,
                            baud=1_000_000),
    # the INT8 engine alone
    "icebreaker-int8": TopConfig(backend="ice40", binary=False, weights_bytes=1024,
                                 activations_bytes=1024, params_bytes=512,
                                 outputs_bytes=1024, counter_width=32, baud=1_000_000),
}


def main(names):
    print(f"{'configuration':18} {'LUT4':>6} {'FF':>6} {'EBR':>4} {'MAC16':>5} "
          f"{'mem kbit':>8} {'yosys s':>7}")
    for name in names:
        config = CONFIGS[name]
        started = time.monotonic()
        result = synthesize(AcceleratorTop(config), "ice40")
        ebr = result.cells.get("SB_RAM40_4K", 0)
        kbits = sum(config.memory_bits().values()) / 1024
        print(f"{name:18} {result.luts:6d} {result.ffs:6d} {ebr:4d} {result.dsps:5d} "
              f"{kbits:8.1f} {time.monotonic() - started:7.0f}", flush=True)
        print(f"{'':18} {100 * result.luts / UP5K['luts']:5.0f}% {'':6} "
              f"{100 * ebr / UP5K['ebr']:3.0f}% {100 * result.dsps / UP5K['dsps']:4.0f}%",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(CONFIGS))
