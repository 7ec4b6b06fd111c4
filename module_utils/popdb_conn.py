"""Connection helpers shared by the data modules (popdb_merge, popdb_consolidate)."""

from __future__ import annotations


def with_password(dsn: str, password: str | None) -> str:
    """Add a password (from the vault, passed with no_log) to a libpq connection string."""
    if not password:
        return dsn
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, password=password)


def require_psycopg(module, module_name: str) -> None:
    """Fail the module clearly when psycopg 3 is missing on the host that runs it."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        module.fail_json(msg=f"python3 psycopg (3.x) is required on the host running {module_name}")
