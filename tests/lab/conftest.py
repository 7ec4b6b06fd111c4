"""Lab tests: print the full-lab timings in the terminal summary."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    from test_lab_full import LAB_ID, TIMINGS

    if TIMINGS:
        terminalreporter.write_sep("-", f"lab timings (size full, lab id {LAB_ID})")
        for k, v in TIMINGS.items():
            terminalreporter.write_line(f"{k:>8}: {v:.1f} s")
