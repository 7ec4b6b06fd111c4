"""Run one merge in a child process (the kill tests SIGKILL it).

Usage: merge_child.py PROVINCE_DSN CITY_DSN CITY [STAGE MARKER]
With STAGE (e.g. ``applied:person``, ``before_commit:``) the child writes MARKER when it reaches
that point inside the province transaction and then sleeps, waiting to be killed.
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))
from ansible.module_utils.popdb_merge import merge_city  # noqa: E402


def main() -> None:
    prov, city_dsn, city = sys.argv[1:4]
    stage = sys.argv[4] if len(sys.argv) > 4 else None
    marker = sys.argv[5] if len(sys.argv) > 5 else None

    def pause(point, table):
        if stage and f"{point}:{table or ''}" == stage:
            with open(marker, "w") as fh:
                fh.write("reached\n")
            time.sleep(120)

    merge_city(prov, city_dsn, city, _pause_hook=pause)


if __name__ == "__main__":
    main()
