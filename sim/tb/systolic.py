"""Testbench of :class:`qaccel.hw.systolic.SystolicArray` against
:func:`qaccel.sw.golden.gemm_int8`, bit for bit.

Tiles are random ``M x K`` by ``K x N`` products (``M <= rows``, ``N <= cols``, any K >= 0),
sent as one ``cmd`` transfer, K activation vectors and K weight vectors. Lanes outside the
active rows/columns carry random garbage, which the array must ignore. Each tile's ``M``
output rows are compared, payload bit for bit, with the golden result (inactive lanes 0).

Parameters (``tb.params``): ``rows``, ``cols``, the payload field offsets (``k_offset``,
``m_offset``, ``n_offset``, ``row_offset``, ``last_offset``), the cycle model (``latency``,
``tile_spacing``, ``drain_bubbles``, ``row_interval``, ``dataflow``), ``max_k`` (which sets the
accumulators' width) and optionally ``report`` (a JSON file the throughput test writes its
measurements to, for ``bench/dsp_packing.py``) and ``throughput_k``.
"""

import json
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from qaccel.sim.streams import (StreamMonitor, StreamSink, StreamSource, periodic_pause,
                                random_pause)
from qaccel.sim.tbkit import TB, CycleBudgetExceeded, signed
from qaccel.sw import golden

CORNERS = np.array([-128, -127, -1, 0, 1, 127], dtype=np.int8)


def array_params(array, **extra):
    """Everything the testbench needs to know about ``array`` (field offsets, cycle model)."""
    out = array.out_layout
    params = {
        "rows": array.rows,
        "cols": array.cols,
        "k_offset": array.cmd_layout["k"].offset,
        "m_offset": array.cmd_layout["m"].offset,
        "n_offset": array.cmd_layout["n"].offset,
        "row_offset": out["row"].offset,
        "last_offset": out["last"].offset,
        "latency": array.latency,
        "tile_spacing": array.tile_spacing,
        "drain_bubbles": array.drain_bubbles,
        "row_interval": array.row_interval,
        "dataflow": array.dataflow,
        "output_buffer": array.output_buffer,
        "max_k": array.max_k,
    }
    params.update(extra)
    return params


@dataclass
class Tile:
    k: int
    m: int
    n: int
    a: np.ndarray   # (rows, k) int8, rows >= m: lanes >= m are garbage
    w: np.ndarray   # (k, cols) int8, lanes >= n are garbage

    def golden(self):
        return golden.gemm_int8(self.a[:self.m, :], self.w[:, :self.n])


class ArrayTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.rows, self.cols = p["rows"], p["cols"]
        self.cmd = StreamSource(dut, "cmd", self.clock)
        self.act = StreamSource(dut, "a", self.clock)
        self.wgt = StreamSource(dut, "w", self.clock)
        self.out = StreamSink(dut, "o", self.clock, callback=self._on_output)
        self.cmd_times = []
        self.out_times = []
        self.received = []
        self.cmd_monitor = StreamMonitor(dut, "cmd", self.clock,
                                         callback=lambda _: self.cmd_times.append(self.cycle))
        self.cycle = 0
        self.expected = []
        cocotb.start_soon(self._count_cycles())

    async def _count_cycles(self):
        while True:
            await RisingEdge(self.clock)
            self.cycle += 1

    def _on_output(self, payload):
        self.out_times.append(self.cycle)
        self.received.append(payload)

    # -- tiles -----------------------------------------------------------------------------

    def random_tile(self, k, m=None, n=None, corner_share=0.2, values=None):
        """A tile with random int8 operands (``corner_share`` of them corner values)."""
        m = int(self.rng.integers(1, self.rows + 1)) if m is None else m
        n = int(self.rng.integers(1, self.cols + 1)) if n is None else n
        a = self.rng.integers(-128, 128, size=(self.rows, k)).astype(np.int8)
        w = self.rng.integers(-128, 128, size=(k, self.cols)).astype(np.int8)
        for arr in (a, w):
            mask = self.rng.random(arr.shape) < corner_share
            arr[mask] = self.rng.choice(CORNERS, size=int(mask.sum()))
        if values is not None:   # fixed operand values in the active lanes
            a[:m, :] = values[0]
            w[:, :n] = values[1]
        return Tile(k, m, n, a, w)

    def encode_cmd(self, tile, m_field=None, n_field=None):
        p = self.params
        m_field = tile.m if m_field is None else m_field
        n_field = tile.n if n_field is None else n_field
        return (tile.k << p["k_offset"]) | (m_field << p["m_offset"]) | (n_field << p["n_offset"])

    @staticmethod
    def encode_vector(values):
        word = 0
        for lane, value in enumerate(values):
            word |= (int(value) & 0xFF) << (8 * lane)
        return word

    def expected_rows(self, tile):
        p = self.params
        result = tile.golden()
        rows = []
        for i in range(tile.m):
            word = 0
            for j in range(tile.n):
                word |= (int(result[i, j]) & 0xFFFFFFFF) << (32 * j)
            word |= i << p["row_offset"]
            word |= int(i == tile.m - 1) << p["last_offset"]
            rows.append(word)
        return rows

    def send(self, tile, **cmd_fields):
        self.cmd.send_nowait(self.encode_cmd(tile, **cmd_fields))
        self.act.send_nowait(*(self.encode_vector(tile.a[:, k]) for k in range(tile.k)))
        self.wgt.send_nowait(*(self.encode_vector(tile.w[k, :]) for k in range(tile.k)))
        self.expected.extend(self.expected_rows(tile))

    def describe(self, word):
        p = self.params
        lanes = [signed(word >> (32 * j), 32) for j in range(self.cols)]
        row = (word >> p["row_offset"]) & ((1 << (p["last_offset"] - p["row_offset"])) - 1)
        return f"row {row} last {(word >> p['last_offset']) & 1} data {lanes}"

    async def check_all(self, budget):
        """Wait for every expected row (``budget`` cycles at most) and compare."""
        try:
            await self.wait_until(lambda: len(self.received) >= len(self.expected), budget,
                                  f"{len(self.expected)} output rows")
        except CycleBudgetExceeded as exc:
            raise CycleBudgetExceeded(f"{exc} (received {len(self.received)})") from None
        await self.cycles(5)
        self.out.check()
        assert len(self.received) == len(self.expected), (
            f"{len(self.received)} rows received, {len(self.expected)} expected")
        for index, (got, want) in enumerate(zip(self.received, self.expected)):
            assert got == want, (f"output {index}: got {self.describe(got)}, "
                                 f"golden {self.describe(want)}")
        count = len(self.expected)
        self.received.clear()
        self.expected.clear()
        return count

    def budget(self, tiles, slowdown=1):
        p = self.params
        work = sum(max(t.k, 1) + p["drain_bubbles"] + p["tile_spacing"] + p["latency"]
                   + p["row_interval"] * t.m for t in tiles)
        return 100 + slowdown * work


@cocotb.test()
async def corner_tiles(dut):
    """K = 0, 1, 2, 7, 8, partial tiles, extreme operands (all -128, -128 x 127), a long K,
    back to back with no pauses (small K exercises the tile spacing)."""
    tb = ArrayTB(dut)
    await tb.reset()
    rows, cols = tb.rows, tb.cols
    tiles = [
        tb.random_tile(1, rows, cols),
        tb.random_tile(1, 1, 1),
        tb.random_tile(0, rows, cols),               # K = 0: a tile of zeros
        tb.random_tile(2, rows, 1),
        tb.random_tile(1, 1, cols),
        tb.random_tile(7, rows, cols, values=(-128, -128)),
        tb.random_tile(8, rows, cols, values=(-128, 127)),
        tb.random_tile(3, rows, cols, values=(127, -128)),
        tb.random_tile(5, rows, cols, corner_share=1.0),
        tb.random_tile(0, 1, cols),
        tb.random_tile(13, max(1, rows - 1), max(1, cols - 1)),
        # 2100 * 2**14 > 2**25: the accumulators' upper bits
        tb.random_tile(min(2100, tb.params["max_k"]), rows, cols, values=(-128, -128)),
        tb.random_tile(1, rows, cols, corner_share=1.0),
    ]
    if tb.params["max_k"] <= 8191:
        # the largest sums a narrow accumulator must hold, both signs, at K = max_k
        tiles.append(tb.random_tile(tb.params["max_k"], rows, cols, values=(-128, -128)))
        tiles.append(tb.random_tile(tb.params["max_k"], rows, cols, values=(-128, 127)))
    for tile in tiles:
        tb.send(tile)
    # m = 0 and n = 0 in the command mean the full array
    full = tb.random_tile(4, rows, cols)
    tb.send(full, m_field=0, n_field=0)
    tiles.append(full)
    count = await tb.check_all(tb.budget(tiles))
    assert count == sum(t.m for t in tiles)


@cocotb.test()
async def random_tiles_with_backpressure(dut):
    """Random tiles (K from 1 to 70, random M and N) with random pauses on all four streams."""
    tb = ArrayTB(dut)
    tb.cmd.set_pause(random_pause(tb.rng, 0.3))
    tb.act.set_pause(random_pause(tb.rng, 0.25))
    tb.wgt.set_pause(random_pause(tb.rng, 0.4))
    tb.out.set_pause(random_pause(tb.rng, 0.5))
    await tb.reset()
    tiles = []
    for _ in range(24):
        k = int(tb.rng.choice([1, 1, 2, 3, int(tb.rng.integers(4, 30)), int(tb.rng.integers(30, 71))]))
        tiles.append(tb.random_tile(k))
        tb.send(tiles[-1])
    await tb.check_all(tb.budget(tiles, slowdown=6))


@cocotb.test()
async def slow_consumer(dut):
    """The output takes one row every 4 cycles (like a requantizer): the array must stall
    without losing or reordering anything, with bursty operand streams."""
    tb = ArrayTB(dut)
    tb.out.set_pause(periodic_pause(1, 3))
    tb.act.set_pause(periodic_pause(5, 2))
    tb.wgt.set_pause(periodic_pause(3, 1))
    await tb.reset()
    tiles = [tb.random_tile(int(k)) for k in tb.rng.integers(1, 6, size=12)]
    tiles.append(tb.random_tile(40, tb.rows, tb.cols))
    for tile in tiles:
        tb.send(tile)
    await tb.check_all(tb.budget(tiles, slowdown=8))


@cocotb.test()
async def throughput(dut):
    """No pauses: one tile takes exactly the modelled cycles (K + fill/drain); back-to-back
    tiles run at one step per cycle."""
    tb = ArrayTB(dut)
    await tb.reset()
    p = tb.params
    k = p.get("throughput_k", 64)
    rows, cols = tb.rows, tb.cols
    # one isolated tile
    tile = tb.random_tile(k, rows, cols)
    tb.send(tile)
    await tb.check_all(tb.budget([tile]))
    single = tb.out_times[-1] - tb.cmd_times[-1]
    model = k + p["latency"] + p["row_interval"] * (rows - 1)   # SystolicArray.tile_cycles
    assert single == model, f"one {rows}x{k}x{cols} tile took {single} cycles, model {model}"
    overhead = single - k
    assert overhead <= 2 * rows + cols + 6, f"fill/drain overhead {overhead} cycles"
    # back-to-back tiles: the steady state is one step (rows x cols MACs) per cycle
    count = 6
    tiles = [tb.random_tile(k, rows, cols) for _ in range(count)]
    start = len(tb.cmd_times)
    for t in tiles:
        tb.send(t)
    await tb.check_all(tb.budget(tiles))
    stream_cycles = tb.out_times[-1] - tb.cmd_times[start]
    # SystolicArray.cycles_per_tile
    if p.get("dataflow") == "broadcast":   # the array waits while rows 0..m-2 are read
        per_tile = (k + p["drain_bubbles"] + p["row_interval"] * (rows - 1)
                    + (p.get("output_buffer") == "none"))   # ... and row m-1 without a buffer
    else:
        per_tile = (max(k + p["drain_bubbles"], p["tile_spacing"])
                    + (p["row_interval"] - 1) * (rows - 1))
    # the first tile's steps start at its command; each later tile adds per_tile
    stream_model = k + (count - 1) * per_tile + p["latency"] + p["row_interval"] * (rows - 1)
    assert stream_cycles == stream_model, f"{count} tiles: {stream_cycles} cycles, model {stream_model}"
    utilization = count * k * rows * cols / (rows * cols * stream_cycles)
    if k >= 64:
        assert utilization >= 0.9, f"utilization {utilization:.3f}"
    report = p.get("report")
    if report:
        with open(report, "w") as file:
            json.dump({"k": k, "single_tile_cycles": single, "stream_tiles": count,
                       "stream_cycles": stream_cycles,
                       "single_tile_utilization": k / single,
                       "stream_utilization": utilization}, file)


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset while tiles are in flight (operands half sent, rows draining), then a correct
    run: nothing from before the reset may come out after it."""
    tb = ArrayTB(dut)
    tb.out.set_pause(random_pause(tb.rng, 0.3))
    await tb.reset()
    for k in (40, 3, 25):
        tb.send(tb.random_tile(k))
    # wait until the array is busy: some rows out, operands still queued
    await tb.wait_until(lambda: tb.out.transfers >= 1, 500, "a first output row")
    assert tb.act.queue, "the reset must come while operands are still queued"
    await FallingEdge(tb.clock)   # leave the read-only phase before driving
    tb.cmd.clear()
    tb.act.clear()
    tb.wgt.clear()
    await tb.reset()
    # A reset may drop o.valid before its transfer: that is not a protocol error.
    tb.out.errors.clear()
    tb.received.clear()
    tb.expected.clear()
    tiles = [tb.random_tile(int(k)) for k in (1, 17, 2, 64)]
    for tile in tiles:
        tb.send(tile)
    await tb.check_all(tb.budget(tiles, slowdown=3))
