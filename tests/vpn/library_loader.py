"""Make library/ importable for in-process module runs."""

import os
import sys

_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "library")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)
