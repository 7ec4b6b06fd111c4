"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The engine lives in module_utils/ and is imported the way the modules see it.
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import ansible.module_utils  # noqa: E402

# Our module_utils/ are imported as ansible.module_utils.<name>, exactly as modules import them.
ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))

from pgserver import PgServer, start_server  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    """One real PostgreSQL 15 cluster per test session (per xdist worker)."""
    server = start_server()
    yield server
    server.stop()
