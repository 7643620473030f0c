"""Exceptions of the qaccel host side. Each extends the built-in type it resembles, so callers
can catch ``TimeoutError`` or ``ConnectionError`` without knowing qaccel."""

__all__ = ["QaccelError", "QaccelTimeoutError", "QaccelLinkError", "QaccelDeviceError",
           "QaccelNotFoundError"]


class QaccelError(Exception):
    """Base class of every qaccel error."""


class QaccelTimeoutError(QaccelError, TimeoutError):
    """The device did not answer (or finish) within the timeout."""


class QaccelLinkError(QaccelError, ConnectionError):
    """The link kept corrupting or losing frames after the retries, or it closed."""


class QaccelNotFoundError(QaccelError, FileNotFoundError):
    """No device, board or tool where one was named."""


class QaccelDeviceError(QaccelError):
    """The device refused a command; ``status`` is the :class:`~qaccel.sw.protocol.Status`."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status
