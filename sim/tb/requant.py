"""Testbench of :class:`qaccel.hw.requant.Requantizer` and
:class:`qaccel.hw.requant_serial.SerialRequantizer` against ``golden.requantize``.

Every result is compared bit for bit with
``golden.requantize(wrap32(acc + bias), m0, shift, zp_out, act_min, act_max)``. The expected
value of an accumulator is derived from what the design actually saw: passive monitors log
every transfer on ``i`` and on ``param`` with its clock cycle, and an accumulator uses the
last parameters written to its channel in a transfer *before* the one that accepted it (the
documented rule). So the tests may write parameters at any time, even while traffic flows.

``params`` (from the pytest wrapper): ``channels``, ``mult_cycles`` (``"serial"`` for the
serial requantizer), ``tag_width``.
"""

import cocotb
import numpy as np
from amaranth import Shape
from cocotb.triggers import ReadOnly, RisingEdge

from qaccel.hw.requant import Requantizer, requant_layouts
from qaccel.hw.requant_serial import SerialRequantizer
from qaccel.sim.streams import StreamMonitor, StreamSink, StreamSource, periodic_pause, \
    random_pause
from qaccel.sim.tbkit import TB, signed
from qaccel.sw import golden

INT32_MIN = golden.INT32_MIN
INT32_MAX = golden.INT32_MAX


def wrap32(value):
    """int32 two's complement wrap of an integer array (int64 arithmetic)."""
    value = np.asarray(value, dtype=np.int64)
    return ((value - INT32_MIN) & 0xFFFF_FFFF) + INT32_MIN


def pack(layout, **values):
    """Payload integer of a ``data.StructLayout`` from field values (missing fields are 0)."""
    word = 0
    for name, field in layout:
        width = Shape.cast(field.shape).width
        word |= (int(values.get(name, 0)) & ((1 << width) - 1)) << field.offset
    return word


def unpack(layout, word):
    """Field values of a payload integer (signed fields read as two's complement)."""
    fields = {}
    for name, field in layout:
        shape = Shape.cast(field.shape)
        value = (word >> field.offset) & ((1 << shape.width) - 1)
        fields[name] = signed(value, shape.width) if shape.signed and shape.width else value
    return fields


# ---- random parameters and accumulators ---------------------------------------------------

def random_multipliers(rng, count):
    """(m0, shift) per channel: mostly ``quantize_multiplier`` of log-uniform scales in
    [1e-6, 10], plus arbitrary m0 with arbitrary shifts and large positive shifts."""
    scales = np.exp(rng.uniform(np.log(1e-6), np.log(10.0), count))
    m0, shift = golden.quantize_multiplier(scales)
    m0 = np.asarray(m0, dtype=np.int64).reshape(count)
    shift = np.asarray(shift, dtype=np.int64).reshape(count)
    kind = rng.integers(0, 5, count)
    anything = kind == 3  # any m0 in [0, 2**31), any shift
    m0[anything] = rng.integers(0, 2**31, anything.sum())
    shift[anything] = rng.integers(golden.SHIFT_MIN, golden.SHIFT_MAX + 1, anything.sum())
    left = kind == 4  # normalised m0 with a left shift (saturation territory)
    m0[left] = rng.integers(2**30, 2**31, left.sum())
    shift[left] = rng.integers(1, golden.SHIFT_MAX + 1, left.sum())
    return m0, shift


def random_biases(rng, count):
    """Small (GEMM-like), full-range and extreme biases."""
    bias = rng.integers(INT32_MIN, INT32_MAX + 1, count, dtype=np.int64)
    small = rng.random(count) < 0.5
    bias[small] >>= rng.integers(8, 31, small.sum())
    extreme = rng.random(count) < 0.15
    bias[extreme] = rng.choice([INT32_MIN, INT32_MAX, -1, 0, 1], extreme.sum())
    return bias


def random_accumulators(rng, count):
    """Accumulators of every magnitude (log-uniform bit length) plus the int32 extremes."""
    acc = rng.integers(INT32_MIN, INT32_MAX + 1, count, dtype=np.int64)
    acc >>= rng.integers(0, 32, count)
    extreme = rng.random(count) < 0.05
    acc[extreme] = rng.choice([INT32_MIN, INT32_MAX, 0, 1, -1], extreme.sum())
    return acc


def saturation_boundaries(shift):
    """acc' values around the edge of int32 after ``acc' << shift`` (shift > 0)."""
    edge = 1 << (31 - shift)
    return [edge - 1, edge, edge + 1, -edge, -edge - 1, -edge + 1]


class Design:
    """What the testbench needs to know of the design under test (layouts, timing)."""

    def __init__(self, channels, mult_cycles, tag_width):
        self.channels = channels
        self.tag_width = tag_width
        self.input_layout, self.param_layout, self.output_layout = \
            requant_layouts(channels, tag_width)
        self.serial = mult_cycles == "serial"
        if self.serial:   # the largest values, for budgets; timing(shift) is exact
            self.timing = SerialRequantizer.timing
            self.cycles_per_result, self.latency = SerialRequantizer.timing_bounds()[1]
        else:
            self.cycles_per_result, self.latency = Requantizer.timing(mult_cycles)


# ---- the testbench ------------------------------------------------------------------------

PAUSES = {
    "none": {},
    "random": {"i": 0.3, "o": 0.4, "param": 0.5},
    "heavy_out": {"i": 0.1, "o": 0.85, "param": 0.3},
    "bursty": {"i": (2, 3), "o": (3, 2), "param": (1, 4)},
}


class RequantTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.design = Design(self.params["channels"], self.params["mult_cycles"],
                             self.params.get("tag_width", 0))
        self.channels = self.design.channels
        self.cycle = 0
        cocotb.start_soon(self._count_cycles())
        self.source = StreamSource(dut, "i", self.clock)
        self.param_source = StreamSource(dut, "param", self.clock)
        self.sink = StreamSink(dut, "o", self.clock)
        # (cycle, fields, layer) of every accepted accumulator; (cycle, fields) of writes
        self.inputs = []
        self.writes = []
        self.input_monitor = StreamMonitor(dut, "i", self.clock, callback=self._on_input)
        self.param_monitor = StreamMonitor(dut, "param", self.clock, callback=self._on_write)
        self.checked = 0
        self._drive_layer(0, -128, 127)

    async def _count_cycles(self):
        while True:
            await RisingEdge(self.clock)
            self.cycle += 1

    def _on_input(self, payload):
        self.inputs.append((self.cycle, unpack(self.design.input_layout, payload), self.layer))

    def _on_write(self, payload):
        self.writes.append((self.cycle, unpack(self.design.param_layout, payload)))

    def set_pauses(self, name):
        for prefix, model in (("i", self.source), ("o", self.sink),
                              ("param", self.param_source)):
            pause = PAUSES[name].get(prefix)
            if pause is None:
                model.set_pause(None)
            elif isinstance(pause, tuple):
                model.set_pause(periodic_pause(*pause))
            else:
                model.set_pause(random_pause(self.rng, pause))

    async def set_layer(self, zp_out, act_min, act_max):
        """Layer-wide registers; change them only while nothing is in flight."""
        await RisingEdge(self.clock)  # callers may be in the read-only phase
        self._drive_layer(zp_out, act_min, act_max)

    def _drive_layer(self, zp_out, act_min, act_max):
        self.layer = (int(zp_out), int(act_min), int(act_max))
        self.dut.zp_out.value = int(zp_out) & 0xFF
        self.dut.act_min.value = int(act_min) & 0xFF
        self.dut.act_max.value = int(act_max) & 0xFF

    def write_params(self, channels, bias, m0, shift):
        self.param_source.send_nowait(*(
            pack(self.design.param_layout, channel=c, bias=b, m0=m, shift=s)
            for c, b, m, s in zip(channels, bias, m0, shift)))

    async def write_all_params(self, bias, m0, shift, budget=None):
        """Write every channel and wait until the writes are done."""
        self.write_params(range(self.channels), bias, m0, shift)
        await self.param_source.wait_idle(budget or 20 * self.channels + 50)

    def send(self, acc, channel, last=None, tag=None):
        count = len(acc)
        last = np.zeros(count, dtype=np.int64) if last is None else last
        tag = np.zeros(count, dtype=np.int64) if tag is None else tag
        self.source.send_nowait(*(
            pack(self.design.input_layout, acc=a, channel=c, last=l, tag=t)
            for a, c, l, t in zip(acc, channel, last, tag)))

    def budget(self, count):
        """Cycle budget for ``count`` results under the worst pause setting."""
        return 12 * (self.design.cycles_per_result + 2) * count + 20 * self.design.latency + 200

    def expected(self, inputs):
        """Expected output fields of logged inputs, from the logged parameter writes."""
        writes = sorted(self.writes, key=lambda entry: entry[0])
        current = {}
        rows = []
        w = 0
        for cycle, fields, layer in inputs:
            while w < len(writes) and writes[w][0] < cycle:  # strictly before the input
                current[writes[w][1]["channel"]] = writes[w][1]
                w += 1
            p = current.get(fields["channel"])
            assert p is not None, f"channel {fields['channel']} used before its first write"
            rows.append((fields["acc"], p["bias"], p["m0"], p["shift"], *layer))
        rows = np.array(rows, dtype=np.int64).reshape(-1, 7)
        values = np.zeros(len(rows), dtype=np.int64)
        for layer in {tuple(r[4:]) for r in rows}:
            sel = np.all(rows[:, 4:] == layer, axis=1)
            acc, bias, m0, shift = rows[sel, 0], rows[sel, 1], rows[sel, 2], rows[sel, 3]
            values[sel] = golden.requantize(wrap32(acc + bias), m0, shift, *layer)
        return rows, values

    async def check(self, budget=None):
        """Wait for the results of everything sent so far and compare them; returns count."""
        await self.source.wait_idle(budget or self.budget(len(self.source.queue) + 1))
        target = len(self.inputs)
        pending = target - self.checked
        await self.sink.wait_count(self.sink_base + target, budget or self.budget(pending))
        inputs = self.inputs[self.checked:target]
        rows, values = self.expected(inputs)
        got = [unpack(self.design.output_layout, self.sink.received.popleft())
               for _ in range(pending)]
        bad = []
        for k, ((_, fields, _), out) in enumerate(zip(inputs, got)):
            want = {"value": int(values[k]), "channel": fields["channel"],
                    "last": fields["last"]}
            if self.design.tag_width:
                want["tag"] = fields["tag"]
            if out != want:
                acc, bias, m0, shift, zp, lo, hi = (int(v) for v in rows[k])
                bad.append(f"#{self.checked + k}: acc={acc} bias={bias} m0={m0} "
                           f"shift={shift} zp={zp} clamp=[{lo},{hi}] -> got {out}, "
                           f"expected {want}")
        assert not bad, f"{len(bad)} of {pending} results wrong:\n" + "\n".join(bad[:10])
        self.sink.check()
        self.input_monitor.check()
        self.param_monitor.check()
        self.checked = target
        return pending

    async def start(self):
        await self.reset()
        self.sink_base = self.sink.transfers


async def random_setup(tb):
    m0, shift = random_multipliers(tb.rng, tb.channels)
    await tb.write_all_params(random_biases(tb.rng, tb.channels), m0, shift)
    return shift


# ---- tests --------------------------------------------------------------------------------

LAYERS = [(0, -128, 127), (-128, -128, 127), (127, -128, 127), (5, 5, 127),  # ReLU
          (-7, -20, 33), (0, 0, 0), (-3, -128, -3), (100, 50, 60)]


@cocotb.test()
async def corner_values(dut):
    """INT32 extremes, saturation boundaries, extreme multipliers, shifts and biases."""
    tb = RequantTB(dut)
    await tb.start()
    shifts = [golden.SHIFT_MIN, -30, -17, -1, 0, 1, 2, 15, 29, golden.SHIFT_MAX]
    m0s = [0, 1, 2**30, 2**30 + 1, 2**31 - 1, 1_518_500_250]
    biases = [0, INT32_MIN, INT32_MAX, -1, 1]
    # every (m0, shift) pair, channels at a time, each with a bias from the list
    pairs = [(m, s) for m in m0s for s in shifts]
    total = 0
    for start in range(0, len(pairs), tb.channels):
        group = pairs[start:start + tb.channels]
        group += pairs[:tb.channels - len(group)]
        bias = [biases[(start + k) % len(biases)] for k in range(tb.channels)]
        await tb.write_all_params(bias, [m for m, _ in group], [s for _, s in group])
        accs, chans = [], []
        for ch, (_, s) in enumerate(group):
            targets = [INT32_MIN, INT32_MAX, 0, 1, -1, 2, -2, 3, -3]
            if s > 0:
                targets += saturation_boundaries(s)
            # acc' = wrap32(acc + bias) hits the target; acc itself hits the extremes too
            accs += list(wrap32(np.array(targets) - bias[ch])) + [INT32_MIN, INT32_MAX, 0]
            chans += [ch] * (len(targets) + 3)
        # zp_out at both extremes every time (they expose a too-narrow intermediate)
        for layer in LAYERS[:3] + [LAYERS[3 + (start // tb.channels) % (len(LAYERS) - 3)]]:
            order = tb.rng.permutation(len(accs))  # interleave the channels
            await tb.set_layer(*layer)
            tb.send(np.array(accs)[order], np.array(chans)[order])
            total += await tb.check()
    tb.log.info("%d corner results checked", total)


@cocotb.test()
async def rounding_ties(dut):
    """Exact .5 cases of SRDHM (x * m0 + 2**30 a multiple of 2**31) and of RDBPOT
    (y = (2t + 1) * 2**(e - 1)), positive and negative, alone and one after the other, with
    small enough results that the rounding direction shows in the int8 output."""
    tb = RequantTB(dut)
    await tb.start()
    rng = tb.rng
    srdhm_ties = rdbpot_ties = 0
    for _ in range(4):
        # m0 = odd * 2**k: x * m0 + 2**30 = 0 (mod 2**31) for x = odd' * 2**(30 - k)
        k = rng.integers(22, 31, tb.channels)
        odd = rng.integers(0, 1 << (30 - k)) * 2 + 1  # m0 < 2**31
        m0 = odd << k
        shift = rng.integers(-4, 1, tb.channels)
        # channel 0: SRDHM(2y, 2**30) = y exactly, so RDBPOT sees the ties chosen below
        m0[0], shift[0], odd[0], k[0] = 2**30, -int(rng.integers(1, 13)), 1, 30
        bias = random_biases(rng, tb.channels)
        await tb.write_all_params(bias, m0, shift)
        zp = int(rng.integers(-20, 21))
        await tb.set_layer(zp, -128, 127)
        accs, chans = [], []
        for ch in range(tb.channels):
            e = -int(shift[ch])
            # |odd * odd'| / 2 / 2**e stays below ~150: an unsaturated output
            limit = max(1, (150 << e) // int(odd[ch]))
            x = (rng.integers(-limit, limit, 40) * 2 + 1) << (30 - int(k[ch]))
            if ch == 0:
                y = (rng.integers(-150, 150, 40) * 2 + 1) << (e - 1)
                x = np.concatenate([x, 2 * y])
            accs += list(wrap32(x - bias[ch]))
            chans += [ch] * len(x)
            out = golden.requantize(x, int(m0[ch]), int(shift[ch]), zp, -128, 127)
            visible = (out > -128) & (out < 127)
            srdhm_tie = (x * int(m0[ch]) + 2**30) % 2**31 == 0
            srdhm_ties += int(np.sum(srdhm_tie & visible))
            if e:
                y = golden.srdhm(x, int(m0[ch])).astype(np.int64)
                rdbpot_ties += int(np.sum((y % (1 << e) == 1 << (e - 1)) & visible))
        order = rng.permutation(len(accs))
        tb.send(np.array(accs)[order], np.array(chans)[order])
        await tb.check()
    tb.log.info("%d SRDHM ties and %d RDBPOT ties with unsaturated outputs checked",
                srdhm_ties, rdbpot_ties)
    assert srdhm_ties > 200 and rdbpot_ties > 100, (srdhm_ties, rdbpot_ties)


@cocotb.test()
@cocotb.parametrize(pauses=list(PAUSES))
async def random_stress(dut, pauses):
    """Random parameters, accumulators, layers and channel interleaving, with idle cycles
    and backpressure on all three streams; parameters rewritten between runs."""
    tb = RequantTB(dut)
    tb.set_pauses(pauses)
    await tb.start()
    rng = tb.rng
    total = 0
    for run in range(5):
        await random_setup(tb)
        zp = int(rng.integers(-128, 128))
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
        await tb.set_layer(*(LAYERS[run] if run < 3 else (zp, lo, hi)))
        count = 150
        # runs of one channel and random interleavings, with tile ends marked by `last`
        chans = rng.integers(0, tb.channels, count)
        chans[:20] = np.repeat(rng.integers(0, tb.channels, 4), 5)
        last = (rng.random(count) < 0.1).astype(np.int64)
        tags = rng.integers(0, 1 << max(tb.design.tag_width, 1), count)
        tb.send(random_accumulators(rng, count), chans, last, tags)
        total += await tb.check()
    tb.log.info("%d random results checked (pauses %s)", total, pauses)


@cocotb.test()
async def params_written_during_traffic(dut):
    """Parameter writes to any channel while accumulators flow: each accumulator must use
    the parameters written before the edge that accepted it (same edge: the old ones)."""
    tb = RequantTB(dut)
    tb.set_pauses("random")
    await tb.start()
    rng = tb.rng
    await random_setup(tb)
    count = 400
    tb.send(random_accumulators(rng, count), rng.integers(0, tb.channels, count))
    for _ in range(8):
        # bursts of writes at random moments while the stream is busy
        await tb.cycles(int(rng.integers(5, 60)))
        n = int(rng.integers(1, 2 * tb.channels))
        m0, shift = random_multipliers(rng, n)
        tb.write_params(rng.integers(0, tb.channels, n), random_biases(rng, n), m0, shift)
    await tb.check()
    # Same-edge rule, deterministically: a write and an accumulator of its channel
    # accepted together (old parameters), then one accumulator per following cycle.
    tb.set_pauses("none")
    for _ in range(5):
        await tb.check()
        m0, shift = random_multipliers(rng, 1)
        acc = random_accumulators(rng, 3)
        tb.write_params([0], random_biases(rng, 1), m0, shift)
        tb.send(acc, [0, 0, 0])
        await tb.check()
    same_edge = sum(1 for cycle, _ in tb.writes
                    if any(c == cycle for c, _, _ in tb.inputs))
    assert same_edge >= 5, f"only {same_edge} writes shared an edge with an accumulator"


@cocotb.test()
async def throughput_and_latency(dut):
    """Without pauses one result leaves every `cycles_per_result` cycles, and the first
    one `latency` cycles after its accumulator was accepted (both as documented; for the
    serial requantizer, per item from its channel's shift)."""
    tb = RequantTB(dut)
    out_cycles = []
    monitor = StreamMonitor(dut, "o", tb.clock, callback=lambda _: out_cycles.append(tb.cycle))
    await tb.start()
    shift = await random_setup(tb)
    count = 64
    first_input = len(tb.inputs)
    channels = tb.rng.integers(0, tb.channels, count)
    tb.send(random_accumulators(tb.rng, count), channels)
    await tb.check(budget=count * tb.design.cycles_per_result + tb.design.latency + 10)
    in_cycles = [cycle for cycle, _, _ in tb.inputs[first_input:]]
    if tb.design.serial:
        timing = [tb.design.timing(int(shift[ch])) for ch in channels]
        latencies = [out - inp for out, inp in zip(out_cycles, in_cycles)]
        assert latencies == [lat for _, lat in timing], latencies
        assert list(np.diff(in_cycles)) == [per for per, _ in timing[:-1]]
        tb.log.info("cycles per result %.1f on average (%d to %d)",
                    np.mean(np.diff(in_cycles)), min(timing)[0], max(timing)[0])
        monitor.check()
        return
    intervals = set(np.diff(out_cycles))
    latency = out_cycles[0] - in_cycles[0]
    per_result = (out_cycles[-1] - out_cycles[0]) / (count - 1)
    tb.log.info("cycles per result %.3f (documented %d), latency %d (documented %d)",
                per_result, tb.design.cycles_per_result, latency, tb.design.latency)
    assert intervals == {tb.design.cycles_per_result}, f"output intervals {intervals}"
    assert set(np.diff(in_cycles[-count // 2:])) == {tb.design.cycles_per_result}
    assert latency == tb.design.latency, latency
    monitor.check()


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset while results are in flight and stalled, then correct runs (the parameter
    memory survives the reset, as documented; then new parameters)."""
    tb = RequantTB(dut)
    tb.set_pauses("random")
    await tb.start()
    rng = tb.rng
    await random_setup(tb)
    for _ in range(3):
        count = 200
        sent = len(tb.inputs)
        tb.send(random_accumulators(rng, count), rng.integers(0, tb.channels, count))
        await tb.cycles(int(rng.integers(10, 10 * tb.design.cycles_per_result + 40)))
        assert len(tb.inputs) > sent, "nothing accepted before the reset"
        # the results that came out before the reset must be right too
        received = len(tb.sink.received)
        _, values = tb.expected(tb.inputs[sent:sent + received])
        got = [unpack(tb.design.output_layout, p)["value"] for p in tb.sink.received]
        assert got == list(values), "results before the reset are wrong"
        tb.source.clear()
        await tb.reset()
        tb.sink.received.clear()
        # reset may drop o.valid while a result waits, and clear() drops i.valid: expected
        tb.sink.errors.clear()
        tb.input_monitor.errors.clear()
        tb.inputs = tb.inputs[:tb.checked]
        tb.sink_base = tb.sink.transfers - tb.checked
        for _ in range(tb.design.latency + 4):
            await ReadOnly()
            assert not dut.o__valid.value, "a result came out after the reset"
            await RisingEdge(tb.clock)
        await tb.set_layer(*LAYERS[int(rng.integers(len(LAYERS)))])
        count = 60
        tb.send(random_accumulators(rng, count), rng.integers(0, tb.channels, count))
        await tb.check()
        await random_setup(tb)
        tb.send(random_accumulators(rng, count), rng.integers(0, tb.channels, count))
        await tb.check()
