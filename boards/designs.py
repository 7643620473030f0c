"""Design factories for board builds: :class:`~qaccel.boards.base.BuildConfig` -> component.

A factory is a callable ``factory(config) -> Component`` (the component has the byte-stream
port contract of :class:`qaccel.boards.core.BoardCore`). It may also have a
``memory_shapes(config) -> {name: (width, depth)}`` attribute (or, less precise,
``memory_bits(config) -> {name: bits}``), which the fit check uses instead of the
configuration's buffer sizes, and a ``min_logic_cells(config, family) -> (cells, what,
advice) or None`` attribute: a lower bound from measured builds, which the fit check compares with the
device's logic cells.
"""

from __future__ import annotations

__all__ = ["standin", "accelerator_top", "top_config"]


def standin(config):
    """:class:`qaccel.boards.standin.StandIn`: the bring-up design (registers, no memories)."""
    from .standin import StandIn

    return StandIn(config)


standin.memory_bits = lambda config: {}


def top_config(config):
    """The :class:`qaccel.hw.top.TopConfig` of a :class:`~qaccel.boards.base.BuildConfig`.

    Array shape, engines, backend, clock (rounded to whole hertz) and baud are taken over;
    buffer sizes left at 0 keep the top's defaults; ``config.options`` sets any other field.
    """
    from ..hw.top import TopConfig

    fields = {"rows": config.rows, "cols": config.cols, "backend": config.dsp_backend,
              "pe": config.pe, "simd": config.simd, "int8": config.int8,
              "binary": config.binary, "clock_hz": round(config.clock_hz),
              "baud": config.baud}
    for name in ("weights_bytes", "activations_bytes", "params_bytes", "outputs_bytes"):
        if getattr(config, name):
            fields[name] = getattr(config, name)
    fields.update(config.options)
    return TopConfig(**fields)


def accelerator_top(config):
    """:class:`qaccel.hw.top.AcceleratorTop` for ``config`` (the board core adds the UART)."""
    from ..hw.top import AcceleratorTop

    return AcceleratorTop(top_config(config))


#: Logic cells of the smallest iCE40 build of the top with the INT8 engine: a 1x2 array (2
#: products), 1 KiB buffers, 16-bit counters, no binary engine, the serial requantizer, no
#: hold registers or operand skid (YoWASP Yosys 0.70 + nextpnr-ice40, measured; docs/BOARDS.md).
ICE40_INT8_TOP_MIN_CELLS = 4229
#: Logic cells each further product adds at least: 2x4 -> 4x4 measured 65 per product
#: (accumulator, broadcast operand registers, output multiplexer; 2 KiB buffers, 32-bit
#: counters; 77 with the systolic skew), rounded down to stay a lower bound.
ICE40_INT8_CELLS_PER_PRODUCT = 64


#: Logic cells the smallest binary engine (1 PE x 8 SIMD) adds to the smallest INT8 top
#: above: that build (1x2 INT8 and 1 x 8 binary, 1 KiB buffers, 16-bit counters) packs into
#: 5331 cells, more than the UP5K's 5280, so the two engines never fit it together.
ICE40_BINARY_ENGINE_MIN_CELLS = 5331 - ICE40_INT8_TOP_MIN_CELLS


def _top_min_logic_cells(config, family):
    """A measured lower bound ``(cells, what, advice)`` on the top's logic cells, or ``None``."""
    if family == "ice40" and config.int8:
        products = config.rows * config.cols
        cells = ICE40_INT8_TOP_MIN_CELLS + ICE40_INT8_CELLS_PER_PRODUCT * max(products - 2, 0)
        what = (f"the accelerator top with a {config.rows}x{config.cols} INT8 engine (measured "
                f"floor: {ICE40_INT8_TOP_MIN_CELLS} cells for 2 products, "
                f"+{ICE40_INT8_CELLS_PER_PRODUCT} per product")
        if config.binary:
            cells += ICE40_BINARY_ENGINE_MIN_CELLS
            what += f", +{ICE40_BINARY_ENGINE_MIN_CELLS} for the smallest binary engine"
        return (cells, what + ")",
                "use the INT8 engine alone at 4x4 at most (--rows 4 --cols 4 --no-binary), "
                "the binary engine alone (--no-int8) or the stand-in (--design standin)")
    return None


accelerator_top.memory_bits = lambda config: top_config(config).memory_bits()
accelerator_top.min_logic_cells = _top_min_logic_cells
accelerator_top.memory_shapes = lambda config: top_config(config).memory_shapes()
