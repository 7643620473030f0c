"""Synchronous memory read ports that Yosys maps to block RAM without collision logic.

An Amaranth synchronous read port keeps read-before-write semantics when the same address is
written in the same cycle. The iCE40 EBR (and the ECP5 DP16KD in some modes) leaves that case
undefined, so Yosys emulates it: a register per written data bit, an address comparator and a
bypass multiplexer per read data bit. On the accelerator top that cost about 150 flip-flops and
as many LUTs on the buffers alone, and no user of these memories ever reads an address in the
cycle it is written (each module's docstring says why).

:func:`registered_read_port` builds the port as an asynchronous read plus a data register with
no reset; Yosys' ``memory_dff`` merges the register into the block RAM's output register and
honours the memory's ``no_rw_check`` attribute on the way (it does not for a port Amaranth
emits as synchronous). In simulation the two forms behave the same: the register samples the
memory before the write of the same clock edge lands.
"""

from amaranth import Signal

__all__ = ["NO_RW_CHECK", "registered_read_port"]

#: Memory attribute: a read and a write of one address in the same cycle never happen (or the
#: read data is not used), so synthesis need not model the collision.
NO_RW_CHECK = {"no_rw_check": 1}


def registered_read_port(m, memory, name, enable=1):
    """Synchronous read of ``memory`` (latency 1) whose data holds while ``enable`` is low.

    Parameters
    ----------
    m : Module
    memory : amaranth.lib.memory.Memory
        Give it the :data:`NO_RW_CHECK` attribute, or Yosys emulates collisions after all.
    name : str
        Prefix of the data register's name.
    enable : Value
        Read enable: the register loads only when it is high.

    Returns
    -------
    (address, data)
        The address to drive (combinationally) and the registered data.
    """
    port = memory.read_port(domain="comb")
    data = Signal(memory.shape, name=f"{name}_data", reset_less=True)
    with m.If(enable):
        m.d.sync += data.eq(port.data)
    return port.addr, data
