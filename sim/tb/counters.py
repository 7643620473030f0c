"""Testbench of :class:`qaccel.hw.counters.PerformanceCounters` against a cycle model.

The model keeps, for every cycle, each counter's exact count (events since the last clear,
the ``work`` amounts added, wrapping at ``width`` bits). Every cycle in which ``value_valid``
is high, ``value`` must equal the model's count of counter ``value_index`` as of
``words + 2`` cycles before the value first showed (the documented timing), bit for bit; every counter must be
shown at least once per sweep (plus a work visit); and a clear must take ``value_valid`` low
at once, until a value from after it shows.

Parameters (``tb.params``): ``width``, ``words``, ``sweep_cycles``.
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from qaccel.sim.tbkit import TB
from qaccel.sw.protocol import Counter

WIDE = (Counter.MACS, Counter.BINARY_OPS)
EVENTS = [counter for counter in Counter if counter not in WIDE]


class CountersTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.width = self.params["width"]
        self.words = self.params["words"]
        self.sweep = self.params["sweep_cycles"]
        self.mask = (1 << self.width) - 1
        self.counts = [0] * len(Counter)
        self.history = []          # counts after each cycle's events, by cycle
        self.last_seen = {}        # counter -> cycle it was last shown
        self.checked = 0
        self.cycle = 0
        self.work = 0              # what `work` is driven to (writes land after this phase)
        self.phase = None          # a cycle in which a visit's value first showed
        self.last_clear = None     # history index of the last clear

    def drive(self, events=(), clear=False, work=None, binary=False, work_add=False):
        for counter in EVENTS:
            getattr(self.dut, counter.name.lower()).value = int(counter in events)
        self.dut.clear.value = int(clear)
        self.dut.work_add.value = int(work_add)
        self.dut.work_binary.value = int(binary)
        if work is not None:
            self.dut.work.value = self.work = work
        # the model: this cycle's events, unless a clear drops them and everything before
        if clear:
            self.counts = [0] * len(Counter)
            self.last_clear = len(self.history)
        else:
            for counter in events:
                self.counts[counter] = (self.counts[counter] + 1) & self.mask
            if work_add:
                target = Counter.BINARY_OPS if binary else Counter.MACS
                self.counts[target] = (self.counts[target] + self.work) & self.mask
        self.history.append(list(self.counts))

    async def step(self, **inputs):
        """Drive one cycle's inputs, then check the outputs of the next cycle."""
        self.drive(**inputs)
        clear = inputs.get("clear", False)
        await RisingEdge(self.clock)
        await ReadOnly()
        self.cycle += 1
        valid = int(self.dut.value_valid.value)
        if clear:
            assert not valid, f"cycle {self.cycle}: value_valid high after a clear"
        if valid:
            index = int(self.dut.value_index.value)
            value = int(self.dut.value.value)
            # a visit ends every `words` cycles; its value shows until the next one ends
            if self.phase is None:
                self.phase = self.cycle
            shown_since = self.cycle - (self.cycle - self.phase) % self.words
            as_of = shown_since - self.words - 2
            want = self.history[as_of][index] if as_of >= 0 else 0
            assert self.last_clear is None or as_of >= self.last_clear, (
                f"cycle {self.cycle}: {Counter(index).name} shows a value from before the "
                f"clear of cycle {self.last_clear}")
            assert value == want, (f"cycle {self.cycle}: {Counter(index).name} = {value:#x}, "
                                   f"model {want:#x} (as of cycle {as_of})")
            self.last_seen[index] = self.cycle
            self.checked += 1
        await FallingEdge(self.clock)

    def random_amount(self):
        return int.from_bytes(self.rng.bytes(8), "little") & self.mask

    def check_liveness(self, since):
        """Every counter was shown in the last sweep (plus a work visit and the latency):
        call it after a sweep without clears."""
        limit = self.sweep + 2 * self.words + 3
        for counter in Counter:
            seen = self.last_seen.get(counter, since)
            assert self.cycle - max(seen, since) <= limit, (
                f"{counter.name} not shown for {self.cycle - seen} cycles (limit {limit})")

    async def start(self):
        self.drive()
        self.history.clear()
        await self.reset()
        await FallingEdge(self.clock)


def _corner_amounts(width):
    top = (1 << width) - 1
    return [top, 1, 1 << (width - 1), 0xFFFF & top, (0x1_0000 & top) or 1, top, 0]


@cocotb.test()
async def zeros_events_and_wrap(dut):
    """After a reset every counter reads 0; then every event each cycle, and work amounts at
    the corners (all ones twice: the sum wraps at ``width`` bits, carrying across words)."""
    tb = CountersTB(dut)
    await tb.start()
    for _ in range(2 * tb.sweep):
        await tb.step()
    assert tb.checked > 0
    tb.check_liveness(0)
    spacing = 2 * tb.words + 2     # the shortest the contract allows
    for number, amount in enumerate(_corner_amounts(tb.width)):
        await tb.step(events=EVENTS, work=amount, binary=bool(number % 2), work_add=True)
        for _ in range(spacing - 1):
            await tb.step(events=EVENTS)
    for _ in range(2 * tb.sweep):
        await tb.step(events=EVENTS)
    tb.check_liveness(0)


@cocotb.test()
async def random_stress(dut):
    """Random events at random rates, work amounts at random (contract-minimum and longer)
    spacings, a work amount that changes as soon as the contract allows, and clears."""
    tb = CountersTB(dut)
    await tb.start()
    rates = {counter: float(tb.rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])) for counter in EVENTS}
    tb.log.info("event rates %s", {c.name: r for c, r in rates.items()})
    corners = _corner_amounts(tb.width)
    next_work = 5
    hold = 0
    for cycle in range(6000):
        events = [c for c in EVENTS if tb.rng.random() < rates[c]]
        inputs = {"events": events}
        if cycle == next_work:
            inputs.update(work_add=True, binary=bool(tb.rng.integers(2)),
                          work=tb.random_amount()
                          if tb.rng.random() < 0.8 else corners[int(tb.rng.integers(len(corners)))])
            hold = 2 * tb.words + 1
            next_work = cycle + 2 * tb.words + 2 + int(tb.rng.choice([0, 0, 1, 7, 40]))
        elif hold:
            hold -= 1
            if hold == 0:      # the contract is over: garbage on `work` must not count
                inputs["work"] = tb.random_amount()
        if tb.rng.random() < 0.003:
            inputs["clear"] = True
        await tb.step(**inputs)
    assert tb.checked > 6000 // tb.words // 2, tb.checked
    for _ in range(2 * tb.sweep):   # no clears or work visits: every counter, every sweep
        await tb.step(events=EVENTS)
    tb.check_liveness(0)


@cocotb.test()
async def clear_timing(dut):
    """A clear in every position of a visit, with events on every cycle and a work amount
    pending: the counts restart from the events after the clear."""
    tb = CountersTB(dut)
    await tb.start()
    for offset in range(tb.sweep + tb.words + 1):
        for _ in range(offset):
            await tb.step(events=EVENTS)
        await tb.step(events=EVENTS, work=3 + offset, work_add=True, binary=bool(offset % 2))
        await tb.step(events=EVENTS[::2], clear=bool(offset % 3))
        for _ in range(2 * tb.words + 1):
            await tb.step(events=EVENTS)
        await tb.step(events=EVENTS, clear=True)
    for _ in range(2 * tb.sweep):
        await tb.step(events=EVENTS)
    tb.check_liveness(tb.cycle - 2 * tb.sweep)
