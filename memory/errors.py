"""The memory app's input error, raised by its reads and writes alike."""

from __future__ import annotations

from tracing.platform.failures import Failure, FailureClass


class MemoryInputError(Failure):
    """Bad input to a memory function; `field` names what was wrong (message is model-readable)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(FailureClass.INVALID_REQUEST, message)
        self.field = field
