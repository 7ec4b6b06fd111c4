"""Versioned schema of the population database (province and the 17 city databases).

Everything lives in schema ``popdb``. ``migrate(conn, role)`` applies the migrations of
``MIGRATIONS`` that are not yet recorded in ``popdb.schema_version`` and returns their versions;
it is idempotent and serialised by an advisory lock, each migration in its own transaction.

``MIGRATIONS`` is an ordered list of ``(version, name, sql)``. ``sql`` is either one string (same
in every role) or a dict ``{"province": sql, "city": sql}`` (a missing role means "nothing to do
in that role", the version is still recorded). Versions 1..99 belong to the data engine
(issue #6); versions >= 100 are reserved for the region-change engine, which appends to the list.

Roles:
- ``city``: the city database (source of the nightly merge). Synced tables carry statement-level
  triggers that write every touched primary key into ``popdb.change_log`` together with the
  writing transaction's 64-bit id (``pg_current_xact_id()``); see ``popdb_merge`` for how the
  merge consumes it exactly once.
- ``province``: the province database (target). Adds the merge bookkeeping: per-city watermark
  (``merge_state``), the losing versions of cross-city duplicates (``<table>_dup``), the conflict
  log, job history, quarantine and the archive catalog.

``REGION_COLUMNS`` registers every column that holds a 12-digit region code; the region-change
engine cascades over exactly this registry.
"""

from __future__ import annotations

SCHEMA = "popdb"

# Tables synchronised city -> province by popdb_merge: table -> primary-key column.
SYNC_TABLES: dict[str, str] = {
    "person": "id_no",
    "household": "household_id",
    "birth_event": "birth_id",
    "death_event": "id_no",
}

# Every column holding a 12-digit region code (table -> columns).
REGION_COLUMNS: dict[str, list[str]] = {
    "person": ["hukou_region", "residence_region", "floating_region", "mgmt_unit"],
    "household": ["region_code"],
    "birth_event": ["birth_place"],
    "death_event": ["death_place"],
    # province only: losing versions of cross-city duplicates
    "person_dup": ["hukou_region", "residence_region", "floating_region", "mgmt_unit"],
    "household_dup": ["region_code"],
    "birth_event_dup": ["birth_place"],
    "death_event_dup": ["death_place"],
    # dictionary and mapping (bookkeeping of the region engine itself)
    "region": ["code", "parent_code"],
    "region_mapping": ["provincial_code", "national_code"],
}

_CORE = r"""
CREATE TABLE popdb.region (
    code        char(12) PRIMARY KEY,
    name        varchar(100) NOT NULL,
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 5),
    parent_code char(12),
    valid_from  date NOT NULL DEFAULT DATE '1980-01-01',
    valid_to    date,
    CHECK (code ~ '^[0-9]{12}$')
);
COMMENT ON COLUMN popdb.region.level IS '1 province, 2 city, 3 county, 4 township, 5 village';
CREATE INDEX region_parent_idx ON popdb.region (parent_code);
CREATE INDEX region_level_idx ON popdb.region (level);

CREATE TABLE popdb.region_mapping_version (
    version    text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    note       text
);
CREATE TABLE popdb.region_mapping (
    provincial_code char(12) NOT NULL,
    national_code   char(12),
    method          text NOT NULL DEFAULT 'exact',
    version         text NOT NULL DEFAULT 'current',
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provincial_code, version)
);
CREATE INDEX region_mapping_national_idx ON popdb.region_mapping (national_code);

-- Person (全员人口个案). Constraints are deliberately loose: city data may be malformed; the
-- merge validates and quarantines (popdb_merge.PROBLEMS).
CREATE TABLE popdb.person (
    id_no            varchar(18) PRIMARY KEY,
    name             varchar(50),
    sex              char(1),           -- '1' male, '2' female (GB/T 2261.1)
    birth_date       date,
    ethnicity        char(2),           -- GB 3304
    marital_status   char(2),           -- GB/T 2261.2: 10 unmarried, 20 married, 30 widowed, 40 divorced
    education        char(2),           -- GB/T 4658
    household_id     varchar(22),
    hukou_region     char(12),
    residence_region char(12),
    floating_region  char(12),          -- NULL unless floating population
    mgmt_unit        char(12),
    status           char(1) NOT NULL DEFAULT '1',  -- '1' normal, '2' deceased, '3' moved out
    city_code        char(6),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX person_hukou_region_idx ON popdb.person (hukou_region);
CREATE INDEX person_residence_region_idx ON popdb.person (residence_region);
CREATE INDEX person_floating_region_idx ON popdb.person (floating_region);
CREATE INDEX person_mgmt_unit_idx ON popdb.person (mgmt_unit);
CREATE INDEX person_household_idx ON popdb.person (household_id);
CREATE INDEX person_sex_birth_idx ON popdb.person (sex, birth_date);
CREATE INDEX person_city_idx ON popdb.person (city_code);

CREATE TABLE popdb.household (
    household_id   varchar(22) PRIMARY KEY,
    head_id_no     varchar(18),
    region_code    char(12),
    household_type char(1) NOT NULL DEFAULT '1',  -- '1' family, '2' collective
    address        varchar(200),
    city_code      char(6),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX household_region_idx ON popdb.household (region_code);
CREATE INDEX household_head_idx ON popdb.household (head_id_no);

CREATE TABLE popdb.birth_event (
    birth_id     varchar(24) PRIMARY KEY,
    mother_id_no varchar(18),
    child_id_no  varchar(18),
    birth_order  smallint,
    birth_date   date,
    birth_place  char(12),
    city_code    char(6),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX birth_event_place_idx ON popdb.birth_event (birth_place);
CREATE INDEX birth_event_mother_idx ON popdb.birth_event (mother_id_no);
CREATE INDEX birth_event_date_idx ON popdb.birth_event (birth_date);

CREATE TABLE popdb.death_event (
    id_no       varchar(18) PRIMARY KEY,
    death_date  date,
    death_place char(12),
    city_code   char(6),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX death_event_place_idx ON popdb.death_event (death_place);
CREATE INDEX death_event_date_idx ON popdb.death_event (death_date);

-- Women of fertile age (15-49 completed years), living.
CREATE VIEW popdb.fertile_women AS
SELECT p.*, date_part('year', age(current_date, p.birth_date))::int AS age
FROM popdb.person p
WHERE p.sex = '2' AND p.status = '1'
  AND p.birth_date <= (current_date - interval '15 years')::date
  AND p.birth_date > (current_date - interval '50 years')::date;

-- GB 11643 check character of the first 17 digits (inlinable SQL; caller checks the format).
CREATE FUNCTION popdb.id_check_char(id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
SELECT substr('10X98765432', ((
    substr(id, 1, 1)::int * 7 + substr(id, 2, 1)::int * 9 + substr(id, 3, 1)::int * 10
  + substr(id, 4, 1)::int * 5 + substr(id, 5, 1)::int * 8 + substr(id, 6, 1)::int * 4
  + substr(id, 7, 1)::int * 2 + substr(id, 8, 1)::int * 1 + substr(id, 9, 1)::int * 6
  + substr(id, 10, 1)::int * 3 + substr(id, 11, 1)::int * 7 + substr(id, 12, 1)::int * 9
  + substr(id, 13, 1)::int * 10 + substr(id, 14, 1)::int * 5 + substr(id, 15, 1)::int * 8
  + substr(id, 16, 1)::int * 4 + substr(id, 17, 1)::int * 2) % 11) + 1, 1)
$f$;

CREATE FUNCTION popdb.id_valid(id text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
SELECT id ~ '^[1-9][0-9]{16}[0-9X]$' AND popdb.id_check_char(id) = substr(id, 18, 1)
$f$;

-- Job history: one row per city per run (merge) or per period and city (consolidate).
CREATE TABLE popdb.job_history (
    run_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job            text NOT NULL,
    city_code      char(6),
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz,
    rows_read      bigint NOT NULL DEFAULT 0,
    inserted       bigint NOT NULL DEFAULT 0,
    updated        bigint NOT NULL DEFAULT 0,
    deleted        bigint NOT NULL DEFAULT 0,
    quarantined    bigint NOT NULL DEFAULT 0,
    conflicts      bigint NOT NULL DEFAULT 0,
    status         text NOT NULL DEFAULT 'running',  -- running, success, failed, aborted
    error          text,                              -- masked
    check_mode     boolean NOT NULL DEFAULT false,
    watermark_from text,
    watermark_to   text,
    backend_pid    int DEFAULT pg_backend_pid(),
    details        jsonb
);
CREATE INDEX job_history_city_idx ON popdb.job_history (job, city_code, started_at);

CREATE TABLE popdb.quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint,
    city_code   char(6),
    tbl         text NOT NULL,
    pk          text,
    field       text NOT NULL,
    reason      text NOT NULL,
    row_data    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX quarantine_open_idx ON popdb.quarantine (city_code, tbl, pk) WHERE resolved_at IS NULL;
"""

_SYNC_TRIGGER_FN = r"""
CREATE TABLE popdb.change_log (
    seq  bigint GENERATED ALWAYS AS IDENTITY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    tbl  text NOT NULL,
    pk   text NOT NULL
);
CREATE INDEX change_log_txid_idx ON popdb.change_log (txid);

-- Statement-level capture: one INSERT per statement from the transition tables.
-- TG_ARGV[0] = primary-key column.
CREATE FUNCTION popdb.capture_changes() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO popdb.change_log (tbl, pk) SELECT %L, n.%I FROM new_rows n',
                       TG_TABLE_NAME, TG_ARGV[0]);
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('INSERT INTO popdb.change_log (tbl, pk) SELECT %L, o.%I FROM old_rows o',
                       TG_TABLE_NAME, TG_ARGV[0]);
    ELSE
        EXECUTE format('INSERT INTO popdb.change_log (tbl, pk) SELECT %1$L, n.%2$I FROM new_rows n '
                       'UNION ALL SELECT %1$L, o.%2$I FROM old_rows o '
                       'WHERE NOT EXISTS (SELECT 1 FROM new_rows n2 WHERE n2.%2$I = o.%2$I)',
                       TG_TABLE_NAME, TG_ARGV[0]);
    END IF;
    RETURN NULL;
END $f$;

-- Keep updated_at honest unless the writer sets it explicitly.
CREATE FUNCTION popdb.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $f$;
"""


def _capture_triggers() -> str:
    out = []
    for table, pk in SYNC_TABLES.items():
        for op, ref in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        ):
            out.append(
                f"CREATE TRIGGER {table}_capture_{op.lower()} AFTER {op} ON popdb.{table} "
                f"REFERENCING {ref} FOR EACH STATEMENT EXECUTE FUNCTION popdb.capture_changes('{pk}');"
            )
        out.append(
            f"CREATE TRIGGER {table}_touch BEFORE UPDATE ON popdb.{table} "
            "FOR EACH ROW EXECUTE FUNCTION popdb.touch_updated_at();"
        )
    return "\n".join(out)


def _province_merge() -> str:
    out = [
        r"""
CREATE TABLE popdb.merge_state (
    city_code    char(6) PRIMARY KEY,
    last_xmin    xid8 NOT NULL,
    last_run_id  bigint,
    last_success timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE popdb.merge_conflict (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            bigint,
    tbl               text NOT NULL,
    pk                text NOT NULL,
    winner_city       char(6) NOT NULL,
    loser_city        char(6) NOT NULL,
    winner_updated_at timestamptz,
    loser_updated_at  timestamptz,
    rule              text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merge_conflict_pk_idx ON popdb.merge_conflict (tbl, pk);
CREATE TABLE popdb.archive_catalog (
    period      text NOT NULL,
    city_code   char(6) NOT NULL,
    tbl         text NOT NULL,
    rows        bigint NOT NULL,
    checksum    text NOT NULL,
    verified    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    export_path text,
    exported_at timestamptz,
    dropped_at  timestamptz,
    PRIMARY KEY (period, city_code, tbl)
);
CREATE SCHEMA IF NOT EXISTS popdb_archive;
"""
    ]
    for table, pk in SYNC_TABLES.items():
        out.append(
            f"CREATE TABLE popdb.{table}_dup (LIKE popdb.{table} INCLUDING DEFAULTS, "
            f"PRIMARY KEY ({pk}, city_code));"
        )
        for col in REGION_COLUMNS[table]:
            out.append(f"CREATE INDEX {table}_dup_{col}_idx ON popdb.{table}_dup ({col});")
    return "\n".join(out)


# (version, name, sql | {role: sql}). Append only; >= 100 reserved for the region-change engine.
MIGRATIONS: list[tuple[int, str, object]] = [
    (1, "core tables, dictionary, view, job history, quarantine", _CORE),
    (2, "change capture (city)", {"city": _SYNC_TRIGGER_FN + _capture_triggers()}),
    (3, "merge bookkeeping and archive catalog (province)", {"province": _province_merge()}),
]

ROLES = ("province", "city")
_LOCK = 8_420_000_006


def _sql_for(sql: object, role: str) -> str | None:
    if isinstance(sql, dict):
        return sql.get(role)
    return str(sql)


def migrate(conn, role: str = "province") -> list[int]:
    """Apply pending migrations for ``role``; return the versions applied now (idempotent)."""
    if role not in ROLES:
        raise ValueError(f"role: must be one of {ROLES}, got {role!r}")
    versions = [v for v, _, _ in MIGRATIONS]
    if versions != sorted(versions) or len(set(versions)) != len(versions):
        raise ValueError("MIGRATIONS: versions must be unique and ascending")
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS popdb")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS popdb.schema_version (version int PRIMARY KEY, name text NOT NULL, "
            "role text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    for version, name, sql in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            q = "SELECT role FROM popdb.schema_version WHERE version = %s"
            row = conn.execute(q, (version,)).fetchone()
            if row is not None:
                if row[0] != role:
                    raise ValueError(f"database was migrated as role {row[0]!r}, not {role!r}")
                continue
            text = _sql_for(sql, role)
            if text:
                conn.execute(text)
            q = "INSERT INTO popdb.schema_version (version, name, role) VALUES (%s, %s, %s)"
            conn.execute(q, (version, name, role))
            applied_now.append(version)
    return applied_now


def current_version(conn) -> int:
    row = conn.execute(
        "SELECT CASE WHEN to_regclass('popdb.schema_version') IS NULL THEN 0 "
        "ELSE (SELECT coalesce(max(version), 0) FROM popdb.schema_version) END"
    ).fetchone()
    return int(row[0])


# --- Region-change engine (issue #8, module_utils/popdb_region*.py): versions >= 100 ---------
_REGION_CHANGE = r"""
CREATE TABLE popdb.region_change_log (
    change_id      text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    spec           jsonb NOT NULL,
    spec_sha       text NOT NULL,
    plan           jsonb NOT NULL,
    undo_modes     jsonb NOT NULL,
    counts         jsonb NOT NULL,
    status         text NOT NULL CHECK (status IN ('applied', 'rolled_back')),
    applied_at     timestamptz NOT NULL DEFAULT now(),
    rolled_back_at timestamptz
);
CREATE TABLE popdb.region_change_undo (
    change_id text NOT NULL,
    step      int NOT NULL,
    tbl       text NOT NULL,
    pk        jsonb NOT NULL,
    old       jsonb NOT NULL
);
CREATE INDEX region_change_undo_idx ON popdb.region_change_undo (change_id, step, tbl);
CREATE TABLE popdb.region_change_archive (
    change_id   text NOT NULL,
    step        int NOT NULL,
    tbl         text NOT NULL,
    pk          jsonb NOT NULL,
    row         jsonb NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX region_change_archive_idx ON popdb.region_change_archive (change_id, step, tbl);
CREATE TABLE popdb.region_code_map (
    change_id      text NOT NULL,
    step           int NOT NULL,
    old_code       char(12),
    new_code       char(12),
    effective_date date NOT NULL
);
CREATE INDEX region_code_map_old_idx ON popdb.region_code_map (old_code);
"""

_REGION_MAPPING_INIT = r"""
CREATE TABLE popdb.national_division (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    import_id   text NOT NULL,
    code        char(12) NOT NULL,
    name        text NOT NULL,
    level       smallint NOT NULL,
    parent_code char(12),
    status      text NOT NULL,
    valid_from  text,
    valid_to    text,
    successors  text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX national_division_code_idx ON popdb.national_division (import_id, code);
CREATE TABLE popdb.region_mapping_decision (
    provincial_code char(12) PRIMARY KEY,
    national_code   char(12),
    decided_by      text NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now(),
    note            text
);
CREATE TABLE popdb.region_mapping_run (
    version text PRIMARY KEY,
    run_at  timestamptz NOT NULL DEFAULT now(),
    stats   jsonb NOT NULL
);
"""

MIGRATIONS += [
    (100, "region changes: applied-change log, undo, archive, old-to-new code map", _REGION_CHANGE),
    (101, "region mapping init: national list, manual decisions, runs", {"province": _REGION_MAPPING_INIT}),
    # row-level undo of a change: one typed table per change, step and table (CREATE TABLE AS)
    (102, "region changes: schema of the row-level undo tables", "CREATE SCHEMA popdb_region_undo;"),
]
