"""Time left on a progress bar, from the rate measured so far: one piece shared by every step's bar.

Every CLI step reports progress through the CLI's shared `Progress` (a tqdm bar on stderr and, inside a background
job, the job's progress and message in the workspace, which the app's job panel shows). Each stage of a step
(embedding, valuation, projection, clustering, fine-tuning) gets its own `Eta`, because stages run at different
rates: the time left is the stage's elapsed time times (1 - f) / f, shown once the stage has run a few seconds and
moved a little, so the first noisy estimates are not shown.
"""
from __future__ import annotations

import time
from typing import Callable


def format_duration(seconds: float) -> str:
    """A short human duration: "8 s", "40 s", "2 min 10 s", "about 14 min", "1 h 05 min"."""
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{max(1, round(s))} s"
    if s < 60:
        return f"{int(round(s / 5) * 5)} s"
    if s < 600:
        m, r = divmod(int(round(s / 10) * 10), 60)
        return f"{m} min {r:02d} s" if r else f"{m} min"
    if s < 3600:
        return f"{int(round(s / 60))} min"
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h} h {m:02d} min"


def format_eta(seconds: float | None) -> str:
    """ "about 2 min 10 s left", or "" when unknown."""
    if seconds is None:
        return ""
    return f"about {format_duration(seconds)} left"


class Eta:
    """Seconds left in one stage, from its measured rate (elapsed / fraction done).

    Args:
        min_elapsed: Seconds the stage must have run before an estimate is given.
        min_fraction: Share of the stage that must be done before an estimate is given.
        clock: Monotonic clock (tests pass a fake one).
    """

    def __init__(self, *, min_elapsed: float = 2.0, min_fraction: float = 0.01,
                 clock: Callable[[], float] | None = None) -> None:
        self.min_elapsed, self.min_fraction = min_elapsed, min_fraction
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self.first_fraction: float | None = None

    def seconds_left(self, fraction: float) -> float | None:
        """Seconds left at `fraction` done (0..1) of the stage, or None while too early to tell."""
        f = min(max(float(fraction), 0.0), 1.0)
        if self.first_fraction is None:  # a stage resumed at 40 % measures its rate from there
            self.first_fraction = f
            self.start = self.clock()
        elapsed = self.clock() - self.start
        moved = f - self.first_fraction
        if f >= 1.0:
            return 0.0
        if elapsed < self.min_elapsed or moved < self.min_fraction:
            return None
        return elapsed * (1.0 - f) / moved

    def text(self, fraction: float) -> str:
        """ "about 2 min left" or "" (see `seconds_left`)."""
        left = self.seconds_left(fraction)
        return "" if left is None or left <= 0 else format_eta(left)


def with_eta(message: str, eta: str) -> str:
    """`message` with " · <eta>" appended when there is one."""
    if not eta:
        return message
    return f"{message} · {eta}" if message else eta
