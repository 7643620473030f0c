"""A small stand-in for the accelerator top, so boards can be built and tested before it lands.

:class:`StandIn` has the interface the board flow expects of any design (see
:class:`qaccel.boards.core.BoardCore`): a byte stream from the host ``rx``, a byte stream to
the host ``tx``, and ``error``/``busy`` outputs for the LEDs (the port contract of
:class:`qaccel.hw.top.AcceleratorTop`). Behind it sit the same kinds of
hard blocks as the real engines, sized from the :class:`~qaccel.boards.base.BuildConfig`:
``rows x cols`` int8 products on :class:`~qaccel.hw.dual_mac.DualMAC` (so the DSP count of a
build can be checked against :mod:`~qaccel.boards.estimate`) with int32 accumulators, and
``pe`` XNOR-popcount dot products of ``simd`` bits.

Protocol (little-endian, no framing: a bring-up aid, not the qaccel wire protocol)
----------------------------------------------------------------------------------
``0x00 a[rows] w[cols]``
    INT8 outer product, accumulated: ``acc[r][c] += a[r] * w[c]`` (int32, wrapping).
``0x01 a[rows] w[cols]``
    The same after clearing the accumulators.
    Reply to both: ``rows * cols`` int32, row-major.
``0x02 x[simd/8] w0[simd/8] ... w{pe-1}[simd/8]``
    Binary dot products, bit ``i`` of the vector is bit ``i % 8`` of byte ``i // 8``
    (1 = +1, 0 = -1). Reply: ``pe`` int16, ``2 * popcount(xnor(x, w_p)) - simd``.

Any other header byte (or the header of an absent engine) pulses ``error`` and is dropped.
While a reply is computed and sent, ``rx.ready`` is low.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..hw.dual_mac import DualMAC, SingleMultiplier
from ..hw.popcount import popcount

__all__ = ["StandIn", "HEADER_MAC", "HEADER_CLEAR_MAC", "HEADER_BINARY"]

HEADER_MAC = 0x00
HEADER_CLEAR_MAC = 0x01
HEADER_BINARY = 0x02

_ACC_BITS = 32
_DOT_BITS = 16


def _rotate_bytes(m, registers):
    """Shift the concatenation of ``registers`` down by one byte, the low byte to the top."""
    for index, register in enumerate(registers):
        following = registers[(index + 1) % len(registers)]
        m.d.sync += register.eq(Cat(register[8:], following[:8]))


class StandIn(wiring.Component):
    """Outer-product MAC and binary dot products behind a byte stream.

    Parameters
    ----------
    config : BuildConfig
        ``rows``, ``cols``, ``dsp_backend``, ``int8``; ``pe``, ``simd``, ``binary``.

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Bytes from the host.
    tx : ``Out(stream.Signature(8))``
        Reply bytes to the host.
    error : ``Out(1)``
        Pulses for one cycle when a header byte is rejected.
    busy : ``Out(1)``
        High from the last byte of a command to the last byte of its reply.
    """

    def __init__(self, config):
        from .base import BuildConfig

        if not isinstance(config, BuildConfig):
            raise TypeError(f"config must be a BuildConfig, not {config!r}")
        if config.binary and config.simd > 2 ** (_DOT_BITS - 1) - 1:
            raise ValueError(f"simd must be below {2 ** (_DOT_BITS - 1)}, not {config.simd!r}")
        self._config = config
        probe = DualMAC(config.dsp_backend)
        probe._MustUse__silence = True  # asked for its latency only, never elaborated
        self._mac_latency = probe.latency
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "error": Out(1),
            "busy": Out(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def mac_latency(self):
        """Enabled clock edges from the operand registers to the products."""
        return self._mac_latency

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        rows, cols = cfg.rows, cfg.cols
        int8_bytes = rows + cols if cfg.int8 else 0
        vector_bytes = cfg.simd // 8
        binary_bytes = vector_bytes * (1 + cfg.pe) if cfg.binary else 0
        reply_int8 = rows * cols * _ACC_BITS // 8 if cfg.int8 else 0
        reply_binary = cfg.pe * _DOT_BITS // 8 if cfg.binary else 0

        # Command bytes are shifted in at the top, so after the last one the first is at bit 0.
        int8_operands = Signal(max(8 * int8_bytes, 1))
        binary_operands = Signal(max(8 * binary_bytes, 1))
        to_receive = Signal(range(max(int8_bytes, binary_bytes, 1) + 1))
        clear = Signal()
        binary_mode = Signal()
        countdown = Signal(range(self.mac_latency + 2))
        to_send = Signal(range(max(reply_int8, reply_binary, 1) + 1))

        # -- INT8: operands -> DualMAC grid -> accumulators --------------------------------
        accumulators = [[Signal(signed(_ACC_BITS), name=f"acc_{r}_{c}") for c in range(cols)]
                        for r in range(rows)] if cfg.int8 else []
        products = [[None] * cols for _ in range(rows)]
        if cfg.int8:
            a_bytes = [int8_operands[8 * r:8 * r + 8].as_signed() for r in range(rows)]
            w_bytes = [int8_operands[8 * (rows + c):8 * (rows + c) + 8].as_signed()
                       for c in range(cols)]
            for r in range(rows):
                for c in range(0, cols, 2):
                    if c + 1 < cols or cfg.dsp_backend in ("ice40", "dsp48e2"):
                        mac = DualMAC(cfg.dsp_backend)
                        m.submodules[f"mac_{r}_{c // 2}"] = mac
                        m.d.comb += [mac.a.eq(w_bytes[c]), mac.c.eq(a_bytes[r])]
                        products[r][c] = mac.ac
                        if c + 1 < cols:
                            m.d.comb += mac.b.eq(w_bytes[c + 1])
                            products[r][c + 1] = mac.bc
                    else:
                        # odd last column without packing: one plain multiplier
                        single = SingleMultiplier(self._mac_latency)
                        m.submodules[f"mul_{r}_{c}"] = single
                        m.d.comb += [single.a.eq(w_bytes[c]), single.c.eq(a_bytes[r])]
                        products[r][c] = single.ac
        flat_accumulators = [acc for row in accumulators for acc in row]
        flat_products = [product for row in products for product in row] if cfg.int8 else []

        # -- binary: XNOR-popcount per PE ---------------------------------------------------
        dots = []
        if cfg.binary:
            x = binary_operands[:cfg.simd]
            for p in range(cfg.pe):
                w = binary_operands[cfg.simd * (p + 1):cfg.simd * (p + 2)]
                dot = Signal(signed(_DOT_BITS), name=f"dot_{p}")
                dots.append(dot)
                # popcount() slices its input bit by bit: give it a signal, not an
                # expression (Amaranth re-lowers the expression for every slice: 20x slower)
                agree = Signal(cfg.simd, name=f"agree_{p}")
                m.d.comb += agree.eq(~(x ^ w))
                count = popcount(agree)
                # registered in COMPUTE (the popcount tree is long on LUT4 fabrics)
                with m.If(countdown == 1):
                    m.d.sync += dot.eq((count << 1) - cfg.simd)

        # -- control --------------------------------------------------------------------------
        with m.FSM():
            with m.State("HEADER"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    byte = self.rx.payload
                    with m.If(((byte == HEADER_MAC) | (byte == HEADER_CLEAR_MAC))
                              & Const(cfg.int8)):
                        m.d.sync += [clear.eq(byte[0]), binary_mode.eq(0),
                                     to_receive.eq(int8_bytes)]
                        m.next = "OPERANDS"
                    with m.Elif((byte == HEADER_BINARY) & Const(cfg.binary)):
                        m.d.sync += [binary_mode.eq(1), to_receive.eq(binary_bytes)]
                        m.next = "OPERANDS"
                    with m.Else():
                        m.d.comb += self.error.eq(1)
            with m.State("OPERANDS"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    with m.If(binary_mode):
                        if cfg.binary:
                            m.d.sync += binary_operands.eq(
                                Cat(binary_operands[8:], self.rx.payload))
                    with m.Else():
                        if cfg.int8:
                            m.d.sync += int8_operands.eq(Cat(int8_operands[8:], self.rx.payload))
                    m.d.sync += to_receive.eq(to_receive - 1)
                    with m.If(to_receive == 1):
                        # the operand registers settle now; products appear latency + 1
                        # cycles later (the DualMAC input registers sample next cycle)
                        m.d.sync += countdown.eq(self.mac_latency + 1)
                        m.next = "COMPUTE"
            with m.State("COMPUTE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += countdown.eq(countdown - 1)
                with m.If(countdown == 1):
                    with m.If(binary_mode):
                        m.d.sync += to_send.eq(reply_binary)
                    with m.Else():
                        m.d.sync += to_send.eq(reply_int8)
                        for acc, product in zip(flat_accumulators, flat_products):
                            m.d.sync += acc.eq(Mux(clear, 0, acc) + product)
                    m.next = "REPLY"
            with m.State("REPLY"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                with m.If(binary_mode):
                    if cfg.binary:
                        m.d.comb += self.tx.payload.eq(dots[0][:8])
                with m.Else():
                    if cfg.int8:
                        m.d.comb += self.tx.payload.eq(flat_accumulators[0][:8])
                with m.If(self.tx.ready):
                    # Rotate the reply registers by one byte: after the whole reply they are
                    # back in place, so the accumulators need no copy for sending.
                    with m.If(binary_mode):
                        _rotate_bytes(m, dots)
                    with m.Else():
                        _rotate_bytes(m, flat_accumulators)
                    m.d.sync += to_send.eq(to_send - 1)
                    with m.If(to_send == 1):
                        m.next = "HEADER"
        return m
