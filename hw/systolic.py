"""Output-stationary INT8 systolic array with DSP packing.

Computes one tile ``acc[m, n] = sum_k a[m, k] * w[k, n]`` (int8 operands, wrapping int32
accumulators, bit-exact with :func:`qaccel.sw.golden.gemm_int8`) per command, for
``M <= rows`` and ``N <= cols``.

Dataflow
--------
Processing elements (PEs) sit on a ``rows x groups`` grid. A *group* is two adjacent output
columns sharing one :class:`~qaccel.hw.dual_mac.DualMAC` (``packed=True``; an odd last column
forms a group of one), or a single column with its own multiplier (``packed=False``).
Activation ``a[i, k]`` enters row ``i`` at the left, skewed by ``i`` cycles, and moves one
group to the right per cycle; it is the shared operand of the group's DualMAC, which is why
columns are paired. Weights ``w[k, 2p]`` and ``w[k, 2p+1]`` enter group ``p`` at the top,
skewed by ``p`` (the same skew for both columns of a pair), and move down one row per cycle.
So PE ``(i, p)`` sees step ``k`` at cycle ``k + i + p`` and accumulates the products in fabric
int32 registers, one per column.

Why output-stationary: K is unbounded (up to ``max_k``) with no weight reload or partial-sum
traffic, each result leaves the array exactly once, and the int32 results go straight to the
requantizer. Every product is split out of the DSP and accumulated in fabric: K is arbitrary,
so int32 accumulators are needed anyway, and in-DSP accumulation of the packed pair would have
to stop every 7 products (the guard-bit limit of the 18-bit low field).

Control tags ``first`` (clear the accumulator), ``last`` (the tile's last step) and ``end``
(last row of the tile) travel along each row, delayed by the multiplier latency, in step with
the products. When ``last`` leaves row ``i``, the row's totals are complete and the row is
emitted as one output transfer. With ``hold_registers`` (the default) ``last`` copies each
total into the PE's hold register and the row is read from those, so the next tile can start
accumulating while the previous one drains. Without them the row is read from the
accumulators themselves, which halves the array's registers (what keeps it out of small
FPGAs) at the cost of ``groups`` bubbles per tile (below); reading a row clears its
accumulators (their synchronous reset), so on an iCE40 no multiplexer stands before the
adders either.

With ``dataflow="broadcast"`` (hold-less arrays only) there is no skew: each activation is
registered once and reaches every group of its row in the same cycle, and each weight every
row of its column, so PE ``(i, p)`` sees step ``k`` at cycle ``k + 1``. A small array's
fanout is cheap, and the skew and hop registers were most of its flip-flops besides the
accumulators. All rows of a tile then finish together: the output reads them lowest first,
and the enable stays low until the last of them is taken (that read clears every row's
accumulators; without an output buffer the enable waits until the cycle after it, so that it
depends on registers only), so one bubble between tiles suffices.

Accumulators are as wide as ``max_k`` needs and no wider: ``K`` products of int8 operands lie
in ``[-16256 K, 16384 K]``, so ``(16384 * max_k).bit_length() + 1`` bits never wrap (32 at
the default ``max_k``) and the output lanes are their sign extension, bit-exact with the
golden model's int32 sums. A build whose buffers bound K (the accelerator top's) saves the
upper bits of every accumulator.

Flow control
------------
One enable freezes the whole array (operand skew, multipliers, accumulators, tags): it is
low only when a finished row is waiting and the output cannot take it. The output goes
through a register slice (``output_buffer``), so that enable is a function of registers, not
of ``o.ready``: a :class:`~qaccel.hw.skid.SkidBuffer` (``"skid"``, the default), or a
:class:`~qaccel.hw.skid.RegisterSlice` (``"register"``), with half the registers, which
takes a row every other cycle. A tile's rows finish in consecutive cycles, so that costs
``rows - 1`` stalls per tile, except when the consumer is slower than a row per two cycles
anyway (the accelerator's controller serializes a row over ``cols`` cycles, or more). With
``"none"`` the output is read straight from the array (its hold registers or accumulators)
and the enable follows ``o.ready`` combinationally: no output registers at all, but the
array stands still while a row waits, for as long as the consumer takes over it. When the
activation or weight stream has no data the array does not stop: it
injects a bubble (zero operands, no tags), so tiles in flight keep draining. Consecutive
tiles' ``last`` steps are spaced at least ``tile_spacing = max(groups, rows)`` cycles apart
(bubbles are inserted when a tile has fewer steps) so that a row's hold registers are read
before the next tile overwrites them and two tiles' rows never finish in the same cycle.
Without hold registers a tile's first step also follows the previous tile's last step by at
least ``groups + 1`` cycles (``groups`` bubbles), so that a row's accumulators are read, and
cleared, before the next tile's first products reach them (bubbles add zero products to them
meanwhile); after a reset the accumulators are held at zero, and no command is taken, until
the operands that were in flight have left the skew registers and multipliers
(``rows + groups + mac_latency + 2`` cycles).

Streams
-------
``cmd``
    One transfer per tile: ``k`` (steps, 0 to ``max_k``; 0 yields a tile of zeros without
    consuming operands), ``m`` (active rows, 1 to ``rows``) and ``n`` (active columns, 1 to
    ``cols``). ``m`` or ``n`` equal to 0 or above the array size mean the full size.
``a``
    ``k`` transfers per tile: the activation column ``a[:, k]``, ``rows`` int8 lanes; lanes
    ``>= m`` are ignored.
``w``
    ``k`` transfers per tile: the weight row ``w[k, :]``, ``cols`` int8 lanes; lanes ``>= n``
    are ignored. A step consumes one ``a`` and one ``w`` transfer together.
``o``
    ``m`` transfers per tile, rows in order ``0 .. m-1``: ``data`` (``cols`` int32 lanes,
    lanes ``>= n`` are 0), ``row`` and ``last`` (set on row ``m - 1``).
"""

import functools
import operator

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dual_mac import BACKENDS, LATENCY, DualMAC, SingleMultiplier
from .skid import RegisterSlice, SkidBuffer

__all__ = ["SystolicArray", "MAX_K", "OUTPUT_BUFFERS", "DATAFLOWS", "check_array_options"]

#: Choices of :class:`SystolicArray`'s ``output_buffer``.
OUTPUT_BUFFERS = ("skid", "register", "none")
#: Choices of :class:`SystolicArray`'s ``dataflow``.
DATAFLOWS = ("systolic", "broadcast")

#: Largest K whose int32 accumulation can never wrap (``golden.GEMM_INT8_MAX_K_NO_WRAP``).
MAX_K = 131071


def check_array_options(*, hold_registers, output_buffer, dataflow):
    """Refuse (``ValueError``) an unknown ``output_buffer`` or ``dataflow``, and a broadcast
    dataflow with hold registers."""
    if output_buffer not in OUTPUT_BUFFERS:
        raise ValueError(f"output_buffer must be one of {', '.join(OUTPUT_BUFFERS)}; not "
                         f"{output_buffer!r}")
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}; not {dataflow!r}")
    if dataflow == "broadcast" and hold_registers:
        raise ValueError("dataflow 'broadcast' needs hold_registers=False")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value!r}")
    return value


class SystolicArray(wiring.Component):
    """Output-stationary ``rows x cols`` INT8 systolic array (see the module documentation).

    Parameters
    ----------
    rows, cols : int
        Array size: ``rows`` output rows (activation lanes) and ``cols`` output columns
        (weight lanes) computed at once.
    backend : {"dsp48e2", "ice40", "ecp5", "generic"}
        Multiplier implementation of the column pairs (:class:`~qaccel.hw.dual_mac.DualMAC`).
    packed : bool
        ``True``: two columns per DualMAC (one multiplier block per pair on ``dsp48e2`` and
        ``ice40``). ``False``: one inferred multiplier per column (the unpacked reference).
    primitive : bool or None
        Passed to :class:`~qaccel.hw.dual_mac.DualMAC` (``dsp48e2``: real ``DSP48E2`` or the
        behavioural model).
    max_k : int
        Largest K a command can ask for; sets the width of ``cmd.payload.k`` and of the
        accumulators. The default, 131071, is the largest K whose int32 sums can never wrap.
    hold_registers : bool
        ``True``: a hold register per lane, full rate between tiles. ``False``: rows are read
        from the accumulators, ``groups`` bubbles per tile (module documentation).
    output_buffer : {"skid", "register", "none"}
        ``"skid"``: the output rows go through a :class:`~qaccel.hw.skid.SkidBuffer`, one
        per cycle. ``"register"``: through a :class:`~qaccel.hw.skid.RegisterSlice`, one per
        two cycles, at about half the output registers' cost. ``"none"``: no output
        registers; the array waits while a row is being taken.
    dataflow : {"systolic", "broadcast"}
        ``"systolic"``: operands move one PE per cycle (skewed). ``"broadcast"`` (only
        without hold registers): each activation reaches its whole row and each weight its
        whole column in the same cycle, so no skew or hop registers (a small array's fanout
        is cheap); all rows of a tile finish together and are read one after the other
        while the array waits (module documentation).

    Members
    -------
    cmd : ``In(stream.Signature(cmd_layout))``
    a : ``In(stream.Signature(ArrayLayout(signed(8), rows)))``
    w : ``In(stream.Signature(ArrayLayout(signed(8), cols)))``
    o : ``Out(stream.Signature(out_layout))``

    Attributes
    ----------
    groups : list of list of int
        Output columns of each PE column (pairs when packed).
    mac_latency : int
        Latency of the multiplier units.
    tile_spacing : int
        Minimum cycles between two tiles' last steps.
    latency : int
        Cycles from the transfer of a tile's last ``a``/``w`` step to the transfer of its first
        output row, with no stalls.
    """

    def __init__(self, rows, cols, *, backend="generic", packed=True, primitive=None,
                 max_k=MAX_K, hold_registers=True, output_buffer="skid",
                 dataflow="systolic"):
        self.rows = _positive_int("rows", rows)
        self.cols = _positive_int("cols", cols)
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a string, not {backend!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; not {backend!r}")
        if not isinstance(packed, bool):
            raise TypeError(f"packed must be True or False, not {packed!r}")
        if primitive is not None and not isinstance(primitive, bool):
            raise TypeError(f"primitive must be None, True or False, not {primitive!r}")
        self.max_k = _positive_int("max_k", max_k)
        if not isinstance(hold_registers, bool):
            raise TypeError(f"hold_registers must be True or False, not {hold_registers!r}")
        self.hold_registers = hold_registers
        check_array_options(hold_registers=hold_registers, output_buffer=output_buffer,
                            dataflow=dataflow)
        self.output_buffer = output_buffer
        self.dataflow = dataflow
        self.backend = backend
        self.packed = packed
        self.primitive = primitive

        if packed:
            self.groups = [list(range(j, min(j + 2, cols))) for j in range(0, cols, 2)]
            self.mac_latency = LATENCY[backend]
        else:
            self.groups = [[j] for j in range(cols)]
            self.mac_latency = 2
        # broadcast: a tile's rows are read before the next tile's products reach them
        self.tile_spacing = 1 if dataflow == "broadcast" else max(len(self.groups), rows)

        self.cmd_layout = data.StructLayout({
            "k": unsigned(self.max_k.bit_length()),
            "m": unsigned(rows.bit_length()),
            "n": unsigned(cols.bit_length()),
        })
        self.a_layout = data.ArrayLayout(signed(8), rows)
        self.w_layout = data.ArrayLayout(signed(8), cols)
        self.out_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(32), cols),
            "row": unsigned(max(1, (rows - 1).bit_length())),
            "last": 1,
        })
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "a": In(stream.Signature(self.a_layout)),
            "w": In(stream.Signature(self.w_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    # -- cycle model ---------------------------------------------------------------------

    @property
    def accumulator_width(self):
        """Bits of each accumulator: the narrowest that no ``max_k`` int8 products can wrap."""
        return (16384 * self.max_k).bit_length() + 1

    @property
    def pes(self):
        """MAC lanes (``rows * cols``): the products computed per cycle at full rate."""
        return self.rows * self.cols

    @property
    def multiplier_units(self):
        """Multiplier units instantiated (DualMACs or single multipliers)."""
        return self.rows * len(self.groups)

    @property
    def _operand_delay(self):
        # skew and operand hops to the last group, or the one broadcast register
        return 1 if self.dataflow == "broadcast" else len(self.groups)

    @property
    def latency(self):
        # operand registers, multiplier, accumulator and row-done registers (1), output
        # register (1, unless there is none)
        return self._operand_delay + self.mac_latency + 1 + (self.output_buffer != "none")

    @property
    def row_interval(self):
        """Cycles between output rows when the output is always ready (2 with the
        ``"register"`` output buffer, else 1)."""
        return RegisterSlice.interval if self.output_buffer == "register" else 1

    def tile_cycles(self, k, m=None):
        """Clock cycles from the ``cmd`` transfer to the transfer of the tile's last output
        row, for an isolated tile with operands and output always ready."""
        m = self.rows if m is None else m
        return max(k, 1) + self.latency + self.row_interval * (m - 1)

    def cycles_per_tile(self, k):
        """Cycles per full tile in steady state (back-to-back commands, operands and output
        always ready): the steps, the bubbles, and the stalls of a half-rate output."""
        if self.dataflow == "broadcast":
            # the array waits while the rows of each tile but the last are read (and the
            # last too, without an output buffer)
            return (max(k, 1) + self.drain_bubbles + self.row_interval * (self.rows - 1)
                    + (self.output_buffer == "none"))
        return (max(max(k, 1) + self.drain_bubbles, self.tile_spacing)
                + (self.row_interval - 1) * (self.rows - 1))

    @property
    def drain_bubbles(self):
        """Bubbles between a tile's last step and the next tile's first (no hold registers)."""
        if self.hold_registers:
            return 0
        return 1 if self.dataflow == "broadcast" else len(self.groups)

    # -- gateware ------------------------------------------------------------------------

    def _unit(self, group):
        if not self.packed:
            return SingleMultiplier(2)
        if len(group) == 2 or self.backend in ("dsp48e2", "ice40"):
            # An unpaired column on a packed family still costs one block: use half of it.
            return DualMAC(self.backend, primitive=self.primitive)
        return SingleMultiplier(self.mac_latency)

    def elaborate(self, platform):
        m = Module()
        rows, cols, groups = self.rows, self.cols, self.groups
        n_groups = len(groups)
        group_of = {lane: p for p, group in enumerate(groups) for lane in group}

        # The skid carries the accumulators' width; the output lanes sign-extend it.
        acc_shape = signed(self.accumulator_width)
        skid_layout = data.StructLayout({
            "data": data.ArrayLayout(acc_shape, cols),
            "row": self.out_layout["row"].shape,
            "last": 1,
        })
        if self.output_buffer == "none":
            out_i = out_o = stream.Signature(skid_layout).create()
        else:
            buffer = SkidBuffer if self.output_buffer == "skid" else RegisterSlice
            m.submodules.out_buffer = out_buffer = buffer(skid_layout)
            out_i, out_o = out_buffer.i, out_buffer.o
        m.d.comb += [
            self.o.valid.eq(out_o.valid),
            out_o.ready.eq(self.o.ready),
            self.o.payload.row.eq(out_o.payload.row),
            self.o.payload.last.eq(out_o.payload.last),
        ]
        for j in range(cols):
            m.d.comb += self.o.payload.data[j].eq(out_o.payload.data[j])

        row_done = Signal(rows)   # row i's totals are complete (held, or in its accumulators)
        row_end = Signal(rows)    # ... and it is the tile's last row
        broadcast = self.dataflow == "broadcast"
        enable = Signal()
        if broadcast:
            # All rows of a tile finish together: they are read lowest first, and the array
            # waits until the last of them goes (that read clears every row's accumulators).
            row_read = Signal(rows)          # rows of the finished tile already handed on
            pending = Signal(rows)
            m.d.comb += pending.eq(row_done & ~row_read)
            out_valid = pending.any()
            first_pending = Signal(rows)     # one-hot: the lowest pending row
            m.d.comb += first_pending.eq(pending & -pending)
            if self.output_buffer == "none":
                # `o.ready` comes from the consumer's logic: the enable waits one cycle more,
                # until every row is read, and is a function of registers only (the
                # consumer's ready into the enable, on to the operands' ready and the
                # block RAM reads behind them, was the iCEBreaker 4x4 build's critical
                # path). The enabled cycle after the reads clears the accumulators.
                m.d.comb += enable.eq(~out_valid)
                with m.If(enable):
                    m.d.sync += row_read.eq(0)
                with m.Elif(out_i.ready):
                    m.d.sync += row_read.eq(row_read | first_pending)
            else:
                last_pending = (pending & ~first_pending) == 0
                m.d.comb += enable.eq(~out_valid | (out_i.ready & last_pending))
                with m.If(out_valid & out_i.ready):
                    m.d.sync += row_read.eq(Mux(last_pending, 0, row_read | first_pending))
            reading = first_pending
        else:
            out_valid = row_done.any()
            # Freeze everything only when a finished row cannot be handed to the output.
            m.d.comb += enable.eq(~out_valid | out_i.ready)
            reading = row_done

        def delay(value, cycles, name, reset_less=True):
            out = value
            for stage in range(cycles):
                reg = Signal.like(value, name=f"{name}_{stage}", reset_less=reset_less)
                with m.If(enable):
                    m.d.sync += reg.eq(out)
                out = reg
            return out

        # ---- command and step control ----
        spacing = self.tile_spacing
        busy = Signal()
        remaining = Signal(self.cmd_layout["k"].shape)
        first = Signal()
        zero_k = Signal()
        row_mask = Signal(rows)
        end_mask = Signal(rows)
        col_mask = Signal(cols)
        drain_cycles = self.drain_bubbles + 1
        # counts to the larger of the two waits (without hold registers `groups + 1` can
        # exceed the tile spacing)
        since_limit = max(spacing, drain_cycles)
        since_last = Signal(range(since_limit + 1), init=since_limit)
        # Registered forms of `zero_k | remaining == 1`, `since_last >= spacing` and
        # `since_last >= drain_cycles`: `go` drives the operand injection and the tags, so its
        # inputs are kept to single bits.
        is_last = Signal()
        spacing_met = Signal(init=1)
        drained = Signal(init=1)   # the previous tile's rows are read (no hold registers)

        # Without hold registers a reset (a RESET command) leaves operands in the skew
        # registers and multipliers, and nothing clears the accumulators before the next
        # tile's products (its rows' reads do that, after it): the accumulators are held at
        # zero until every such operand is through, and no command is taken meanwhile.
        flush_cycles = 0 if self.hold_registers else rows + n_groups + self.mac_latency + 2
        flush_left = Signal(range(flush_cycles + 1), init=flush_cycles)
        flushing = flush_left != 0
        if flush_cycles:
            with m.If(flushing):
                m.d.sync += flush_left.eq(flush_left - 1)

        step_data = zero_k | (self.a.valid & self.w.valid)
        spaced = (~is_last | spacing_met) & (~first | drained)
        go = Signal()
        finishing = Signal()
        m.d.comb += [
            go.eq(enable & busy & step_data & spaced),
            finishing.eq(go & is_last),
            self.a.ready.eq(go & ~zero_k),
            self.w.ready.eq(go & ~zero_k),
            # the next command is taken in the cycle of the last step; its first step waits
            # for `drained`
            self.cmd.ready.eq(enable & (~busy | finishing) & ~flushing),
        ]

        cmd = self.cmd.payload
        m_rows = Mux((cmd.m == 0) | (cmd.m > rows), rows, cmd.m)
        n_cols = Mux((cmd.n == 0) | (cmd.n > cols), cols, cmd.n)
        with m.If(enable):
            with m.If(go):
                m.d.sync += [remaining.eq(remaining - 1), first.eq(0),
                             is_last.eq(remaining == 2)]
                with m.If(is_last):
                    m.d.sync += busy.eq(0)
            with m.If(finishing):
                m.d.sync += [since_last.eq(1), spacing_met.eq(spacing <= 1),
                             drained.eq(drain_cycles <= 1)]
            with m.Elif(since_last < since_limit):
                m.d.sync += [since_last.eq(since_last + 1),
                             spacing_met.eq(since_last + 1 >= spacing),
                             drained.eq(since_last + 1 >= drain_cycles)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                busy.eq(1),
                remaining.eq(cmd.k),
                is_last.eq(cmd.k <= 1),
                first.eq(1),
                zero_k.eq(cmd.k == 0),
                row_mask.eq(Cat(*(m_rows > i for i in range(rows)))),
                end_mask.eq(Cat(*(m_rows == i + 1 for i in range(rows)))),
                col_mask.eq(Cat(*(n_cols > j for j in range(cols)))),
            ]

        # ---- injection: a real step, the zero step of K = 0, or a bubble ----
        load = go & ~zero_k
        tag_layout = data.StructLayout({"first": 1, "last": 1, "end": 1})
        injected_a, injected_tags, injected_w = [], [], []
        for i in range(rows):
            value = Signal(signed(8), name=f"inject_a_{i}")
            tags = Signal(tag_layout, name=f"inject_tags_{i}")
            m.d.comb += [
                value.eq(Mux(load & row_mask[i], self.a.payload[i], 0)),
                tags.first.eq(go & first & row_mask[i]),
                tags.last.eq(finishing & row_mask[i]),
                tags.end.eq(finishing & end_mask[i]),
            ]
            injected_a.append(value)
            injected_tags.append(tags)
        for j in range(cols):
            value = Signal(signed(8), name=f"inject_w_{j}")
            m.d.comb += value.eq(Mux(load & col_mask[j], self.w.payload[j], 0))
            injected_w.append(value)

        # ---- skew and operand hops (or one broadcast register per operand) ----
        if broadcast:
            a_regs = [delay(injected_a[i], 1, f"a_bcast_{i}") for i in range(rows)]
            w_regs = [delay(injected_w[j], 1, f"w_bcast_{j}") for j in range(cols)]
            a_hop = [[a_regs[i]] * n_groups for i in range(rows)]
            w_hop = [list(w_regs) for _ in range(rows)]
            tag_at = [[delay(injected_tags[i], 1 + self.mac_latency, f"tag_{i}",
                             reset_less=False)] * n_groups for i in range(rows)]
        else:
            # a_hop[i][p]: activation at PE (i, p); row i is skewed by i, one hop per group.
            a_hop = []
            for i in range(rows):
                chain = [delay(injected_a[i], i + 1, f"a_skew_{i}")]
                for p in range(1, n_groups):
                    chain.append(delay(chain[-1], 1, f"a_hop_{i}_{p}"))
                a_hop.append(chain)
            # w_hop[i][j]: weight lane j at row i; group p is skewed by p, one hop per row.
            w_hop = [[delay(injected_w[j], group_of[j] + 1, f"w_skew_{j}")
                      for j in range(cols)]]
            for i in range(1, rows):
                w_hop.append([delay(w_hop[-1][j], 1, f"w_hop_{i}_{j}") for j in range(cols)])
            # tags at the accumulators: the operands' timing plus the multiplier latency
            tag_at = []
            for i in range(rows):
                chain = [delay(injected_tags[i], i + 1 + self.mac_latency, f"tag_skew_{i}",
                               reset_less=False)]
                for p in range(1, n_groups):
                    chain.append(delay(chain[-1], 1, f"tag_hop_{i}_{p}", reset_less=False))
                tag_at.append(chain)

        # ---- processing elements ----
        results = [[None] * cols for _ in range(rows)]   # what the output reads
        for i in range(rows):
            for p, group in enumerate(groups):
                unit = self._unit(group)
                m.submodules[f"pe_{i}_{p}"] = unit
                m.d.comb += [unit.ce.eq(enable), unit.c.eq(a_hop[i][p]),
                             unit.a.eq(w_hop[i][group[0]])]
                products = [unit.ac]
                if isinstance(unit, DualMAC):
                    if len(group) == 2:
                        m.d.comb += unit.b.eq(w_hop[i][group[1]])
                        products.append(unit.bc)
                    else:
                        m.d.comb += unit.b.eq(0)
                tags = tag_at[i][p]
                for lane, product in zip(group, products):
                    if self.hold_registers:
                        acc = Signal(acc_shape, name=f"acc_{i}_{lane}", reset_less=True)
                        total = Signal(acc_shape, name=f"total_{i}_{lane}")
                        m.d.comb += total.eq(Mux(tags.first, 0, acc) + product)
                        with m.If(enable):
                            m.d.sync += acc.eq(total)
                        held = Signal(acc_shape, name=f"hold_{i}_{lane}", reset_less=True)
                        with m.If(enable & tags.last):
                            m.d.sync += held.eq(total)
                        results[i][lane] = held
                    else:
                        # Cleared by its synchronous reset when its row is read, not by
                        # the `first` tag: a multiplexer in front of the adder costs a LUT
                        # per bit on an iCE40 (the carry logic takes the adder's operands
                        # as they are). After a reset the flush clears it.
                        acc = Signal(acc_shape, name=f"acc_{i}_{lane}", reset_less=True)
                        with m.If(flushing):
                            m.d.sync += acc.eq(0)
                        with m.Elif(enable):
                            with m.If(row_done[i]):
                                m.d.sync += acc.eq(0)
                            with m.Else():
                                m.d.sync += acc.eq(acc + product)
                        results[i][lane] = acc
            with m.If(enable):
                m.d.sync += [row_done[i].eq(tag_at[i][-1].last),
                             row_end[i].eq(tag_at[i][-1].end)]

        # ---- output: the finished row (systolic: at most one at a time, by the tile
        # spacing; broadcast: the lowest one not read yet), from its hold registers, or from
        # its accumulators, which bubbles leave unchanged until the next tile's first step,
        # late enough by `drained` ----
        out = out_i.payload
        m.d.comb += out_i.valid.eq(out_valid)
        for j in range(cols):
            m.d.comb += out.data[j].eq(functools.reduce(
                operator.or_, [Mux(reading[i], results[i][j], 0) for i in range(rows)]))
        m.d.comb += [
            out.row.eq(functools.reduce(
                operator.or_, [Mux(reading[i], i, 0) for i in range(rows)])),
            out.last.eq((reading & row_end).any()),
        ]
        return m
