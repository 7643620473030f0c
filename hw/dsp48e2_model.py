"""Behavioural model of the Xilinx DSP48E2 slice, restricted to the mode qaccel uses.

Yosys has no simulation model of DSP48E2, and Xilinx' own (unisims) is not redistributable
with this project, so the WP486 dual-product datapath is simulated with this model. It is
written from the UltraScale DSP slice user guide (UG579) and covers exactly one static
configuration of the slice:

* pre-adder ``AD = A[26:0] + D`` (``INMODE = 5'b00100``: A2 into the pre-adder, D enabled,
  add; ``PREADDINSEL = "A"``, ``AMULTSEL = "AD"``), 27 bits, wrapping;
* multiplier ``M = AD * B`` (27 x 18 signed, 45 bits; ``BMULTSEL = "B"``,
  ``USE_MULT = "MULTIPLY"``);
* ALU ``P = M`` (``OPMODE = 9'b00_000_01_01``: W = 0, Z = 0, X = Y = M; ``ALUMODE = 0``,
  carry-in 0, ``USE_SIMD = "ONE48"``), 48 bits;
* the pipeline registers A2 (``AREG``), B1/B2 (``BREG``), D (``DREG``), AD (``ADREG``),
  M (``MREG``) and P (``PREG``), each with its own clock enable. The synchronous resets are not
  modelled: qaccel ties every ``RST*`` pin low, so the registers only hold their
  configuration value 0 until first loaded, as in the device.

The real slice keeps M as two partial products that the ALU adds; only their sum is
observable, so it is modelled as one product. Control inputs (INMODE, OPMODE, ALUMODE,
CARRYINSEL) are constants in this mode and are unregistered (``*REG = 0``).

:data:`DSP48E2_STATIC_ATTRIBUTES` and :data:`DSP48E2_STATIC_INPUTS` are the attribute and
port values of that mode; :class:`qaccel.hw.dual_mac.DualMAC` instantiates the real primitive
with them, so the model and the primitive cannot drift apart.
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DSP48E2Model", "dsp48e2_attributes", "DSP48E2_STATIC_ATTRIBUTES", "DSP48E2_STATIC_INPUTS",
           "DSP48E2_CLOCK_ENABLES"]

#: Attributes (Verilog parameters) of the modelled mode, except the register counts.
DSP48E2_STATIC_ATTRIBUTES = {
    "AMULTSEL": "AD",
    "BMULTSEL": "B",
    "PREADDINSEL": "A",
    "USE_MULT": "MULTIPLY",
    "USE_SIMD": "ONE48",
    "USE_PATTERN_DETECT": "NO_PATDET",
    "A_INPUT": "DIRECT",
    "B_INPUT": "DIRECT",
    "CREG": 0,
    "INMODEREG": 0,
    "OPMODEREG": 0,
    "ALUMODEREG": 0,
    "CARRYINREG": 0,
    "CARRYINSELREG": 0,
}

#: Constant input ports of the modelled mode: ``name: (width, value)``.
DSP48E2_STATIC_INPUTS = {
    "INMODE": (5, 0b00100),       # A2 + D in the pre-adder
    "OPMODE": (9, 0b000000101),   # W = 0, Z = 0, X = Y = M: P = A*B product
    "ALUMODE": (4, 0b0000),       # Z + W + X + Y + CIN
    "CARRYINSEL": (3, 0b000),
    "CARRYIN": (1, 0),
    "C": (48, 0),
    "ACIN": (30, 0),
    "BCIN": (18, 0),
    "PCIN": (48, 0),
    "CARRYCASCIN": (1, 0),
    "MULTSIGNIN": (1, 0),
    "CEA1": (1, 0),
    "CEC": (1, 0),
    "CECTRL": (1, 0),
    "CEINMODE": (1, 0),
    "CEALUMODE": (1, 0),
    "CECARRYIN": (1, 0),
    "RSTA": (1, 0),
    "RSTB": (1, 0),
    "RSTC": (1, 0),
    "RSTD": (1, 0),
    "RSTM": (1, 0),
    "RSTP": (1, 0),
    "RSTCTRL": (1, 0),
    "RSTINMODE": (1, 0),
    "RSTALUMODE": (1, 0),
    "RSTALLCARRYIN": (1, 0),
}

#: Clock enables of the modelled registers (the model's ports of the same names).
DSP48E2_CLOCK_ENABLES = ("CEA2", "CEB1", "CEB2", "CED", "CEAD", "CEM", "CEP")


def _check_register_count(name, value, allowed):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
    return value


def dsp48e2_attributes(*, areg, breg, dreg, adreg, mreg, preg):
    """Verilog parameters of a real DSP48E2 in the modelled mode with these register counts."""
    return {
        **DSP48E2_STATIC_ATTRIBUTES,
        "AREG": areg, "ACASCREG": areg,
        "BREG": breg, "BCASCREG": breg,
        "DREG": dreg, "ADREG": adreg, "MREG": mreg, "PREG": preg,
    }


class DSP48E2Model(wiring.Component):
    """DSP48E2 in pre-add / multiply mode: ``P = (A[26:0] + D) * B`` with pipeline registers.

    Parameters
    ----------
    areg : {0, 1}
        A input registers (A2). ``AREG = 2`` (A1 and A2) is not modelled.
    breg : {0, 1, 2}
        B input registers (``2``: B1 then B2).
    dreg, adreg, mreg, preg : {0, 1}
        D input, pre-adder output, multiplier output and P output registers.

    Members
    -------
    A : ``In(unsigned(30))``
        A port; bits 26:0 enter the pre-adder (as a signed 27-bit value).
    B : ``In(unsigned(18))``
        B port, the signed 18-bit multiplier operand.
    D : ``In(unsigned(27))``
        D port, signed 27-bit pre-adder operand.
    CEA2, CEB1, CEB2, CED, CEAD, CEM, CEP : ``In(1)``
        Clock enables of the A2, B1, B2, D, AD, M and P registers (UG579 names). With
        ``breg = 1`` only B2 (``CEB2``) exists.
    P : ``Out(unsigned(48))``
        Result, a 48-bit two's complement value.

    Attributes
    ----------
    latency : int
        Clock cycles from A/D to P (``areg or dreg``, + ``adreg + mreg + preg``); B must
        arrive ``latency_b`` cycles before P.
    """

    def __init__(self, *, areg=1, breg=2, dreg=1, adreg=1, mreg=1, preg=1):
        self.areg = _check_register_count("areg", areg, (0, 1))
        self.breg = _check_register_count("breg", breg, (0, 1, 2))
        self.dreg = _check_register_count("dreg", dreg, (0, 1))
        self.adreg = _check_register_count("adreg", adreg, (0, 1))
        self.mreg = _check_register_count("mreg", mreg, (0, 1))
        self.preg = _check_register_count("preg", preg, (0, 1))
        if self.areg != self.dreg:
            # A2 and D meet in the pre-adder; unequal depths would add a[k] to b[k-1].
            raise ValueError(f"areg ({areg}) and dreg ({dreg}) must be equal so that A and D "
                             f"reach the pre-adder in the same cycle")
        members = {
            "A": In(unsigned(30)),
            "B": In(unsigned(18)),
            "D": In(unsigned(27)),
            "P": Out(unsigned(48)),
        }
        for name in DSP48E2_CLOCK_ENABLES:
            members[name] = In(1)
        super().__init__(members)

    @property
    def attributes(self):
        """Verilog parameters of the real primitive configured like this model."""
        return dsp48e2_attributes(areg=self.areg, breg=self.breg, dreg=self.dreg,
                                  adreg=self.adreg, mreg=self.mreg, preg=self.preg)

    @property
    def latency(self):
        return self.areg + self.adreg + self.mreg + self.preg

    @property
    def latency_b(self):
        return self.breg + self.mreg + self.preg

    def elaborate(self, platform):
        m = Module()

        def stage(value, enable, present, shape, name):
            # One optional pipeline register; RST* are tied low, so it is reset-less.
            if not present:
                return value
            reg = Signal(shape, name=name, reset_less=True)
            with m.If(enable):
                m.d.sync += reg.eq(value)
            return reg

        a2 = stage(self.A, self.CEA2, self.areg, unsigned(30), "a2")
        d = stage(self.D, self.CED, self.dreg, unsigned(27), "d_reg")
        if self.breg == 2:
            b1 = stage(self.B, self.CEB1, True, unsigned(18), "b1")
            b2 = stage(b1, self.CEB2, True, unsigned(18), "b2")
        else:
            b2 = stage(self.B, self.CEB2, self.breg, unsigned(18), "b2")

        # Pre-adder: 27-bit two's complement, wraps (no saturation in the slice).
        ad_sum = Signal(signed(27))
        m.d.comb += ad_sum.eq(a2[:27].as_signed() + d.as_signed())
        ad = stage(ad_sum, self.CEAD, self.adreg, signed(27), "ad")

        product = Signal(signed(45))
        m.d.comb += product.eq(ad * b2.as_signed())
        mult = stage(product, self.CEM, self.mreg, signed(45), "m")

        alu = Signal(signed(48))
        m.d.comb += alu.eq(mult)  # W = Z = 0, X + Y = M, CIN = 0
        p = stage(alu, self.CEP, self.preg, signed(48), "p")
        m.d.comb += self.P.eq(p)
        return m
