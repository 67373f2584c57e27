"""A clock a test sets, for code that takes its clock as an argument (time.monotonic's shape)."""


class Clock:
    """Starts at 1000 s; the test moves it (``clock.now += 5``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
