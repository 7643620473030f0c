"""Testbench of :class:`qaccel.hw.binary.BinaryEngine` against the golden model.

Every result is compared bit for bit with ``golden.binary_gemm`` (raw mode) and
``golden.thresholds`` (threshold and binary modes). Weight and activation words carry random
garbage in their padding bits, which must never count. Unless a test measures throughput, all
four input streams get random idle cycles and the output random backpressure.

Parameters (``params``): ``pe``, ``simd``, ``max_k``, ``max_n``, ``max_t`` of the build;
optionally ``layers`` (list of ``[k, n, m, mode]``) and ``report`` (a JSON path) for
:func:`throughput`, which the bench uses to measure cycles per layer.
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from qaccel.sim.binary_words import (MODE_BINARY, MODE_RAW, MODE_THRESHOLDS, OP_LOAD_THRESHOLDS,
                                    OP_LOAD_WEIGHTS, OP_RUN, command, join_words, split_words,
                                    words_per_vector)
from qaccel.sim.streams import StreamSink, StreamSource, periodic_pause, random_pause
from qaccel.sim.tbkit import TB, signed
from qaccel.sw import golden

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: Cycles from the last fold to the engine going idle (pipeline, formatter, output register).
LATENCY = 8
MODE_NAMES = {MODE_RAW: "raw", MODE_THRESHOLDS: "thresholds", MODE_BINARY: "binary"}


class BinaryTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.pe, self.simd = p["pe"], p["simd"]
        self.max_k, self.max_n, self.max_t = p["max_k"], p["max_n"], p["max_t"]
        self.cmd = StreamSource(dut, "cmd", self.clock)
        self.w = StreamSource(dut, "w", self.clock)
        self.t = StreamSource(dut, "t", self.clock)
        self.a = StreamSource(dut, "a", self.clock)
        self.o = StreamSink(dut, "o", self.clock)
        self.out_width = max(32, self.simd)

    # ---- stimulus helpers -----------------------------------------------------------------
    def set_pauses(self, source_p, sink_p):
        for source in (self.cmd, self.w, self.t, self.a):
            source.set_pause(random_pause(self.rng, source_p) if source_p else None)
        self.o.set_pause(random_pause(self.rng, sink_p) if sink_p else None)

    def random_pauses(self):
        """Fresh random idle/backpressure probabilities for one scenario."""
        self.set_pauses(float(self.rng.choice([0.0, 0.2, 0.5])),
                        float(self.rng.choice([0.0, 0.3, 0.7])))

    def random_bits(self, rows, k):
        return golden.pack_bits(self.rng.choice(np.array([-1, 1], dtype=np.int8), (rows, k)))

    def words_with_garbage(self, packed, k):
        """``simd``-bit words of each row, with random bits in the padding of the last word."""
        rows = split_words(packed, k, self.simd)
        pad = words_per_vector(k, self.simd) * self.simd - k
        if pad:
            for row in rows:
                row[-1] |= int(self.rng.integers(0, 1 << pad)) << (self.simd - pad)
        return rows

    def queue_weights(self, w_bits, k):
        n = w_bits.shape[0]
        self.cmd.send_nowait(command(OP_LOAD_WEIGHTS, k=k, n=n))
        for row in self.words_with_garbage(w_bits, k):
            self.w.send_nowait(*row)

    def queue_thresholds(self, thresholds):
        n, t = thresholds.shape
        self.cmd.send_nowait(command(OP_LOAD_THRESHOLDS, n=n, t=t))
        self.t.send_nowait(*(int(v) & 0xFFFFFFFF for v in thresholds.reshape(-1)))

    def queue_run(self, a_bits, k, n, mode, t=0):
        m = a_bits.shape[0]
        self.cmd.send_nowait(command(OP_RUN, k=k, n=n, t=t, mode=mode, m=m))
        for row in self.words_with_garbage(a_bits, k):
            self.a.send_nowait(*row)
        return self.beats(m, n, mode)

    def beats(self, m, n, mode):
        return m * (words_per_vector(n, self.simd) if mode == MODE_BINARY else n)

    def budget(self, words, folds, beats):
        """Cycles allowed: generous for pauses up to 0.7, but finite."""
        return 40 * (words + folds + beats) + 2_000

    async def collect(self, count, budget):
        """Wait until ``count`` output beats are waiting, take them; returns [(data, last)]."""
        await self.wait_until(lambda: len(self.o.received) >= count, budget,
                              f"{count} output beats")
        beats = [self.o.received.popleft() for _ in range(count)]
        self.o.check()
        return [(beat & ((1 << self.out_width) - 1), beat >> self.out_width) for beat in beats]

    def decode(self, beats, m, n, mode):
        """Output beats of a run -> (M, N) int results, or (M, ceil(N/64)) packed bits."""
        per_vector = words_per_vector(n, self.simd) if mode == MODE_BINARY else n
        assert len(beats) == m * per_vector
        lasts = [last for _, last in beats]
        expected_lasts = ([0] * (per_vector - 1) + [1]) * m
        assert lasts == expected_lasts, f"last flags {lasts} != {expected_lasts}"
        values = [value for value, _ in beats]
        if mode == MODE_BINARY:
            rows = [values[i * per_vector:(i + 1) * per_vector] for i in range(m)]
            pad = per_vector * self.simd - n
            for row in rows:
                assert row[-1] >> (self.simd - pad) == 0, \
                    f"padding bits of a packed output are not 0: {row[-1]:#x}"
            return join_words(rows, n, self.simd)
        if mode == MODE_RAW:
            for value in values:
                raw = signed(value, self.out_width)
                assert raw == signed(value, 32), f"raw value {value:#x} not sign-extended"
            values = [signed(value, 32) for value in values]
        return np.array(values, dtype=np.int64).reshape(m, n)

    async def wait_idle(self, budget=200):
        await self.wait_until(lambda: not self.dut.busy.value and self.cmd.idle(), budget,
                              "engine idle")
        assert not self.dut.error.value, "error flag set by a valid command"

    # ---- whole layers -----------------------------------------------------------------------
    async def layer(self, a_bits, w_bits, k, mode, thresholds=None, what=""):
        """Load a layer, run it, and compare with the golden model. Returns the output."""
        m, n = a_bits.shape[0], w_bits.shape[0]
        t = 0
        self.queue_weights(w_bits, k)
        if thresholds is not None:
            self.queue_thresholds(thresholds)
            t = thresholds.shape[1]
        beats = self.queue_run(a_bits, k, n, mode, t)
        words = words_per_vector(k, self.simd)
        folds = m * words * -(-n // self.pe)
        got = self.decode(
            await self.collect(beats, self.budget(words * (n + m) + n * t, folds, beats)),
            m, n, mode)
        expected = expected_output(a_bits, w_bits, k, mode, thresholds)
        label = f"{what} K={k} N={n} M={m} mode={MODE_NAMES[mode]} T={t}"
        if not np.array_equal(got, expected):
            bad = np.argwhere(got != expected)[:5]
            raise AssertionError(f"{label}: mismatch at {bad.tolist()}: got "
                                 f"{[got[tuple(i)] for i in bad]}, expected "
                                 f"{[expected[tuple(i)] for i in bad]}")
        self.log.info("%s: ok", label)
        await self.wait_idle()
        return got

    def thresholds_near(self, dots, t):
        """(N, t) thresholds drawn from the accumulator values themselves (ties), +-1."""
        n = dots.shape[1]
        picks = dots[self.rng.integers(0, dots.shape[0], (n, t)), np.arange(n)[:, None]]
        return picks + self.rng.integers(-1, 2, (n, t))


def expected_output(a_bits, w_bits, k, mode, thresholds):
    dots = golden.binary_gemm(a_bits, w_bits, k)
    if mode == MODE_RAW:
        return dots.astype(np.int64)
    counts = golden.thresholds(dots, thresholds)
    if mode == MODE_THRESHOLDS:
        return counts.astype(np.int64)
    return golden.pack_bits(np.where(counts >= 1, 1, -1))


def patterned(rows, k, simd, start=0):
    """Corner rows: all +1, all -1, alternating both ways, and blocks of simd (in turn,
    beginning with pattern ``start``)."""
    index = np.arange(k)
    patterns = [np.ones(k), -np.ones(k), np.where(index % 2, 1, -1), np.where(index % 2, -1, 1),
                np.where((index // simd) % 2, 1, -1)]
    chosen = [patterns[(start + i) % len(patterns)] for i in range(rows)]
    return golden.pack_bits(np.array(chosen, dtype=np.int8).reshape(rows, k))


@cocotb.test()
async def corner_layers(dut):
    """K = 1, simd, simd + 1, max_k; N = 1, a multiple of pe, not a multiple of pe, max_n;
    all +1, all -1, alternating rows against each other; every output mode."""
    tb = BinaryTB(dut)
    await tb.reset()
    pe, simd = tb.pe, tb.simd
    shapes = [(1, 1), (1, pe + 1), (simd, pe), (simd + 1, 2 * pe + 1), (2 * simd - 1, 1),
              (tb.max_k, tb.max_n), (tb.max_k - 1, tb.max_n - 1), (tb.max_k, pe - 1 or 1)]
    for index, (k, n) in enumerate(shapes):
        k, n = min(k, tb.max_k), min(n, tb.max_n)
        tb.random_pauses()
        # every activation pattern against weight rows of every pattern (a different first
        # one per shape, so that N = 1 layers see several) and random rows
        a_bits = np.concatenate([patterned(5, k, simd), tb.random_bits(2, k)])
        w_bits = np.concatenate([patterned(min(n, 5), k, simd, start=index),
                                 tb.random_bits(max(n - 5, 0), k)])
        await tb.layer(a_bits, w_bits, k, MODE_RAW, what="corner")
        dots = golden.binary_gemm(a_bits, w_bits, k)
        t = int(tb.rng.integers(1, tb.max_t + 1))
        await tb.layer(a_bits, w_bits, k, MODE_THRESHOLDS, tb.thresholds_near(dots, t),
                       what="corner")
        await tb.layer(a_bits, w_bits, k, MODE_BINARY, tb.thresholds_near(dots, 1),
                       what="corner")


@cocotb.test()
async def threshold_ties(dut):
    """Thresholds exactly at the accumulator values, one off, at +-K, and beyond the
    accumulator range up to the int32 limits (clamped on load: no comparison may change)."""
    tb = BinaryTB(dut)
    await tb.reset()
    tb.set_pauses(0.3, 0.3)
    k = min(tb.max_k, 2 * tb.simd + 3)
    n = min(tb.max_n, 2 * tb.pe + 1)
    a_bits, w_bits = tb.random_bits(6, k), tb.random_bits(n, k)
    dots = golden.binary_gemm(a_bits, w_bits, k)
    for offset in (0, 1, -1):
        thresholds = dots[tb.rng.integers(0, 6, (n, tb.max_t)), np.arange(n)[:, None]] + offset
        await tb.layer(a_bits, w_bits, k, MODE_THRESHOLDS, thresholds, what=f"ties{offset:+d}")
        await tb.layer(a_bits, w_bits, k, MODE_BINARY, thresholds[:, :1], what=f"ties{offset:+d}")
    extremes = np.array([INT32_MIN, INT32_MAX, -k, k, k + 1, -k - 1, -tb.max_k - 1,
                         tb.max_k + 1, tb.max_k + 2, 0], dtype=np.int64)
    for _ in range(3):
        thresholds = tb.rng.choice(extremes, (n, tb.max_t))
        await tb.layer(a_bits, w_bits, k, MODE_THRESHOLDS, thresholds, what="extremes")
        await tb.layer(a_bits, w_bits, k, MODE_BINARY, thresholds[:, :1], what="extremes")


@cocotb.test()
async def random_layers(dut):
    """Seeded random layers, modes and thresholds, under random idle cycles on every input
    stream and random backpressure on the output."""
    tb = BinaryTB(dut)
    await tb.reset()
    for _ in range(int(tb.params.get("random_layers", 25))):
        k = int(tb.rng.integers(1, tb.max_k + 1))
        n = int(tb.rng.integers(1, tb.max_n + 1))
        m = int(tb.rng.integers(1, 5))
        mode = int(tb.rng.choice([MODE_RAW, MODE_THRESHOLDS, MODE_BINARY]))
        tb.set_pauses(float(tb.rng.uniform(0, 0.6)), float(tb.rng.uniform(0, 0.8)))
        a_bits, w_bits = tb.random_bits(m, k), tb.random_bits(n, k)
        thresholds = None
        if mode != MODE_RAW:
            t = 1 if mode == MODE_BINARY else int(tb.rng.integers(1, tb.max_t + 1))
            thresholds = tb.rng.integers(-k - 1, k + 2, (n, t))
        await tb.layer(a_bits, w_bits, k, mode, thresholds, what="random")


@cocotb.test()
async def chained_layers(dut):
    """Binary -> binary -> raw: each run's packed output words, unchanged, are the next run's
    input; the final result must equal the golden three-layer network."""
    tb = BinaryTB(dut)
    await tb.reset()
    tb.set_pauses(0.3, 0.5)
    m = 4
    dims = [min(tb.max_k, 3 * tb.simd + 2), min(tb.max_n, tb.max_k, 3 * tb.pe + 1),
            min(tb.max_n, tb.max_k, 2 * tb.pe + 1), min(tb.max_n, 5)]
    x = tb.random_bits(m, dims[0])
    weights = [tb.random_bits(dims[i + 1], dims[i]) for i in range(3)]
    thresholds = [tb.rng.integers(-2, 3, (dims[i + 1], 1)) for i in range(2)]

    # Golden network, on ±1 values.
    h = x
    for i in range(2):
        h = golden.pack_bits(np.where(
            golden.thresholds(golden.binary_gemm(h, weights[i], dims[i]), thresholds[i]) >= 1,
            1, -1))
    expected = golden.binary_gemm(h, weights[2], dims[2])

    # Hardware: feed the raw output words of one run as the input words of the next.
    words = tb.words_with_garbage(x, dims[0])
    for i in range(3):
        mode = MODE_BINARY if i < 2 else MODE_RAW
        tb.queue_weights(weights[i], dims[i])
        if i < 2:
            tb.queue_thresholds(thresholds[i])
        n = dims[i + 1]
        tb.cmd.send_nowait(command(OP_RUN, k=dims[i], n=n, t=1 if i < 2 else 0, mode=mode,
                                   m=m))
        for row in words:
            tb.a.send_nowait(*row)
        beats = await tb.collect(tb.beats(m, n, mode), tb.budget(
            m * len(words[0]) + n * len(words[0]), m * len(words[0]) * n, m * n))
        per_vector = words_per_vector(n, tb.simd)
        values = [value for value, _ in beats]
        words = [values[j * per_vector:(j + 1) * per_vector] for j in range(m)]
        got = tb.decode(beats, m, n, mode)
        await tb.wait_idle()
    assert np.array_equal(got, expected), f"chained result {got} != golden {expected}"


@cocotb.test()
async def invalid_commands(dut):
    """Out-of-range commands are consumed, ignored, set the sticky error flag, and touch no
    data stream; reset clears the flag and the engine still computes correctly."""
    tb = BinaryTB(dut)
    k, n = tb.max_k, tb.max_n
    bad = [
        command(OP_LOAD_WEIGHTS, k=0, n=n), command(OP_LOAD_WEIGHTS, k=k + 1, n=n),
        command(OP_LOAD_WEIGHTS, k=k, n=0), command(OP_LOAD_WEIGHTS, k=k, n=n + 1),
        command(OP_LOAD_THRESHOLDS, n=n, t=0), command(OP_LOAD_THRESHOLDS, n=n, t=tb.max_t + 1),
        command(OP_LOAD_THRESHOLDS, n=n + 1, t=1),
        command(OP_RUN, k=k, n=n, t=2, mode=MODE_BINARY, m=1),
        command(OP_RUN, k=k, n=n, t=0, mode=MODE_BINARY, m=1),
        command(OP_RUN, k=k, n=n, t=0, mode=MODE_THRESHOLDS, m=1),
        command(OP_RUN, k=k, n=n, t=tb.max_t + 1, mode=MODE_THRESHOLDS, m=1),
        command(OP_RUN, k=k + 1, n=n, mode=MODE_RAW, m=1),
        command(OP_RUN, k=k, n=0, mode=MODE_RAW, m=1),
        command(OP_RUN, k=k, n=n, mode=3, m=1), command(3, k=k, n=n, t=1, m=1),
    ]
    for word in bad:
        await tb.reset()
        assert not dut.error.value, "reset did not clear the error flag"
        for source in (tb.w, tb.t, tb.a):
            source.clear()
            source.send_nowait(1)
        taken = [source.transfers for source in (tb.w, tb.t, tb.a)]
        tb.cmd.send_nowait(word)
        await tb.cmd.wait_idle(20)
        await tb.wait_until(lambda: dut.error.value and not dut.busy.value, 20,
                            f"error flag for command {word:#x}")
        await ClockCycles(tb.clock, 20)
        assert [source.transfers for source in (tb.w, tb.t, tb.a)] == taken, \
            f"command {word:#x} was ignored but consumed data"
        assert tb.o.transfers == 0
    for source in (tb.w, tb.t, tb.a):
        source.clear()
    await tb.reset()
    tb.set_pauses(0.2, 0.2)
    kk, nn = min(k, tb.simd + 1), min(n, tb.pe + 1)
    await tb.layer(tb.random_bits(2, kk), tb.random_bits(nn, kk), kk, MODE_RAW, what="after")
    # A run of zero vectors is valid and does nothing.
    tb.cmd.send_nowait(command(OP_RUN, k=kk, n=nn, mode=MODE_RAW, m=0))
    await tb.wait_idle()
    assert tb.o.transfers == 2 * nn


@cocotb.test()
async def throughput(dut):
    """Without pauses a run takes M * NF * SF cycles plus a short latency: one fold per cycle,
    also across vectors; results are checked too. Periodic output backpressure then freezes
    the datapath without losing anything."""
    tb = BinaryTB(dut)
    await tb.reset()
    pe, simd = tb.pe, tb.simd
    default_layers = [
        [tb.max_k, tb.max_n, 3, MODE_BINARY],
        [min(tb.max_k, (pe + 1) * simd), tb.max_n, 2, MODE_RAW],
        [tb.max_k, min(tb.max_n, pe), 4, MODE_THRESHOLDS],
    ]
    report = []
    for k, n, m, mode in tb.params.get("layers", default_layers):
        sf, nf = words_per_vector(k, simd), -(-n // pe)
        a_bits, w_bits = tb.random_bits(m, k), tb.random_bits(n, k)
        t = 0 if mode == MODE_RAW else 1
        thresholds = tb.rng.integers(-k, k + 1, (n, 1)) if t else None
        tb.queue_weights(w_bits, k)
        if t:
            tb.queue_thresholds(thresholds)
        await tb.wait_idle(budget=10 * (n * sf + n) + 100)
        # all activations ready before the run starts: the source is never the bottleneck
        tb.a.send_nowait(*[word for row in tb.words_with_garbage(a_bits, k) for word in row])
        tb.cmd.send_nowait(command(OP_RUN, k=k, n=n, t=t, mode=mode, m=m))
        await RisingEdge(tb.clock)
        await tb.wait_until(lambda: tb.dut.busy.value, 10, "run start")
        beats = tb.beats(m, n, mode)
        cycles = await tb.wait_until(lambda: not tb.dut.busy.value,
                                     10 * m * sf * nf + 10 * beats + 100, "run end")
        got = tb.decode(await tb.collect(beats, 1), m, n, mode)
        assert np.array_equal(got, expected_output(a_bits, w_bits, k, mode, thresholds))
        folds = m * sf * nf
        useful = m * n * k
        report.append({"pe": pe, "simd": simd, "k": k, "n": n, "m": m,
                       "mode": MODE_NAMES[mode], "folds": folds, "cycles": cycles,
                       "useful_ops": useful, "utilization": useful / (pe * simd * cycles)})
        tb.log.info("K=%d N=%d M=%d %s: %d folds in %d cycles", k, n, m, MODE_NAMES[mode],
                    folds, cycles)
        # One fold per cycle plus the pipeline latency, unless the formatter is the
        # bottleneck: raw/threshold values leave one per cycle (pe + 1 cycles per group of
        # pe), and a packed word can cost one stall cycle when groups arrive every cycle.
        if mode == MODE_BINARY:
            keeps_up = sf >= 2 and pe <= simd
            bound = folds + (0 if keeps_up else m * words_per_vector(n, simd) * -(-pe // simd))
        else:
            bound = m * nf * max(sf, pe + 1)
        bound += LATENCY + pe + 1  # the last group drains through the serializer
        assert cycles <= bound, f"{cycles} cycles for {folds} folds (bound {bound})"
    if "report" in tb.params:
        with open(tb.params["report"], "w") as handle:
            json.dump(report, handle)

    # Periodic backpressure on the output only: the pipeline must freeze, not drop.
    tb.o.set_pause(periodic_pause(2, 5))
    k, n = min(tb.max_k, 2 * simd), tb.max_n
    await tb.layer(tb.random_bits(3, k), tb.random_bits(n, k), k, MODE_RAW, what="frozen")
