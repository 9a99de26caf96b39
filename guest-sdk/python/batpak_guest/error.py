"""`ReactError`: raise it from `on_batch` to fail the call."""


class ReactError(Exception):
    """Why a `react` call failed: the WIT `react-error` record.

    With `event` (an `Event` of the batch, or its batch index) the host parks
    exactly that event; without it the host retries and bisects the batch to
    find the culprit. Any other exception raised by `on_batch` becomes a
    `ReactError` without an event.
    """

    def __init__(self, message, event=None):
        super().__init__(message)
        self.message = str(message)
        if event is not None and not isinstance(event, int):
            event = event.index
        self.event = event

    @classmethod
    def at(cls, event, message):
        """An error caused by `event` (an `Event` or a batch index): the host parks it."""
        return cls(message, event)
