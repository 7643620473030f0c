"""Performance counters of the accelerator, in the order of :class:`qaccel.sw.protocol.Counter`.

Every counter is ``width`` bits (wrapping) and reads as a zero-extended u64 in the COUNTERS
reply. The counters live in one block RAM of 16-bit words, not in flip-flops: on an iCE40,
where every flip-flop and every adder bit is a logic cell, ten 32-bit counters in registers
cost about 500 LUT4 and 300 flip-flops.

How they count
--------------
Each one-bit event (``cycles``, ``int8_busy``, ...) is added to a *pending count* of a few
flip-flops. A *sweep* visits the counters in turn, one 16-bit word per cycle (``words`` per
counter, least significant first): it reads the word, adds the pending count to the first
word and the carry to the others, and writes it back; the visit takes the pending count and
restarts it. Each counter is visited every ``len(Counter) * words`` cycles, so the pending
counts need only a few bits, and one 17-bit adder serves every counter.

The work of a run (``macs``, ``binary_ops``) comes as an amount, ``work``, with a strobe,
``work_add``: the next visit is the target counter's, and it adds ``work`` word by word.
``work`` must therefore hold for ``2 * words + 1`` cycles after the strobe (the sequencer
holds it until the next RUN is checked, which is dozens of cycles after the run ends).

``clear`` sets every counter to zero (the events of its own cycle are dropped, as before a
clear): the pending counts restart, and each counter's next visit writes its pending count
over the old value instead of adding to it.

Reading
-------
After each visit, ``value`` holds the visited counter's value and ``value_index`` says which;
``value_valid`` is low until the first visit after a reset or a clear has finished. A value
shown from cycle ``t`` on counts the events of every cycle before ``t - words - 1`` (since the
last clear): a reader that wants counter ``i`` waits until ``value_index == i``, at most one
sweep (the COUNTERS reply reads them in order, as the sweep goes).
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sw.protocol import Counter
from .ram import NO_RW_CHECK, registered_read_port

__all__ = ["PerformanceCounters", "WIDE_COUNTERS", "counter_words", "counter_memory_shape"]

#: Counters whose input is an amount (``work``) rather than a one-bit event.
WIDE_COUNTERS = (Counter.MACS, Counter.BINARY_OPS)
_WORD = 16


def counter_words(width):
    """16-bit memory words per ``width``-bit counter (two at least: see ``elaborate``)."""
    return max(2, -(-width // _WORD))


def counter_memory_shape(width):
    """``(width, depth)`` of the memory of :class:`PerformanceCounters` of ``width`` bits."""
    return (_WORD, len(Counter) << (counter_words(width) - 1).bit_length())


class PerformanceCounters(wiring.Component):
    """The performance counters in block RAM, with a sweep (see the module documentation).

    Parameters
    ----------
    width : int
        Bits per counter, 16 to 64 (wrapping). Each counter takes ``words = max(2,
        ceil(width / 16))`` words of the memory; the logic hardly depends on the width.

    Members
    -------
    <counter name> : ``In(1)``
        One-bit events (``cycles``, ``int8_busy``, ... in lower case; not ``macs`` and
        ``binary_ops``): counted at the clock edge.
    work : ``In(width)``, work_binary : ``In(1)``, work_add : ``In(1)``
        ``work_add`` strobes: add ``work`` to BINARY_OPS if ``work_binary``, else to MACS.
        Both must hold for ``2 * words + 1`` cycles after the strobe.
    clear : ``In(1)``
        Sets every counter to zero (it wins over the events of the same cycle).
    value : ``Out(width)``, value_index : ``Out(range(len(Counter)))``, value_valid : ``Out(1)``
        The counter visited last and its value (registered).
    """

    def __init__(self, width=40):
        if isinstance(width, bool) or not isinstance(width, int):
            raise TypeError(f"Counter width must be an integer, not {width!r}")
        if not 16 <= width <= 64:
            raise ValueError(f"Counter width must be in 16..64, not {width}")
        self._width = width
        self._words = counter_words(width)
        members = {counter.name.lower(): In(1) for counter in Counter
                   if counter not in WIDE_COUNTERS}
        members.update(work=In(width), work_binary=In(1), work_add=In(1), clear=In(1),
                       value=Out(width), value_index=Out(range(len(Counter))),
                       value_valid=Out(1))
        super().__init__(members)

    @property
    def width(self):
        return self._width

    @property
    def words(self):
        """16-bit words per counter."""
        return self._words

    @property
    def sweep_cycles(self):
        """Cycles between two visits of a counter (without a ``work_add`` in between)."""
        return len(Counter) * self._words

    @property
    def memory_shape(self):
        """``(width, depth)`` of the counters' memory."""
        return counter_memory_shape(self._width)

    def elaborate(self, platform):
        m = Module()
        count, words = len(Counter), self._words
        width, depth = self.memory_shape
        m.submodules.memory = memory = Memory(shape=width, depth=depth, init=[],
                                              attrs=NO_RW_CHECK)
        # Two words per counter at least: then the word read in a cycle is never the one
        # written in it (the previous visit's last word), even when a work visit follows the
        # same counter's sweep visit, so the memory needs no collision logic.
        read_addr, read_data = registered_read_port(m, memory, "counter")
        write = memory.write_port()

        # ---- stage A: the sweep issues one word address per cycle ---------------------------
        sweep = Signal(range(count))          # next counter in sweep order
        a_word = Signal(range(words))
        a_index = Signal(range(count))        # the counter of the visit in progress
        starting = a_word == 0
        # A pending run's work is visited first: `work` only holds for a while.
        pending = {counter: Signal(name=f"work_pending_{counter.name.lower()}")
                   for counter in WIDE_COUNTERS}
        choice = Signal(range(count))
        with m.If(pending[Counter.MACS]):
            m.d.comb += choice.eq(Counter.MACS)
        with m.Elif(pending[Counter.BINARY_OPS]):
            m.d.comb += choice.eq(Counter.BINARY_OPS)
        with m.Else():
            m.d.comb += choice.eq(sweep)
        issue = Mux(starting, choice, a_index)
        m.d.comb += read_addr.eq(Cat(a_word, issue))
        m.d.sync += a_word.eq(Mux(a_word == words - 1, 0, a_word + 1))
        with m.If(starting):
            m.d.sync += a_index.eq(choice)
            with m.If(~pending[Counter.MACS] & ~pending[Counter.BINARY_OPS]):
                m.d.sync += sweep.eq(Mux(sweep == count - 1, 0, sweep + 1))
        taking = Signal(count)                # the visit starting now is counter i's
        m.d.comb += taking.eq(Mux(starting, 1 << choice, 0))

        # Pending counts: between two visits of a counter come the other counters' visits and
        # work visits, at most one per `2 * words + 2` cycles (the strobes' spacing that the
        # hold time of `work` implies): fewer than 2 * (count + 1) * words cycles.
        pend_width = (2 * (count + 1) * words).bit_length()
        snapshot = Signal(pend_width)         # the pending count a visit starts with, else 0
        for counter in Counter:
            if counter in WIDE_COUNTERS:
                flag = pending[counter]
                added = self.work_add & (self.work_binary == (counter == Counter.BINARY_OPS))
                with m.If(self.clear):
                    m.d.sync += flag.eq(0)
                with m.Elif(added):
                    m.d.sync += flag.eq(1)
                with m.Elif(taking[counter]):
                    m.d.sync += flag.eq(0)
                continue
            event = getattr(self, counter.name.lower())
            pend = Signal(pend_width, name=f"pending_{counter.name.lower()}")
            with m.If(self.clear):
                m.d.sync += pend.eq(0)
            with m.Else():
                m.d.sync += pend.eq(Mux(taking[counter], 0, pend) + event)
            with m.If(taking[counter]):
                m.d.comb += snapshot.eq(pend)

        # A counter whose `fresh` bit is set reads as zero at its next visit (after a reset or
        # a clear): that visit writes its pending count over the old value.
        fresh = Signal(count, init=(1 << count) - 1)
        with m.If(self.clear):
            m.d.sync += fresh.eq((1 << count) - 1)
        with m.Else():
            m.d.sync += fresh.eq(fresh & ~taking)
        # A clear during a visit voids the value it shows.
        void = Signal(init=1)
        with m.If(self.clear):
            m.d.sync += void.eq(1)
        with m.Elif(starting):
            m.d.sync += void.eq(0)

        # ---- stage B: the word arrives, is added to and written back ------------------------
        b_word = Signal(range(words))
        b_index = Signal(range(count))
        b_zero = Signal()                     # the visit's counter reads as zero
        b_wide = Signal()                     # the visit adds `work`
        b_pend = Signal(pend_width)           # the pending count, on the first word only
        m.d.sync += [b_word.eq(a_word), b_index.eq(issue), b_pend.eq(snapshot)]
        with m.If(starting):
            m.d.sync += [b_zero.eq((fresh & taking).any()),
                         b_wide.eq(Cat(*(pending[c] & taking[c] for c in WIDE_COUNTERS)).any())]

        work_words = Signal(_WORD * words)
        m.d.comb += work_words.eq(self.work)
        addend = Mux(b_wide, work_words.word_select(b_word, _WORD), b_pend)
        carry = Signal()                      # into the next word of the same visit
        total = Signal(_WORD + 1)
        m.d.comb += total.eq(Mux(b_zero, 0, read_data) + addend + carry)
        b_last = b_word == words - 1
        m.d.sync += carry.eq(total[_WORD] & ~b_last)
        top_bits = self._width - _WORD * (words - 1)  # the last word keeps only these
        m.d.comb += [
            write.addr.eq(Cat(b_word, b_index)),
            write.data.eq(Mux(b_last, total[:top_bits], total[:_WORD])),
            write.en.eq(1),
        ]

        # ---- the value of the visit, whole ------------------------------------------------------
        low = Signal(_WORD * (words - 1))     # the visit's lower words, as written
        with m.If(~b_last):
            m.d.sync += low.eq(Cat(low[_WORD:], total[:_WORD]))
        with m.Else():
            m.d.sync += [self.value.eq(Cat(low, total[:top_bits])), self.value_index.eq(b_index)]
        with m.If(self.clear):
            m.d.sync += self.value_valid.eq(0)
        with m.Elif(b_last & ~void):
            m.d.sync += self.value_valid.eq(1)
        return m
