"""Settings for the whole suite.

Hypothesis' per-example deadline measures wall-clock time, which on a shared 2-core machine
says more about the neighbours than about the code (a property test failed at 345 ms under
load). Speed is measured by the benchmarks under ``bench/``, never by tests: no deadline.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("stepguard", deadline=None)
settings.load_profile("stepguard")
