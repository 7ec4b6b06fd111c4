"""Administrative-division changes (行政区划变更): add, rename, delete, merge, migrate with cascades.

A change file (YAML) names a change id, the national directive, the effective date and one or more
steps. Each step is one of the five types below; a split is written as several steps of one change
(add the new county, migrate part of the subtree, re-code the remainder) and runs as one unit.

- ``add``:     new division ``code`` (+ ``name``; ``parent`` derived from the code when omitted).
- ``rename``:  new ``name`` for ``code``; with ``new_code`` the division is re-coded under the same
  parent (county → county-level city, 县 → 区), every descendant code recomputed.
- ``migrate``: move ``code`` (or ``codes``, patterns with ``*`` for one digit allowed) under
  ``new_parent``; optional ``new_code`` / ``name`` for a single code. Codes encode their parent, so
  every descendant code is recomputed (suffix kept, renumbered only on collision).
- ``merge``:   ``codes`` (A, B, ...) into ``into`` (C, existing or new with ``name``/``parent``):
  every reference to A and B moves to C, their subordinate divisions are re-homed under C.
- ``delete``:  ``code`` with either ``target`` (every reference moves there) or ``purge: true``
  (rows that reference the division are archived, then removed).

Every step cascades over every column of ``popdb_schema.REGION_COLUMNS`` and over the region
dictionary. The plan is computed once on the province database and executed identically on the
province and on every city database concerned, each in one transaction; the plan is stored in the
applied-change log so that a city that missed the commit is brought level by re-running the change.

Undo: before rows change, their previous region values (and ``updated_at``) are kept in a typed
table per change, step and table (schema ``popdb_region_undo``, bulk CREATE TABLE AS) unless the
change is a pure re-code into codes nobody referenced before on a database without row triggers, in
which case the inverse prefix rules restore them exactly; renames keep the old names in
``region_change_undo``; removed rows (dictionary and purged data) go to ``region_change_archive``.
``rollback_change`` restores exactly the previous state of the data tables and the dictionary.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

SCHEMA = "popdb"
# Length of the code prefix that identifies a division of each level (province .. village).
PLEN = {1: 2, 2: 4, 3: 6, 4: 9, 5: 12}
CHANGE_TYPES = ("add", "rename", "delete", "merge", "migrate")
STEP_KEYS = {
    "add": {"type", "code", "name", "parent", "level", "note"},
    "rename": {"type", "code", "name", "new_code", "note"},
    "migrate": {"type", "code", "codes", "new_parent", "new_code", "name", "note"},
    "merge": {"type", "codes", "into", "name", "parent", "note"},
    "delete": {"type", "code", "target", "purge", "note"},
}
TOP_KEYS = {"change_id", "directive", "effective_date", "description", "steps"}
# Our own bookkeeping tables: never part of a cascade.
OWN_TABLES = {
    "region",
    "region_change_log",
    "region_change_undo",
    "region_change_archive",
    "region_code_map",
    "region_mapping",
    "region_mapping_version",
    "region_mapping_decision",
    "region_mapping_run",
    "national_division",
}
LOCK_KEY = 8_420_000_008  # pg_advisory_xact_lock key serializing region changes per database


class RegionChangeError(Exception):
    """A change that cannot be applied; the message names the change, the step and the field."""


# --------------------------------------------------------------------------------------------
# Codes
# --------------------------------------------------------------------------------------------


def norm_code(value, where: str, pattern: bool = False) -> str:
    """6/9/12-digit code (or pattern with ``*``) → 12 characters, zero padded."""
    if value is None or isinstance(value, bool):
        raise RegionChangeError(f"{where}: a region code is required")
    s = str(value).strip()
    ch = "[0-9*]" if pattern else "[0-9]"
    if not re.fullmatch(f"{ch}{{6}}|{ch}{{9}}|{ch}{{12}}", s):
        raise RegionChangeError(f"{where}: {s!r} is not a 6, 9 or 12 digit region code")
    return s.ljust(12, "0")


def code_level(code: str) -> int:
    """Level implied by the digits: 1 province, 2 prefecture, 3 county, 4 township, 5 village."""
    if code[2:] == "0" * 10:
        return 1
    if code[4:] == "0" * 8:
        return 2
    if code[6:] == "0" * 6:
        return 3
    if code[9:] == "000":
        return 4
    return 5


def prefix(code: str, level: int) -> str:
    return code[: PLEN[level]]


def cprefix(code: str) -> str:
    """Prefix that the code's own digits identify (429004 → 6 digits even when filed as level 2)."""
    return code[: PLEN[code_level(code)]]


def prefix_range(p: str) -> tuple[str, str]:
    return p + "0" * (12 - len(p)), p + "9" * (12 - len(p))


# --------------------------------------------------------------------------------------------
# Change file
# --------------------------------------------------------------------------------------------


@dataclass
class Change:
    change_id: str
    directive: str
    effective_date: str
    description: str
    steps: list[dict]

    def spec(self) -> dict:
        return asdict(self)

    @property
    def sha(self) -> str:
        return hashlib.sha256(
            json.dumps(self.spec(), sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()


def load_change(source) -> Change:
    """Parse and validate a change (path to a YAML file, YAML text or a dict)."""
    if isinstance(source, dict):
        doc = source
    else:
        import yaml

        text = source
        if "\n" not in str(source) and not str(source).lstrip().startswith("{"):
            try:
                with open(source, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise RegionChangeError(f"change file {source}: {exc.strerror}") from exc
        doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise RegionChangeError("change file: expected a mapping at the top level")
    cid = doc.get("change_id")
    if not cid or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", str(cid)):
        raise RegionChangeError(f"change file: change_id {cid!r} missing or invalid (letters, digits, _.:-)")
    cid = str(cid)
    where = f"change {cid}"
    for key in ("directive", "effective_date"):
        if not doc.get(key):
            raise RegionChangeError(f"{where}: field {key} is required")
    eff = doc["effective_date"]
    if isinstance(eff, _dt.date):
        eff = eff.isoformat()
    try:
        eff = _dt.date.fromisoformat(str(eff)).isoformat()
    except ValueError as exc:
        raise RegionChangeError(f"{where}: effective_date {eff!r} is not a date (YYYY-MM-DD)") from exc
    if "steps" in doc:
        unknown = set(doc) - TOP_KEYS
        if unknown:
            raise RegionChangeError(f"{where}: unknown field(s) {sorted(unknown)} next to steps")
        raw_steps = doc["steps"]
        if not isinstance(raw_steps, list) or not raw_steps:
            raise RegionChangeError(f"{where}: steps must be a non-empty list")
    else:
        raw_steps = [{k: v for k, v in doc.items() if k not in TOP_KEYS}]
    steps = [_norm_step(s, f"{where} step {i + 1}") for i, s in enumerate(raw_steps)]
    return Change(cid, str(doc["directive"]), eff, str(doc.get("description") or ""), steps)


def _norm_step(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise RegionChangeError(f"{where}: expected a mapping")
    typ = raw.get("type")
    if typ not in CHANGE_TYPES:
        raise RegionChangeError(f"{where}: type {typ!r} must be one of {', '.join(CHANGE_TYPES)}")
    unknown = set(raw) - STEP_KEYS[typ]
    if unknown:
        raise RegionChangeError(f"{where}: unknown field(s) {sorted(unknown)} for type {typ}")
    s: dict = {"type": typ}
    if raw.get("note"):
        s["note"] = str(raw["note"])
    if "name" in raw and raw["name"] is not None:
        name = str(raw["name"]).strip()
        if not name:
            raise RegionChangeError(f"{where}: name is empty")
        s["name"] = name
    if typ == "migrate":
        codes = raw.get("codes", raw.get("code"))
        if "code" in raw and "codes" in raw:
            raise RegionChangeError(f"{where}: give code or codes, not both")
        codes = codes if isinstance(codes, list) else [codes]
        if not codes:
            raise RegionChangeError(f"{where}: codes is empty")
        s["codes"] = [norm_code(c, f"{where}: codes", pattern=True) for c in codes]
        s["new_parent"] = norm_code(raw.get("new_parent"), f"{where}: new_parent")
        if ("new_code" in raw or "name" in s) and (len(s["codes"]) != 1 or "*" in s["codes"][0]):
            raise RegionChangeError(f"{where}: new_code/name only with a single code")
    elif typ == "merge":
        codes = raw.get("codes")
        if not isinstance(codes, list) or not codes:
            raise RegionChangeError(f"{where}: codes must be a non-empty list")
        s["codes"] = [norm_code(c, f"{where}: codes") for c in codes]
        s["into"] = norm_code(raw.get("into"), f"{where}: into")
        if raw.get("parent") is not None:
            s["parent"] = norm_code(raw["parent"], f"{where}: parent")
    else:
        s["code"] = norm_code(raw.get("code"), f"{where}: code")
    if typ in ("rename", "migrate") and raw.get("new_code") is not None:
        s["new_code"] = norm_code(raw["new_code"], f"{where}: new_code")
    if typ == "add":
        if "name" not in s:
            raise RegionChangeError(f"{where}: add needs a name")
        if raw.get("parent") is not None:
            s["parent"] = norm_code(raw["parent"], f"{where}: parent")
        if raw.get("level") is not None:
            if raw["level"] not in (1, 2, 3, 4, 5):
                raise RegionChangeError(f"{where}: level must be 1..5")
            s["level"] = int(raw["level"])
    if typ == "rename" and "name" not in s and "new_code" not in s:
        raise RegionChangeError(f"{where}: rename needs name and/or new_code")
    if typ == "delete":
        purge = raw.get("purge", False)
        if not isinstance(purge, bool):
            raise RegionChangeError(f"{where}: purge must be true or false")
        if raw.get("target") is not None and purge:
            raise RegionChangeError(f"{where}: give target or purge, not both")
        if raw.get("target") is None and not purge:
            raise RegionChangeError(
                f"{where}: delete of {s['code']} needs a target for the persons registered under it "
                "or an explicit purge: true"
            )
        if purge:
            s["purge"] = True
        else:
            s["target"] = norm_code(raw["target"], f"{where}: target")
    return s


# --------------------------------------------------------------------------------------------
# Catalog introspection
# --------------------------------------------------------------------------------------------


def region_columns() -> dict[str, list[str]]:
    from ansible.module_utils.popdb_schema import REGION_COLUMNS

    return {t: list(c) for t, c in REGION_COLUMNS.items()}


def _split(table: str) -> tuple[str, str]:
    return tuple(table.split(".", 1)) if "." in table else (SCHEMA, table)  # type: ignore[return-value]


def qt(table: str) -> str:
    sch, name = _split(table)
    return f'"{sch}"."{name}"'


def qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_columns(conn, table: str) -> list[str]:
    sch, name = _split(table)
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        (f'"{sch}"."{name}"',),
    ).fetchall()
    return [r[0] for r in rows]


def primary_key(conn, table: str) -> list[str]:
    sch, name = _split(table)
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(n, o) ON true "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.o",
        (f'"{sch}"."{name}"',),
    ).fetchall()
    return [r[0] for r in rows]


def cascade_tables(conn) -> dict[str, list[str]]:
    """REGION_COLUMNS restricted to what exists in this database, minus the dictionary itself."""
    out = {}
    for table, cols in region_columns().items():
        if _split(table)[1] in OWN_TABLES:
            continue
        present = set(table_columns(conn, table))
        keep = [c for c in cols if c in present]
        if keep:
            out[".".join(_split(table))] = keep
    return out


def fk_order(conn, tables: list[str]) -> list[str]:
    """Tables ordered so that referenced tables come first (insert order; reverse for delete)."""
    oids = {t: conn.execute("SELECT to_regclass(%s)::oid", (qt(t),)).fetchone()[0] for t in tables}
    deps = {t: set() for t in tables}
    for t, oid in oids.items():
        for (ref,) in conn.execute(
            "SELECT confrelid FROM pg_constraint WHERE contype = 'f' AND conrelid = %s", (oid,)
        ).fetchall():
            for t2, oid2 in oids.items():
                if oid2 == ref and t2 != t:
                    deps[t].add(t2)
    out: list[str] = []
    while deps:
        ready = sorted(t for t, d in deps.items() if not d - set(out))
        if not ready:  # cycle: keep the rest in name order
            ready = sorted(deps)
        for t in ready:
            out.append(t)
            deps.pop(t)
    return out


# --------------------------------------------------------------------------------------------
# Planning (on the province database, the authoritative dictionary)
# --------------------------------------------------------------------------------------------


class Tree:
    def __init__(self, rows: list[dict]):
        self.rows = {r["code"]: dict(r) for r in rows}
        self.children: dict[str, set[str]] = {}
        for r in self.rows.values():
            if r.get("parent_code"):
                self.children.setdefault(r["parent_code"], set()).add(r["code"])

    def has(self, code: str) -> bool:
        return code in self.rows

    def level(self, code: str) -> int:
        lv = self.rows[code].get("level")
        return int(lv) if lv else code_level(code)

    def subtree(self, code: str) -> list[str]:
        """Codes of the subtree, parents before children."""
        out, todo = [], [code]
        while todo:
            c = todo.pop(0)
            out.append(c)
            todo.extend(sorted(self.children.get(c, ())))
        return out

    def add(self, row: dict) -> None:
        self.rows[row["code"]] = row
        if row.get("parent_code"):
            self.children.setdefault(row["parent_code"], set()).add(row["code"])

    def remove(self, code: str) -> None:
        row = self.rows.pop(code)
        if row.get("parent_code"):
            self.children.get(row["parent_code"], set()).discard(code)
        self.children.pop(code, None)

    def expand(self, pattern: str, where: str) -> list[str]:
        if "*" not in pattern:
            if pattern not in self.rows:
                raise RegionChangeError(f"{where}: unknown region code {pattern}")
            return [pattern]
        rx = re.compile(pattern.replace("*", "[0-9]"))
        hits = sorted(c for c in self.rows if rx.fullmatch(c))
        if not hits:
            raise RegionChangeError(f"{where}: pattern {pattern} matches no region code")
        return hits


@dataclass
class StepPlan:
    index: int
    type: str
    rules: list[list] = field(default_factory=list)  # [old_prefix, replacement, whole(bool)]
    purge: list[str] = field(default_factory=list)  # prefixes whose referencing rows are removed
    dict_insert: list[dict] = field(default_factory=list)  # parents first
    dict_delete: list[str] = field(default_factory=list)  # children first
    dict_update: list[list] = field(default_factory=list)  # [code, {col: new}, {col: old}]
    code_map: list[list] = field(default_factory=list)  # [old, new or None]


def _row_json(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        out[k] = v.isoformat() if isinstance(v, (_dt.date, _dt.datetime)) else v
    return out


def plan_change(conn, change: Change) -> list[StepPlan]:
    rows = conn.execute(f"SELECT * FROM {qt('region')}").fetchall()
    cols = [d.name for d in conn.execute(f"SELECT * FROM {qt('region')} LIMIT 0").description]
    tree = Tree([_row_json(dict(zip(cols, r, strict=False))) for r in rows])
    plans = []
    for i, step in enumerate(change.steps):
        where = f"change {change.change_id} step {i + 1} ({step['type']})"
        plan = StepPlan(i, step["type"])
        globals()[f"_plan_{step['type']}"](tree, step, plan, change.effective_date, where)
        plans.append(plan)
    return plans


def _need(tree: Tree, code: str, where: str, fld: str) -> None:
    if not tree.has(code):
        raise RegionChangeError(f"{where}: {fld}: unknown region code {code}")


def _plan_add(tree: Tree, s: dict, plan: StepPlan, eff: str, where: str) -> None:
    code = s["code"]
    if tree.has(code):
        raise RegionChangeError(f"{where}: code: {code} already exists ({tree.rows[code].get('name')})")
    level = s.get("level") or code_level(code)
    parent = s.get("parent")
    if parent is None:
        for lv in range(level - 1, 0, -1):
            cand = prefix(code, lv).ljust(12, "0")
            if tree.has(cand):
                parent = cand
                break
        if parent is None:
            raise RegionChangeError(f"{where}: parent: no existing parent division for {code}")
    _need(tree, parent, where, "parent")
    plevel = tree.level(parent)
    if plevel >= level or not code.startswith(cprefix(parent)):
        raise RegionChangeError(
            f"{where}: code {code} (level {level}) cannot sit under {parent} (level {plevel})"
        )
    template = {k: None for k in next(iter(tree.rows.values()), {"code": None}).keys()}
    row = {**template, "code": code, "name": s["name"], "level": level, "parent_code": parent}
    if "valid_from" in template:
        row["valid_from"] = eff
    tree.add(row)
    plan.dict_insert.append(row)
    plan.code_map.append([None, code])


def _free_code(tree: Tree, parent_prefix: str, level: int, wanted: str, taken: set[str]) -> str:
    if not tree.has(wanted) and wanted not in taken:
        return wanted
    seg = PLEN[level] - len(parent_prefix)
    for n in range(1, 10**seg):
        cand = (parent_prefix + str(n).zfill(seg)).ljust(12, "0")
        if not tree.has(cand) and cand not in taken:
            return cand
    raise RegionChangeError(f"no free code left under {parent_prefix}")


def _move(
    tree: Tree,
    root: str,
    new_parent: str,
    new_root: str | None,
    name: str | None,
    plan: StepPlan,
    eff: str,
    where: str,
    onto: str | None = None,
) -> None:
    """Re-home the subtree of root under new_parent (or onto an existing division `onto`)."""
    level = tree.level(root)
    plevel = tree.level(new_parent)
    if plevel >= level:
        raise RegionChangeError(
            f"{where}: new_parent {new_parent} (level {plevel}) cannot hold {root} (level {level})"
        )
    sub = tree.subtree(root)
    if new_parent in sub:
        raise RegionChangeError(f"{where}: new_parent {new_parent} lies inside the subtree of {root}: cycle")
    pp = cprefix(new_parent)
    rlen = PLEN[code_level(root)]
    if len(pp) >= rlen:
        raise RegionChangeError(f"{where}: cannot derive a code for {root} under {new_parent}: give new_code")
    taken: set[str] = set()
    newcode: dict[str, str] = {}
    if onto:
        newcode[root] = onto
    elif new_root:
        if tree.has(new_root):
            raise RegionChangeError(f"{where}: new_code {new_root} already exists")
        if not new_root.startswith(pp) or code_level(new_root) != code_level(root):
            raise RegionChangeError(
                f"{where}: new_code {new_root} is not a code like {root} under {new_parent}"
            )
        newcode[root] = new_root
    else:
        wanted = (pp + root[len(pp) : rlen]).ljust(12, "0")
        newcode[root] = _free_code(tree, pp, code_level(root), wanted, taken)
    taken.add(newcode[root])
    old_rows = {c: tree.rows[c] for c in sub}
    for c in sub[1:]:
        par = old_rows[c]["parent_code"]
        ppar = cprefix(newcode[par])
        wanted = (ppar + c[len(cprefix(par)) : PLEN[code_level(c)]]).ljust(12, "0")
        newcode[c] = _free_code(tree, ppar, code_level(c), wanted, taken)
        taken.add(newcode[c])
    # Reference rewrite rules: the root, plus every descendant whose code is not the natural one.
    plan.rules.append([cprefix(root), cprefix(newcode[root]), False])
    for c in sub[1:]:
        par = old_rows[c]["parent_code"]
        natural = (cprefix(newcode[par]) + c[len(cprefix(par)) :]).ljust(12, "0")
        if newcode[c] != natural:
            plan.rules.append([cprefix(c), cprefix(newcode[c]), False])
    for c in reversed(sub):
        tree.remove(c)
        plan.dict_delete.append(c)
    for c in sub:
        if c == root and onto:
            continue
        row = dict(old_rows[c])
        row["code"] = newcode[c]
        row["parent_code"] = new_parent if c == root else newcode[old_rows[c]["parent_code"]]
        if c == root and name:
            row["name"] = name
        if "valid_from" in row:
            row["valid_from"] = eff
        if "valid_to" in row:
            row["valid_to"] = None
        tree.add(row)
        plan.dict_insert.append(row)
    plan.code_map.extend([c, newcode[c]] for c in sub)


def _plan_rename(tree: Tree, s: dict, plan: StepPlan, eff: str, where: str) -> None:
    code = s["code"]
    _need(tree, code, where, "code")
    if "new_code" in s:
        if s["new_code"] == code:
            raise RegionChangeError(f"{where}: new_code equals code {code}")
        parent = tree.rows[code]["parent_code"]
        _move(tree, code, parent, s["new_code"], s.get("name"), plan, eff, where)
        return
    old = tree.rows[code]["name"]
    if old == s["name"]:
        return
    plan.dict_update.append([code, {"name": s["name"]}, {"name": old}])
    tree.rows[code]["name"] = s["name"]


def _plan_migrate(tree: Tree, s: dict, plan: StepPlan, eff: str, where: str) -> None:
    _need(tree, s["new_parent"], where, "new_parent")
    codes = []
    for p in s["codes"]:
        codes.extend(tree.expand(p, f"{where}: codes"))
    for code in codes:
        if not tree.has(code):  # moved already as part of an earlier code's subtree
            raise RegionChangeError(f"{where}: codes: {code} is inside another migrated code")
        if s["new_parent"] in tree.subtree(code):
            raise RegionChangeError(
                f"{where}: new_parent {s['new_parent']} lies inside the subtree of {code}: cycle"
            )
        if tree.rows[code]["parent_code"] == s["new_parent"] and "new_code" not in s:
            raise RegionChangeError(f"{where}: {code} is already under {s['new_parent']}")
        _move(tree, code, s["new_parent"], s.get("new_code"), s.get("name"), plan, eff, where)


def _plan_merge(tree: Tree, s: dict, plan: StepPlan, eff: str, where: str) -> None:
    into = s["into"]
    for c in s["codes"]:
        _need(tree, c, where, "codes")
    sources = [c for c in s["codes"] if c != into]
    if not sources:
        raise RegionChangeError(f"{where}: codes: nothing to merge into {into}")
    if not tree.has(into):
        if "name" not in s:
            raise RegionChangeError(f"{where}: into {into} does not exist: give its name to create it")
        parent = s.get("parent") or tree.rows[sources[0]]["parent_code"]
        _plan_add(tree, {"code": into, "name": s["name"], "parent": parent}, plan, eff, where)
    elif "name" in s and tree.rows[into]["name"] != s["name"]:
        plan.dict_update.append([into, {"name": s["name"]}, {"name": tree.rows[into]["name"]}])
        tree.rows[into]["name"] = s["name"]
    for c in sources:
        if into in tree.subtree(c):
            raise RegionChangeError(f"{where}: into {into} lies inside {c}: cycle")
        if tree.level(c) != tree.level(into):
            raise RegionChangeError(f"{where}: {c} (level {tree.level(c)}) and {into} differ in level")
        _move(tree, c, tree.rows[into]["parent_code"], None, None, plan, eff, where, onto=into)


def _plan_delete(tree: Tree, s: dict, plan: StepPlan, eff: str, where: str) -> None:
    code = s["code"]
    _need(tree, code, where, "code")
    sub = tree.subtree(code)
    if "target" not in s and not s.get("purge"):
        raise RegionChangeError(
            f"{where}: delete of {code} needs a target for the persons registered under it "
            "or an explicit purge: true"
        )
    if "target" in s:
        _need(tree, s["target"], where, "target")
        if s["target"] in sub:
            raise RegionChangeError(f"{where}: target {s['target']} lies inside the deleted division {code}")
        plan.rules.append([cprefix(code), s["target"], True])
        plan.code_map.extend([c, s["target"]] for c in sub)
    else:
        plan.purge.append(cprefix(code))
        plan.code_map.extend([c, None] for c in sub)
    for c in reversed(sub):
        tree.remove(c)
        plan.dict_delete.append(c)


# --------------------------------------------------------------------------------------------
# Execution (same plan on every database)
# --------------------------------------------------------------------------------------------


def _case(col: str, rules: list[list]) -> str:
    whens = []
    for p, repl, whole in sorted(rules, key=lambda r: -len(r[0])):
        lo, hi = prefix_range(p)
        val = f"'{repl}'" if whole else f"'{repl}' || substr({qi(col)}, {len(p) + 1})"
        whens.append(f"WHEN {qi(col)} BETWEEN '{lo}' AND '{hi}' THEN {val}")
    return f"CASE {' '.join(whens)} ELSE {qi(col)} END"


def _outer(prefixes: list[str]) -> list[str]:
    """Drop prefixes contained in a shorter one."""
    out = []
    for p in sorted(set(prefixes), key=len):
        if not any(p.startswith(q) for q in out):
            out.append(p)
    return out


def _cond(col: str, prefixes: list[str]) -> str:
    parts = []
    for p in _outer(prefixes):
        lo, hi = prefix_range(p)
        parts.append(f"{qi(col)} BETWEEN '{lo}' AND '{hi}'")
    return "(" + " OR ".join(parts) + ")"


def _where(cols: list[str], prefixes: list[str]) -> str:
    return " OR ".join(_cond(c, prefixes) for c in cols)


def _count(conn, table: str, cols: list[str], prefixes: list[str]) -> dict[str, int]:
    sel = ", ".join(f"count(*) FILTER (WHERE {_cond(c, prefixes)})" for c in cols)
    row = conn.execute(f"SELECT count(*), {sel} FROM {qt(table)} WHERE {_where(cols, prefixes)}").fetchone()
    out = {f"{_split(table)[1]}.{c}": n for c, n in zip(cols, row[1:], strict=False) if n}
    if row[0]:
        out[f"{_split(table)[1]}.*rows"] = row[0]
    return out


MAPPING_IN_FORCE = "current"  # version label of the mapping in force (popdb_region_mapping.CURRENT)


def _mapping_follow(conn, cid: str, plan: StepPlan) -> dict[str, int]:
    """Rows of the mapping in force whose provincial code moves: archived, removed, re-inserted with
    the new code (a division merged into one that is already mapped keeps the existing row)."""
    prefixes = [p for p, _, _ in plan.rules] + plan.purge
    cond = _cond("provincial_code", prefixes) + f" AND version = '{MAPPING_IN_FORCE}'"
    n = conn.execute(
        "INSERT INTO popdb.region_change_archive (change_id, step, tbl, pk, row) "
        "SELECT %s, %s, 'popdb.region_mapping', "
        "jsonb_build_object('provincial_code', provincial_code, 'version', version), to_jsonb(m) "
        f"FROM popdb.region_mapping m WHERE {cond}",
        (cid, plan.index),
    ).rowcount
    if not n:
        return {}
    conn.execute(f"DELETE FROM popdb.region_mapping WHERE {cond}")
    out = {"region_mapping.provincial_code": n}
    if plan.rules:
        cols = table_columns(conn, "region_mapping")
        sel = ", ".join(
            _case("provincial_code", plan.rules).replace('"provincial_code"', "r.provincial_code")
            if c == "provincial_code"
            else f"r.{qi(c)}"
            for c in cols
        )
        rows = conn.execute(
            f"INSERT INTO popdb.region_mapping ({', '.join(qi(c) for c in cols)}) "
            f"SELECT {sel} FROM popdb.region_change_archive a, "
            "jsonb_populate_record(NULL::popdb.region_mapping, a.row) r "
            "WHERE a.change_id = %s AND a.step = %s AND a.tbl = 'popdb.region_mapping'"
            " ON CONFLICT DO NOTHING RETURNING provincial_code, version",
            (cid, plan.index),
        ).fetchall()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO popdb.region_change_undo (change_id, step, tbl, pk, old) "
                "VALUES (%s, %s, 'popdb.region_mapping', %s, '{}')",
                [(cid, plan.index, json.dumps({"provincial_code": c, "version": v})) for c, v in rows],
            )
    return out


UNDO_SCHEMA = "popdb_region_undo"


def undo_table(change_id: str, step: int, table: str) -> str:
    """Typed row-level undo table of one change, step and data table."""
    tag = hashlib.sha256(change_id.encode()).hexdigest()[:12]
    return f"{UNDO_SCHEMA}.c{tag}_s{step}_{_split(table)[1]}"


def _invertible(conn, tables: dict[str, list[str]], rules: list[list]) -> bool:
    """Pure re-code into ranges nobody referenced before: the inverse rules restore exactly."""
    if not rules or any(whole for _, _, whole in rules):
        return False
    targets = [repl for _, repl, _ in rules]
    olds = [p for p, _, _ in rules]
    for t in targets:
        if any(t.startswith(o) or o.startswith(t) for o in olds):
            return False
    for table, cols in tables.items():
        # row triggers (city databases: updated_at, change capture) touch more than the codes
        if conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal)",
            (qt(table),),
        ).fetchone()[0]:
            return False
        if conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {qt(table)} WHERE {_where(cols, targets)})"
        ).fetchone()[0]:
            return False
    return True


def _ensure_own_tables(conn) -> None:
    if conn.execute("SELECT to_regclass(%s)", (qt("region_change_log"),)).fetchone()[0] is None:
        raise RegionChangeError(
            "database has no popdb.region_change_log: run the schema migrations (popdb_schema.migrate) first"
        )


def execute_plan(conn, change: Change, plans: list[StepPlan]) -> tuple[dict, list[str]]:
    """Apply the plan in the current transaction; return (counts, undo modes per step)."""
    cid = change.change_id
    tables = cascade_tables(conn)
    rcols = table_columns(conn, "region")
    order = fk_order(conn, list(tables))
    pks = {t: primary_key(conn, t) for t in tables}
    tcols = {t: table_columns(conn, t) for t in tables}
    has_mapping = conn.execute("SELECT to_regclass('popdb.region_mapping')").fetchone()[0] is not None
    counts: dict[str, int] = {}
    modes = []

    def bump(d):
        for k, v in d.items():
            counts[k] = counts.get(k, 0) + v

    for plan in plans:
        # 1. new dictionary rows (parents first), renames.
        for row in plan.dict_insert:
            keep = {k: v for k, v in row.items() if k in rcols}
            names = ", ".join(qi(k) for k in keep)
            marks = ", ".join(["%s"] * len(keep))
            # a city database holds its own part of the dictionary: a row goes in where its parent is
            parent = row.get("parent_code")
            if (
                parent
                and not conn.execute(f"SELECT 1 FROM {qt('region')} WHERE code = %s", (parent,)).fetchone()
            ):
                continue
            n = conn.execute(
                f"INSERT INTO {qt('region')} ({names}) VALUES ({marks}) ON CONFLICT (code) DO NOTHING",
                list(keep.values()),
            ).rowcount
            if n:
                bump({"region.inserted": n})
        for code, new, old in plan.dict_update:
            conn.execute(
                "INSERT INTO popdb.region_change_undo (change_id, step, tbl, pk, old) "
                "VALUES (%s, %s, 'region', %s, %s)",
                (cid, plan.index, json.dumps({"code": code}), json.dumps(old, ensure_ascii=False)),
            )
            sets = ", ".join(f"{qi(k)} = %s" for k in new)
            n = conn.execute(
                f"UPDATE {qt('region')} SET {sets} WHERE code = %s", [*new.values(), code]
            ).rowcount
            bump({"region.renamed": n})
        # 2. references.
        mode = "none"
        if plan.rules:
            mode = "rules" if _invertible(conn, tables, plan.rules) else "rows"
            prefixes = [p for p, _, _ in plan.rules]
            for table in order:
                cols = tables[table]
                bump(_count(conn, table, cols, prefixes))
                where = _where(cols, prefixes)
                if mode == "rows":
                    # previous values of every touched row, typed, in bulk (CREATE TABLE AS)
                    keep = pks[table] + cols + (["updated_at"] if "updated_at" in tcols[table] else [])
                    conn.execute(
                        f"CREATE TABLE {qt(undo_table(cid, plan.index, table))} AS "
                        f"SELECT {', '.join(qi(c) for c in keep)} FROM {qt(table)} WHERE {where}"
                    )
                sets = ", ".join(f"{qi(c)} = {_case(c, plan.rules)}" for c in cols)
                conn.execute(f"UPDATE {qt(table)} SET {sets} WHERE {where}")
        modes.append(mode)
        # 3. purge: archive, then remove (referencing tables first).
        if plan.purge:
            for table in reversed(order):
                cols = tables[table]
                where = _where(cols, plan.purge)
                pkj = ", ".join(f"'{k}', {qi(k)}" for k in pks[table])
                conn.execute(
                    f"INSERT INTO popdb.region_change_archive (change_id, step, tbl, pk, row) "
                    f"SELECT %s, %s, %s, jsonb_build_object({pkj}), to_jsonb(t) "
                    f"FROM {qt(table)} t WHERE {where}",
                    (cid, plan.index, table),
                )
                n = conn.execute(f"DELETE FROM {qt(table)} WHERE {where}").rowcount
                if n:
                    bump({f"{_split(table)[1]}.purged": n})
        # 3b. the mapping in force follows the provincial codes (backups stay as they were)
        if (plan.rules or plan.purge) and has_mapping:
            bump(_mapping_follow(conn, cid, plan))
        # 4. dictionary rows removed (children first), archived.
        if plan.dict_delete:
            conn.execute(
                "INSERT INTO popdb.region_change_archive (change_id, step, tbl, pk, row) "
                "SELECT %s, %s, 'region', jsonb_build_object('code', code), to_jsonb(r) "
                "FROM popdb.region r WHERE code = ANY(%s)",
                (cid, plan.index, plan.dict_delete),
            )
            # children first: deeper levels first
            n = 0
            for code in plan.dict_delete:
                n += conn.execute(f"DELETE FROM {qt('region')} WHERE code = %s", (code,)).rowcount
            bump({"region.deleted": n})
        if plan.code_map:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO popdb.region_code_map (change_id, step, old_code, new_code, effective_date) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [(cid, plan.index, o, n, change.effective_date) for o, n in plan.code_map],
                )
    return counts, modes


# --------------------------------------------------------------------------------------------
# Apply / rollback over the province and the city databases
# --------------------------------------------------------------------------------------------


def log_state(conn, change_id: str):
    return conn.execute(
        "SELECT status, spec_sha, plan, seq FROM popdb.region_change_log WHERE change_id = %s", (change_id,)
    ).fetchone()


def _plans_from_json(data: list[dict]) -> list[StepPlan]:
    return [StepPlan(**d) for d in data]


def dictionary_diff(plans: list[StepPlan], before_rows: dict[str, dict]) -> dict:
    """Text diff of the region dictionary: rows removed/renamed (before) and added/renamed (after)."""

    def line(r):
        return f"{r['code']} {r.get('name')} level={r.get('level')} parent={r.get('parent_code')}"

    before, after = [], []
    for p in plans:
        for code in reversed(p.dict_delete):
            if code in before_rows:
                before.append(line(before_rows[code]))
        for r in p.dict_insert:
            after.append(line(r))
        for code, new, old in p.dict_update:
            base = before_rows.get(code, {"code": code})
            before.append(line({**base, **old}))
            after.append(line({**base, **new}))
    return {
        "before": "\n".join(before) + ("\n" if before else ""),
        "after": "\n".join(after) + ("\n" if after else ""),
    }


def city_of(code: str, city_codes: list[str]) -> str | None:
    """The city database (6-digit city code) that holds a division, if configured."""
    for cand in (code[:6], code[:4] + "00"):
        if cand in city_codes:
            return cand
    return None


def apply_change(prov, change: Change, cities: dict | None = None, check: bool = False) -> dict:
    """Apply `change` to the province connection and the city connections concerned.

    `cities` maps a 6-digit city code to an open connection (or is None). Connections must not be
    in autocommit mode. Returns changed, counts per database, diff, code_map, cities touched.
    Raises RegionChangeError with nothing written on any database when the change is rejected.
    """
    cities = cities or {}
    conns = {"province": prov}
    result: dict = {"change_id": change.change_id, "changed": False, "counts": {}, "databases": []}
    try:
        for c in [prov, *cities.values()]:
            _ensure_own_tables(c)
            c.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        state = log_state(prov, change.change_id)
        if state and state[0] == "applied" and state[1] != change.sha:
            raise RegionChangeError(
                f"change {change.change_id} was already applied with different content: use a new change id"
            )
        if state and state[0] == "applied":
            plans = _plans_from_json(state[2])
            before_rows = {}
        else:
            plans = plan_change(prov, change)
            touched = {code for p in plans for code in p.dict_delete} | {
                code for p in plans for code, _, _ in p.dict_update
            }
            before_rows = {}
            if touched:
                cur = prov.execute("SELECT * FROM popdb.region WHERE code = ANY(%s)", (sorted(touched),))
                cols = [d.name for d in cur.description]
                for r in cur.fetchall():
                    row = _row_json(dict(zip(cols, r, strict=False)))
                    before_rows[row["code"]] = row
        codes = {c for p in plans for pair in p.code_map for c in pair if c} | {
            code for p in plans for code, _, _ in p.dict_update
        }
        # every configured city: the one holding the division, and the others whose rows may
        # reference it (hukou, floating location, birth place); the holder goes first
        holders = {city_of(c, list(cities)) for c in codes} - {None}
        for cc in sorted(cities, key=lambda c: (c not in holders, c)):
            conns[f"city {cc}"] = cities[cc]
        result["diff"] = dictionary_diff(plans, before_rows)
        result["code_map"] = [pair for p in plans for pair in p.code_map]
        plan_json = [asdict(p) for p in plans]
        for label, conn in conns.items():
            st = log_state(conn, change.change_id)
            if st and st[0] == "applied":
                if st[1] != change.sha:
                    raise RegionChangeError(
                        f"{label}: change {change.change_id} applied with different content"
                    )
                continue
            counts, modes = execute_plan(conn, change, plans)
            conn.execute("DELETE FROM popdb.region_change_log WHERE change_id = %s", (change.change_id,))
            conn.execute(
                "INSERT INTO popdb.region_change_log "
                "(change_id, spec, spec_sha, plan, undo_modes, counts, status) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'applied')",
                (
                    change.change_id,
                    json.dumps(change.spec(), ensure_ascii=False),
                    change.sha,
                    json.dumps(plan_json, ensure_ascii=False, default=str),
                    json.dumps(modes),
                    json.dumps(counts),
                ),
            )
            result["counts"][label] = counts
            result.setdefault("undo_modes", {})[label] = modes
            result["databases"].append(label)
            result["changed"] = True
    except BaseException:
        for conn in conns.values():
            conn.rollback()
        for conn in cities.values():
            conn.rollback()
        raise
    _finish(conns, check)
    return result


def _finish(conns: dict, check: bool) -> None:
    if check:
        for conn in conns.values():
            conn.rollback()
        return
    # Province first: a city that fails to commit is brought level by re-running (idempotent per DB).
    for label, conn in conns.items():
        try:
            conn.commit()
        except Exception as exc:  # pragma: no cover - needs a crash between two commits
            raise RegionChangeError(
                f"{label}: commit failed after earlier databases committed ({exc}); "
                "re-run the same change file to bring this database level"
            ) from exc


def rollback_change(prov, change_id: str, cities: dict | None = None, check: bool = False) -> dict:
    """Undo an applied change on every database where the log says it is applied."""
    cities = cities or {}
    conns = {"province": prov, **{f"city {k}": v for k, v in cities.items()}}
    result: dict = {"change_id": change_id, "changed": False, "databases": [], "counts": {}}
    try:
        for conn in conns.values():
            _ensure_own_tables(conn)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        for label, conn in conns.items():
            st = log_state(conn, change_id)
            if not st or st[0] != "applied":
                continue
            later = conn.execute(
                "SELECT change_id FROM popdb.region_change_log WHERE status = 'applied' AND seq > %s "
                "ORDER BY seq DESC LIMIT 1",
                (st[3],),
            ).fetchone()
            if later:
                raise RegionChangeError(
                    f"{label}: change {later[0]} was applied after {change_id}: roll it back first"
                )
            result["counts"][label] = _undo(conn, change_id)
            result["databases"].append(label)
            result["changed"] = True
    except BaseException:
        for conn in conns.values():
            conn.rollback()
        raise
    _finish(conns, check)
    return result


def _undo(conn, cid: str) -> dict:
    plans = _plans_from_json(
        conn.execute("SELECT plan FROM popdb.region_change_log WHERE change_id = %s", (cid,)).fetchone()[0]
    )
    modes = conn.execute(
        "SELECT undo_modes FROM popdb.region_change_log WHERE change_id = %s", (cid,)
    ).fetchone()[0]
    tables = cascade_tables(conn)
    order = fk_order(conn, list(tables))
    rcols = table_columns(conn, "region")
    has_mapping = conn.execute("SELECT to_regclass('popdb.region_mapping')").fetchone()[0] is not None
    counts: dict[str, int] = {}
    for plan, mode in reversed(list(zip(plans, modes, strict=False))):
        # dictionary rows removed by the step come back (parents first)
        conn.execute(
            f"INSERT INTO popdb.region ({', '.join(qi(c) for c in rcols)}) "
            f"SELECT {', '.join('r.' + qi(c) for c in rcols)} FROM popdb.region_change_archive a, "
            "jsonb_populate_record(NULL::popdb.region, a.row) r "
            "WHERE a.change_id = %s AND a.step = %s AND a.tbl = 'region' ORDER BY r.level, r.code",
            (cid, plan.index),
        )
        for code, _new, old in plan.dict_update:
            sets = ", ".join(f"{qi(k)} = %s" for k in old)
            conn.execute(f"UPDATE popdb.region SET {sets} WHERE code = %s", [*old.values(), code])
        # purged rows come back (referenced tables first)
        for table in order:
            cols_all = table_columns(conn, table)
            n = conn.execute(
                f"INSERT INTO {qt(table)} ({', '.join(qi(c) for c in cols_all)}) "
                f"SELECT {', '.join('r.' + qi(c) for c in cols_all)} FROM popdb.region_change_archive a, "
                f"jsonb_populate_record(NULL::{qt(table)}, a.row) r "
                "WHERE a.change_id = %s AND a.step = %s AND a.tbl = %s",
                (cid, plan.index, table),
            ).rowcount
            if n:
                counts[f"{_split(table)[1]}.restored"] = counts.get(f"{_split(table)[1]}.restored", 0) + n
        # references
        if mode == "rules":
            inverse = [[repl, p, False] for p, repl, _ in plan.rules]
            prefixes = [p for p, _, _ in inverse]
            for table, cols in tables.items():
                sets = ", ".join(f"{qi(c)} = {_case(c, inverse)}" for c in cols)
                n = conn.execute(f"UPDATE {qt(table)} SET {sets} WHERE {_where(cols, prefixes)}").rowcount
                counts[f"{_split(table)[1]}.*rows"] = counts.get(f"{_split(table)[1]}.*rows", 0) + n
        elif mode == "rows":
            for table in tables:
                utab = undo_table(cid, plan.index, table)
                if conn.execute("SELECT to_regclass(%s)", (qt(utab),)).fetchone()[0] is None:
                    continue
                pk = primary_key(conn, table)
                restore = [c for c in table_columns(conn, utab) if c not in pk]
                sets = ", ".join(f"{qi(c)} = u.{qi(c)}" for c in restore)
                join = " AND ".join(f"t.{qi(k)} = u.{qi(k)}" for k in pk)
                n = conn.execute(f"UPDATE {qt(table)} t SET {sets} FROM {qt(utab)} u WHERE {join}").rowcount
                conn.execute(f"DROP TABLE {qt(utab)}")
                counts[f"{_split(table)[1]}.*rows"] = counts.get(f"{_split(table)[1]}.*rows", 0) + n
        # the mapping in force: rows written by the step go, the archived ones come back
        if has_mapping and (plan.rules or plan.purge):
            conn.execute(
                "DELETE FROM popdb.region_mapping m USING popdb.region_change_undo u "
                "WHERE u.change_id = %s AND u.step = %s AND u.tbl = 'popdb.region_mapping' "
                "AND m.provincial_code = u.pk->>'provincial_code' AND m.version = u.pk->>'version'",
                (cid, plan.index),
            )
            mcols = table_columns(conn, "region_mapping")
            conn.execute(
                f"INSERT INTO popdb.region_mapping ({', '.join(qi(c) for c in mcols)}) "
                f"SELECT {', '.join('r.' + qi(c) for c in mcols)} FROM popdb.region_change_archive a, "
                "jsonb_populate_record(NULL::popdb.region_mapping, a.row) r "
                "WHERE a.change_id = %s AND a.step = %s AND a.tbl = 'popdb.region_mapping'",
                (cid, plan.index),
            )
        # dictionary rows added by the step go (children first)
        for row in reversed(plan.dict_insert):
            conn.execute("DELETE FROM popdb.region WHERE code = %s", (row["code"],))
    for t in ("region_change_undo", "region_change_archive", "region_code_map"):
        conn.execute(f"DELETE FROM popdb.{t} WHERE change_id = %s", (cid,))
    conn.execute(
        "UPDATE popdb.region_change_log SET status = 'rolled_back', rolled_back_at = now() "
        "WHERE change_id = %s",
        (cid,),
    )
    return counts


# --------------------------------------------------------------------------------------------
# Verification helpers (tests, benchmark, operators)
# --------------------------------------------------------------------------------------------


def table_checksum(conn, table: str) -> tuple[int, str]:
    pk = primary_key(conn, table) or table_columns(conn, table)
    order = ", ".join(qi(c) for c in pk)
    return conn.execute(
        f"SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY {order})), '') "
        f"FROM {qt(table)} t"
    ).fetchone()


def database_checksum(conn, with_dictionary: bool = True) -> dict[str, tuple[int, str]]:
    tables = sorted(cascade_tables(conn))
    if with_dictionary:
        tables.append(f"{SCHEMA}.region")
        if conn.execute("SELECT to_regclass('popdb.region_mapping')").fetchone()[0] is not None:
            tables.append(f"{SCHEMA}.region_mapping")
    return {t: table_checksum(conn, t) for t in tables}
