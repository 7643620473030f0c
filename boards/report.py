"""Build reports: resource use against the device, Fmax against the target, peak throughput.

Sources: nextpnr's ``--report`` JSON (placed cells per bel type with the device's totals,
achieved and constrained frequency per clock, critical paths) and Yosys' ``stat -json``
after synthesis (cell counts: LUTs and flip-flops separately, which the iCE40 logic cell
count merges). For Xilinx ``--synth-only`` builds only Yosys' counts exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BuildReport", "parse_nextpnr_report", "parse_yosys_stat", "make_report"]

# Yosys cell types per resource, per family (prefix match for flip-flops and LUTs).
_FF_PREFIX = {"ice40": ("SB_DFF",), "ecp5": ("TRELLIS_FF",), "xilinx": ("FD",)}
_LUT_PREFIX = {"ice40": ("SB_LUT4",), "ecp5": ("LUT4",), "xilinx": ("LUT",)}
_BRAM_CELLS = {"ice40": ("SB_RAM40_4K",), "ecp5": ("DP16KD", "PDPW16KD"),
               "xilinx": ("RAMB36E2", "RAMB18E2")}
_SPRAM_CELLS = {"ice40": ("SB_SPRAM256KA",)}

# nextpnr bel types per resource.
_NEXTPNR_BELS = {
    "ice40": {"lc": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM",
              "spram": "ICESTORM_SPRAM", "pll": "ICESTORM_PLL"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D",
             "bram": "DP16KD", "pll": "EHXPLLL"},
}


def parse_nextpnr_report(path):
    """``(utilization, fmax, critical_path)`` from nextpnr's ``--report`` JSON.

    ``utilization`` is ``{bel type: (used, available)}``; ``fmax`` is ``{clock: (achieved
    MHz, constraint MHz)}``; ``critical_path`` is ``{"clock", "from", "to", "delay_ns"}`` of
    the first reported path, or ``None``.
    """
    data = json.loads(Path(path).read_text())
    utilization = {name: (entry["used"], entry["available"])
                   for name, entry in data.get("utilization", {}).items()}
    fmax = {name: (entry["achieved"], entry["constraint"])
            for name, entry in data.get("fmax", {}).items()}
    critical = None
    paths = data.get("critical_paths") or []
    if paths and paths[0].get("path"):
        segments = paths[0]["path"]
        critical = {
            "clock": paths[0].get("from", ""),
            "from": segments[0]["from"]["cell"],
            "to": segments[-1]["to"]["cell"],
            "delay_ns": round(sum(segment["delay"] for segment in segments), 3),
        }
    return utilization, fmax, critical


def parse_yosys_stat(path):
    """``{cell type: count}`` of the top design from Yosys' ``stat -json`` output."""
    data = json.loads(Path(path).read_text())
    design = data.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:  # older Yosys: only per module
        cells = {}
        for module in data.get("modules", {}).values():
            for cell, count in module.get("num_cells_by_type", {}).items():
                cells[cell] = cells.get(cell, 0) + count
    return {cell: count for cell, count in cells.items() if not cell.startswith("$scopeinfo")}


def _count(cells, prefixes):
    return sum(count for cell, count in cells.items() if cell.startswith(tuple(prefixes)))


@dataclass
class BuildReport:
    """What a build produced and what it implies.

    Attributes
    ----------
    board, device, family : str
    config : dict
        The :class:`~qaccel.boards.base.BuildConfig` built (clock_hz the achieved one).
    resources : dict
        ``{name: {"used": int, "available": int or None}}``; names among ``LC``, ``LUT``,
        ``FF``, ``DSP``, ``BRAM``, ``SPRAM``, ``PLL``.
    dsp_name : str
        The cell ``DSP`` counts.
    clocks : dict
        ``{clock: {"fmax_mhz": float, "target_mhz": float, "met": bool}}`` (nextpnr).
    timing_met : bool or None
        ``None`` when no timing analysis ran (synthesis only).
    estimate : dict
        The pre-synthesis estimate (:mod:`~qaccel.boards.estimate`).
    critical_path : dict or None
    stages : list
        ``[{"stage": str, "seconds": float}]``.
    bitstream : str or None
    notes : list of str
    """
    board: str
    device: str
    family: str
    config: dict
    resources: dict
    dsp_name: str
    clocks: dict = field(default_factory=dict)
    timing_met: bool | None = None
    estimate: dict = field(default_factory=dict)
    critical_path: dict | None = None
    stages: list = field(default_factory=list)
    bitstream: str | None = None
    notes: list = field(default_factory=list)

    @property
    def fmax_mhz(self):
        """Lowest achieved frequency over the clocks (None without timing analysis)."""
        values = [clock["fmax_mhz"] for clock in self.clocks.values()]
        return min(values) if values else None

    @property
    def clock_hz(self):
        return self.config["clock_hz"]

    @property
    def build_seconds(self):
        return round(sum(stage["seconds"] for stage in self.stages), 1)

    def dsp_used(self):
        return self.resources.get("DSP", {}).get("used")

    def peak(self):
        """``{name: ops/s}``: INT8 MAC/s and binary op/s at the clock and at Fmax."""
        int8 = self.config["rows"] * self.config["cols"] if self.config["int8"] else 0
        binary = self.config["pe"] * self.config["simd"] if self.config["binary"] else 0
        result = {"int8_macs_per_s": int8 * self.clock_hz,
                  "binary_ops_per_s": binary * self.clock_hz}
        if self.fmax_mhz is not None:
            result["int8_macs_per_s_at_fmax"] = int8 * self.fmax_mhz * 1e6
            result["binary_ops_per_s_at_fmax"] = binary * self.fmax_mhz * 1e6
        return result

    def to_dict(self):
        return {
            "board": self.board, "device": self.device, "family": self.family,
            "config": self.config, "resources": self.resources, "dsp_name": self.dsp_name,
            "clocks": self.clocks, "fmax_mhz": self.fmax_mhz, "timing_met": self.timing_met,
            "peak": self.peak(), "estimate": self.estimate,
            "critical_path": self.critical_path, "stages": self.stages,
            "build_seconds": self.build_seconds, "bitstream": self.bitstream,
            "notes": self.notes,
        }

    def write(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def table(self):
        """The human summary printed after a build."""
        lines = [f"{self.board} ({self.device}) - {_config_text(self.config)}", ""]
        lines.append(f"  {'resource':<18} {'used':>8} {'of':>8} {'use':>6}  estimate")
        for name, entry in self.resources.items():
            used, available = entry["used"], entry.get("available")
            share = f"{100 * used / available:5.1f}%" if available else "     -"
            label = f"{name} ({self.dsp_name})" if name == "DSP" else name
            estimated = ""
            if name == "DSP" and "dsp" in self.estimate:
                estimated = str(self.estimate["dsp"])
            elif name in ("BRAM", "SPRAM") and name.lower() in self.estimate \
                    and self.estimate[name.lower()]:
                blocks = self.estimate[name.lower()]
                # iCE40 memories can only go to block RAM; on ECP5 and Xilinx Yosys puts
                # shallow ones in LUT RAM, so the estimate (every memory in BRAM) is a bound.
                estimated = (f"{blocks} (memories)" if self.family == "ice40"
                             else f"<= {blocks} (every memory in BRAM)")
            lines.append(f"  {label:<18} {used:>8} {available if available else '-':>8} "
                         f"{share:>6}  {estimated}".rstrip())
        lines.append("")
        target = self.clock_hz / 1e6
        if self.clocks:
            for name, clock in self.clocks.items():
                verdict = "PASS" if clock["met"] else "FAIL"
                lines.append(f"  clock {name}: Fmax {clock['fmax_mhz']:.2f} MHz, target "
                             f"{clock['target_mhz']:.2f} MHz: {verdict}")
        else:
            lines.append(f"  clock: {target:.2f} MHz target (no timing analysis in this flow)")
        peak = self.peak()
        if self.config["int8"]:
            text = f"  peak INT8: {_si(peak['int8_macs_per_s'])}MAC/s at {target:.2f} MHz"
            if "int8_macs_per_s_at_fmax" in peak:
                text += f" ({_si(peak['int8_macs_per_s_at_fmax'])}MAC/s at Fmax)"
            lines.append(text)
        if self.config["binary"]:
            text = f"  peak binary: {_si(peak['binary_ops_per_s'])}op/s at {target:.2f} MHz"
            if "binary_ops_per_s_at_fmax" in peak:
                text += f" ({_si(peak['binary_ops_per_s_at_fmax'])}op/s at Fmax)"
            lines.append(text)
        if self.critical_path:
            cp = self.critical_path
            lines.append(f"  critical path: {cp['delay_ns']:.2f} ns, {cp['from']} -> {cp['to']}")
        if self.stages:
            stages = ", ".join(f"{s['stage']} {s['seconds']:.1f} s" for s in self.stages)
            lines.append(f"  build time: {self.build_seconds:.1f} s ({stages})")
        if self.bitstream:
            lines.append(f"  bitstream: {self.bitstream}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _config_text(config):
    parts = []
    if config["int8"]:
        parts.append(f"INT8 {config['rows']}x{config['cols']} ({config['dsp_backend']})")
    if config["binary"]:
        parts.append(f"binary {config['pe']} PE x {config['simd']} SIMD")
    parts.append(f"{config['clock_hz'] / 1e6:g} MHz")
    parts.append(f"{config['baud']} baud")
    return ", ".join(parts)


def _si(value):
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}"
    return f"{value:.0f} "


def make_report(board, config, *, cells, nextpnr=None, estimate=None, stages=(),
                bitstream=None, notes=()):
    """Combine Yosys cell counts and (optionally) nextpnr's report into a :class:`BuildReport`.

    Parameters
    ----------
    board : Board
    config : BuildConfig
        As built (achieved clock).
    cells : dict
        :func:`parse_yosys_stat` result.
    nextpnr : tuple or None
        :func:`parse_nextpnr_report` result.
    """
    family = board.family
    totals = board.device_totals
    resources = {}
    utilization, fmax, critical = nextpnr if nextpnr is not None else ({}, {}, None)
    bels = _NEXTPNR_BELS.get(family, {})

    def from_bel(key, name):
        bel = bels.get(key)
        if bel and bel in utilization:
            used, available = utilization[bel]
            resources[name] = {"used": used, "available": available}
            return True
        return False

    if family == "ice40":
        from_bel("lc", "LC")
    if not from_bel("lut", "LUT"):
        resources["LUT"] = {"used": _count(cells, _LUT_PREFIX[family]),
                            "available": totals.get("lut")}
    if not from_bel("ff", "FF"):
        resources["FF"] = {"used": _count(cells, _FF_PREFIX[family]),
                           "available": totals.get("ff")}
    if not from_bel("dsp", "DSP"):
        resources["DSP"] = {"used": cells.get(board.dsp_name, 0),
                            "available": totals.get("dsp")}
    if not from_bel("bram", "BRAM"):
        resources["BRAM"] = {"used": _count(cells, _BRAM_CELLS.get(family, ())),
                             "available": totals.get("bram")}
    if totals.get("spram"):
        if not from_bel("spram", "SPRAM"):
            resources["SPRAM"] = {"used": _count(cells, _SPRAM_CELLS.get(family, ())),
                                  "available": totals.get("spram")}
    from_bel("pll", "PLL")

    clocks = {name: {"fmax_mhz": round(achieved, 2), "target_mhz": round(target, 2),
                     "met": achieved >= target}
              for name, (achieved, target) in fmax.items()}
    timing_met = None
    if nextpnr is not None:
        # decided on nextpnr's unrounded numbers
        timing_met = all(achieved >= target for achieved, target in fmax.values())
    return BuildReport(
        board=board.name, device=board.device, family=family, config=config.to_dict(),
        resources=resources, dsp_name=board.dsp_name, clocks=clocks, timing_met=timing_met,
        estimate=estimate.to_dict() if estimate is not None else {},
        critical_path=critical, stages=list(stages),
        bitstream=str(bitstream) if bitstream else None, notes=list(notes))
