"""The memory app's input error, raised by its reads and writes alike."""

from __future__ import annotations

from tracing.platform.errors import Invalid
from tracing.platform.failures import Failure, FailureClass


class MemoryInputError(Failure, Invalid):
    """Bad input to a memory function; `field` names what was wrong. A Failure for the model
    calling a memory tool, an Invalid (422, beside the field) for the pages and the API; its
    message names the field already and is model-readable, so it is shown as it is."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(FailureClass.INVALID_REQUEST, message)
        self.field = field

    def __str__(self) -> str:
        return self.message
