"""The peg-in-hole task's hindsight label, ``insertion_point``: defined in ``sim.hindsight`` (the task's
side, numpy only); this module keeps the old import path."""

from __future__ import annotations

from sim.hindsight import MIN_DROP, insertion_point  # noqa: F401
