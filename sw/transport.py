"""Byte transports between the driver and a device: serial port, TCP socket.

A transport moves bytes and nothing else; framing, CRC and retries live in the driver. Every
transport has ``write(data)``, ``read(timeout)`` (whatever arrived within ``timeout`` seconds,
possibly ``b""``), ``close()`` and ``description``.
"""

from __future__ import annotations

import socket
import time

from .errors import QaccelLinkError, QaccelNotFoundError

__all__ = ["Transport", "SerialTransport", "TcpTransport"]


class Transport:
    """Interface of a byte transport."""

    description = "transport"

    def write(self, data):
        raise NotImplementedError

    def read(self, timeout):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """A serial port through pyserial (a board's UART, or a co-simulation's pseudo-terminal).

    Parameters
    ----------
    port : str
        Device path, e.g. ``/dev/ttyUSB1``.
    baud : int
        Line rate; the device's rate is reported by INFO.
    """

    def __init__(self, port, baud=3_000_000):
        import serial  # pyserial: a base dependency, imported here to keep import time low

        try:
            self._port = serial.Serial(port, baudrate=baud, timeout=0, write_timeout=10)
        except serial.SerialException as exc:
            raise QaccelNotFoundError(
                f"cannot open serial port {port!r}: {exc}. Is the board plugged in? "
                f"(iCEBreaker: the second FTDI interface, often /dev/ttyUSB1; check "
                f"`ls /dev/ttyUSB*` and your permissions on it)") from exc
        self.description = f"serial:{port}?baud={baud}"

    def write(self, data):
        self._port.write(data)
        self._port.flush()

    def read(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            waiting = self._port.in_waiting
            if waiting:
                return self._port.read(waiting)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            self._port.timeout = min(remaining, 0.05)
            first = self._port.read(1)
            self._port.timeout = 0
            if first:
                return first + self._port.read(self._port.in_waiting)

    def close(self):
        self._port.close()


class TcpTransport(Transport):
    """A TCP connection to a co-simulation or a bridge running elsewhere."""

    def __init__(self, host, port, connect_timeout=10.0):
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise QaccelNotFoundError(f"cannot connect to tcp://{host}:{port}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.description = f"tcp://{host}:{port}"

    def write(self, data):
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise QaccelLinkError(f"{self.description}: send failed: {exc}") from exc

    def read(self, timeout):
        self._sock.settimeout(max(timeout, 0.0001))
        try:
            data = self._sock.recv(1 << 16)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise QaccelLinkError(f"{self.description}: receive failed: {exc}") from exc
        if not data:
            raise QaccelLinkError(f"{self.description}: the peer closed the connection")
        return data

    def close(self):
        self._sock.close()
