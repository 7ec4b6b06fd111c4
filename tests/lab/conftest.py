"""Lab tests: print the full-lab timings in the terminal summary."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter):
    mod = sys.modules.get("test_lab_full")
    timings = getattr(mod, "TIMINGS", None)
    if timings:
        terminalreporter.write_sep("-", f"lab timings (size full, lab id {mod.LAB_ID})")
        for k, v in timings.items():
            terminalreporter.write_line(f"{k:>8}: {v:.1f} s")
