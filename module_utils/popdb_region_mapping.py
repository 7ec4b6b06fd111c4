"""Twice-yearly initialization of the division mapping (national ↔ provincial codes).

Five steps, one transaction:

1. import the national division list (CSV as published; the column names are configurable);
2. import the provincial dictionary (``popdb.region`` by default, or a CSV code,name,level,parent_code);
3. back up the current mapping (``popdb.region_mapping`` rows of version ``current``) as a dated
   version ``backup-<version>`` (rows of the same table + ``region_mapping_version``);
4. compute the new mapping for every provincial division of county level and above:
   manual decision (never overwritten) → exact code match (in use) → same name under the same
   (mapped) parent → successor chain of the national change records (``新代码``) to one code in use;
5. write whatever stays unmatched, on either side, to an xlsx file (Chinese headers) for review.
   Reviewed files come back through ``import_decisions``: a decision is only ever added, an existing
   one is never overwritten (a conflicting one is reported).

Bad CSV rows are not dropped silently: they are counted and listed (line, field, reason).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import re

DEFAULT_COLUMNS = {
    "code": "代码",
    "name": "名称",
    "level": "级别",
    "status": "状态",
    "valid_from": "启用时间",
    "valid_to": "变更/弃用时间",
    "successors": "新代码",
}
DEFAULT_LEVELS = {"省级": 1, "地级": 2, "县级": 3, "1": 1, "2": 2, "3": 3}
IN_USE = ("在用",)
CURRENT = "current"  # version label of the mapping in force
XLSX_HEADERS = [
    "侧别",
    "代码",
    "名称",
    "级别",
    "上级代码",
    "未匹配原因",
    "候选国家代码",
    "人工决定（国家代码）",
    "备注",
]
SIDE = {"provincial": "省级字典", "national": "国家区划"}
REASONS = {
    "no_match": "国家区划中无相同代码、无同名同上级、无后继代码",
    "ambiguous_successor": "后继代码不唯一",
    "ambiguous_name": "同上级下同名区划不唯一",
    "national_unmapped": "国家区划在用，但省级字典中无对应",
}


class MappingError(Exception):
    pass


def _pad(code: str) -> str:
    return code.ljust(12, "0")


def read_national_csv(
    path: str,
    columns: dict | None = None,
    province_prefix: str = "",
    levels: dict | None = None,
    in_use: tuple = IN_USE,
    encoding: str = "utf-8-sig",
):
    """Rows of the national list (dicts) and the rejected lines [(line, field, reason)]."""
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    levels = {**DEFAULT_LEVELS, **(levels or {})}
    rows, bad = [], []
    try:
        fh = open(path, encoding=encoding, newline="")
    except OSError as exc:
        raise MappingError(f"national list {path}: {exc.strerror}") from exc
    with fh:
        reader = csv.DictReader(fh)
        missing = [
            c
            for k, c in cols.items()
            if k in ("code", "name", "level", "status") and c not in (reader.fieldnames or [])
        ]
        if missing:
            raise MappingError(f"national list {path}: column(s) {missing} not in header {reader.fieldnames}")
        for lineno, rec in enumerate(reader, start=2):
            code = (rec.get(cols["code"]) or "").strip()
            if province_prefix and not code.startswith(province_prefix):
                continue
            if not re.fullmatch(r"[0-9]{6}|[0-9]{12}", code):
                bad.append((lineno, cols["code"], f"code {code!r} is not 6 or 12 digits"))
                continue
            name = (rec.get(cols["name"]) or "").strip()
            if not name:
                bad.append((lineno, cols["name"], "name is empty"))
                continue
            lv = levels.get((rec.get(cols["level"]) or "").strip())
            if lv is None:
                bad.append((lineno, cols["level"], f"unknown level {rec.get(cols['level'])!r}"))
                continue
            succ = []
            for part in (rec.get(cols.get("successors", ""), "") or "").split(";"):
                m = re.match(r"\s*([0-9]{6,12})", part)
                if m:
                    succ.append(_pad(m.group(1)))
            rows.append(
                {
                    "code": _pad(code),
                    "name": name,
                    "level": lv,
                    "status": (rec.get(cols["status"]) or "").strip(),
                    "valid_from": (rec.get(cols.get("valid_from", ""), "") or "").strip() or None,
                    "valid_to": (rec.get(cols.get("valid_to", ""), "") or "").strip() or None,
                    "successors": succ,
                    "in_use": (rec.get(cols["status"]) or "").strip() in in_use,
                }
            )
    in_use_codes = {r["code"] for r in rows if r["in_use"]}
    for r in rows:
        c = r["code"]
        if r["level"] == 1:
            r["parent_code"] = None
        elif r["level"] == 2:
            r["parent_code"] = _pad(c[:2])
        else:
            city = _pad(c[:4])
            r["parent_code"] = city if city in in_use_codes or not r["in_use"] else _pad(c[:2])
    return rows, bad


def read_provincial(conn, csv_path: str | None = None) -> list[dict]:
    """Provincial divisions of county level and above."""
    if csv_path:
        out = []
        with open(csv_path, encoding="utf-8-sig", newline="") as fh:
            for lineno, rec in enumerate(csv.DictReader(fh), start=2):
                try:
                    out.append(
                        {
                            "code": _pad(rec["code"].strip()),
                            "name": rec["name"].strip(),
                            "level": int(rec["level"]),
                            "parent_code": _pad(rec["parent_code"].strip())
                            if rec.get("parent_code")
                            else None,
                        }
                    )
                except (KeyError, ValueError) as exc:
                    raise MappingError(f"provincial dictionary {csv_path} line {lineno}: {exc}") from exc
        return [r for r in out if r["level"] <= 3]
    cur = conn.execute(
        "SELECT code, name, level, parent_code FROM popdb.region WHERE level <= 3 ORDER BY level, code"
    )
    return [{"code": c, "name": n, "level": int(lv), "parent_code": p} for c, n, lv, p in cur.fetchall()]


def compute_mapping(national: list[dict], provincial: list[dict], decisions: dict[str, str | None]):
    """Return (mapping rows, unmatched rows)."""
    in_use = {r["code"]: r for r in national if r["in_use"]}
    by_parent_name: dict[tuple, list[str]] = {}
    for r in in_use.values():
        by_parent_name.setdefault((r["parent_code"], r["name"]), []).append(r["code"])
    succ: dict[str, set[str]] = {}
    for r in national:
        if not r["in_use"] and r["successors"]:
            succ.setdefault(r["code"], set()).update(r["successors"])
        elif not r["in_use"] and r["code"] not in in_use:
            succ.setdefault(r["code"], set())

    def chain(code: str) -> set[str]:
        final, seen, todo = set(), set(), [code]
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            if c in in_use and c != code:
                final.add(c)
            elif c in succ:
                todo.extend(succ[c])
            elif c in in_use:
                final.add(c)
        return final

    mapped: dict[str, str | None] = {}
    mapping, unmatched = [], []
    for p in sorted(provincial, key=lambda r: (r["level"], r["code"])):
        code = p["code"]
        if code in decisions:
            mapped[code] = decisions[code]
            mapping.append({"provincial_code": code, "national_code": decisions[code], "method": "manual"})
            continue
        if code in in_use:
            mapped[code] = code
            mapping.append({"provincial_code": code, "national_code": code, "method": "exact"})
            continue
        nparent = mapped.get(p["parent_code"]) if p["parent_code"] else None
        cands = by_parent_name.get((nparent, p["name"]), []) if nparent else []
        if len(cands) == 1:
            mapped[code] = cands[0]
            mapping.append({"provincial_code": code, "national_code": cands[0], "method": "name"})
            continue
        if len(cands) > 1:
            unmatched.append({**p, "side": "provincial", "reason": "ambiguous_name", "candidates": cands})
            continue
        finals = chain(code) if code in succ else set()
        if len(finals) == 1:
            target = finals.pop()
            mapped[code] = target
            mapping.append({"provincial_code": code, "national_code": target, "method": "successor"})
            continue
        reason = "ambiguous_successor" if finals else "no_match"
        unmatched.append({**p, "side": "provincial", "reason": reason, "candidates": sorted(finals)})
    used = {m["national_code"] for m in mapping if m["national_code"]}
    prov_prefixes = {p["code"][:2] for p in provincial}
    for code, r in sorted(in_use.items()):
        if code not in used and code[:2] in prov_prefixes:
            unmatched.append(
                {
                    "code": code,
                    "name": r["name"],
                    "level": r["level"],
                    "parent_code": r["parent_code"],
                    "side": "national",
                    "reason": "national_unmapped",
                    "candidates": [],
                }
            )
    return mapping, unmatched


def write_unmatched_xlsx(path: str, unmatched: list[dict], version: str) -> str:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.title = "未匹配区划"
    ws.append(XLSX_HEADERS)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for u in unmatched:
        ws.append(
            [
                SIDE[u["side"]],
                u["code"],
                u["name"],
                u["level"],
                u.get("parent_code") or "",
                REASONS[u["reason"]],
                ";".join(u.get("candidates") or []),
                "",
                "",
            ]
        )
    for col, width in zip("ABCDEFGHI", (10, 16, 16, 6, 16, 40, 30, 20, 20), strict=True):
        ws.column_dimensions[col].width = width
    info = wb.create_sheet("说明")
    info.append(["映射版本", version])
    info.append(["生成时间", _dt.datetime.now().isoformat(timespec="seconds")])
    info.append(
        [
            "填写说明",
            "在“人工决定（国家代码）”列填入对应的国家区划代码（12位或6位），无对应填“无”；已有的人工决定不会被覆盖。",
        ]
    )
    wb.save(path)
    return path


METHOD_LABELS = {"manual": "人工决定", "exact": "代码一致", "name": "同上级同名", "successor": "国家变更后继"}


def write_run_report(out_dir: str, version: str, steps: dict, by_method: dict, unmatched: list[dict]) -> dict:
    """Operator report of a run (Chinese HTML + xlsx via popdb_report)."""
    from ansible.module_utils.popdb_report import cell, write_report

    nat = steps["national"]
    summary = [
        {
            "item": "国家区划导入",
            "value": f"{nat['rows']} 行（在用 {nat['in_use']}，拒收 {nat['rejected']}）",
            "status": cell("拒收" if nat["rejected"] else "正常", "amber" if nat["rejected"] else "green"),
        },
        {
            "item": "省级字典",
            "value": f"{steps['provincial']['rows']} 个县级及以上区划",
            "status": cell("正常", "green"),
        },
        {
            "item": "映射备份",
            "value": steps["backup"]["version"] + f"（{steps['backup']['rows']} 行）",
            "status": cell("正常", "green"),
        },
    ]
    for method, n in sorted(by_method.items()):
        summary.append(
            {
                "item": f"映射：{METHOD_LABELS.get(method, method)}",
                "value": n,
                "status": cell("正常", "green"),
            }
        )
    summary.append(
        {
            "item": "未匹配（待人工审核）",
            "value": len(unmatched),
            "status": cell("待审核" if unmatched else "无", "amber" if unmatched else "green"),
        }
    )
    rows = [
        {
            "side": SIDE[u["side"]],
            "code": u["code"],
            "name": u["name"],
            "level": u["level"],
            "reason": cell(REASONS[u["reason"]], "amber"),
            "cand": ";".join(u.get("candidates") or []),
        }
        for u in unmatched
    ]
    sections = [
        {
            "title": "概况",
            "columns": [("item", "项目"), ("value", "结果"), ("status", "状态")],
            "rows": summary,
        },
        {
            "title": "未匹配区划",
            "columns": [
                ("side", "侧别"),
                ("code", "代码"),
                ("name", "名称"),
                ("level", "级别"),
                ("reason", "原因"),
                ("cand", "候选国家代码"),
            ],
            "rows": rows,
        },
    ]
    return write_report(
        os.path.join(out_dir, f"region-mapping-report-{version}"), f"区划映射初始化报告 {version}", sections
    )


def import_decisions(conn, xlsx_path: str, decided_by: str) -> dict:
    """Add the manual decisions of a reviewed xlsx; existing decisions are never overwritten."""
    from openpyxl import load_workbook

    ws = load_workbook(xlsx_path, read_only=True).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    if not rows or list(rows[0][: len(XLSX_HEADERS)]) != XLSX_HEADERS:
        raise MappingError(f"{xlsx_path}: not an unmatched-division review file (header row differs)")
    added, kept, conflicts, bad = 0, 0, [], []
    for i, r in enumerate(rows[1:], start=2):
        side, code, decision, note = r[0], r[1], r[7], r[8]
        if decision in (None, ""):
            continue
        if side != SIDE["provincial"]:
            bad.append((i, "侧别", "decisions are recorded for provincial divisions only"))
            continue
        decision = str(decision).strip()
        if decision == "无":
            national = None
        elif re.fullmatch(r"[0-9]{6}|[0-9]{12}", decision):
            national = _pad(decision)
        else:
            bad.append((i, "人工决定（国家代码）", f"{decision!r} is not a code or 无"))
            continue
        code = _pad(str(code).strip())
        cur = conn.execute(
            "SELECT national_code FROM popdb.region_mapping_decision WHERE provincial_code = %s", (code,)
        ).fetchone()
        if cur is not None:
            if (cur[0] or None) == national:
                kept += 1
            else:
                conflicts.append({"provincial_code": code, "existing": cur[0], "proposed": national})
            continue
        conn.execute(
            "INSERT INTO popdb.region_mapping_decision (provincial_code, national_code, decided_by, note) "
            "VALUES (%s, %s, %s, %s)",
            (code, national, decided_by, note),
        )
        added += 1
    return {"added": added, "unchanged": kept, "conflicts": conflicts, "rejected": bad}


def run_init(
    conn,
    csv_path: str,
    version: str | None = None,
    columns: dict | None = None,
    province_prefix: str = "42",
    provincial_csv: str | None = None,
    out_dir: str = "out/region_mapping",
    decisions_xlsx: str | None = None,
    decided_by: str = "operator",
    check: bool = False,
) -> dict:
    """The five steps in one transaction (rolled back in check mode)."""
    version = version or _dt.date.today().isoformat()
    res: dict = {"version": version, "changed": False, "steps": {}}
    try:
        # 1. national list
        national, bad = read_national_csv(csv_path, columns, province_prefix)
        import_id = version
        old = conn.execute(
            "SELECT count(*), md5(coalesce(string_agg("
            "code || name || status || array_to_string(successors, ';'), ',' "
            "ORDER BY id), '')) FROM popdb.national_division WHERE import_id = %s",
            (import_id,),
        ).fetchone()
        new_sig = "".join(
            r["code"] + r["name"] + r["status"] + ";".join(r["successors"]) + "," for r in national
        )[:-1]
        same = old[0] == len(national) and conn.execute("SELECT md5(%s)", (new_sig,)).fetchone()[0] == old[1]
        if not same:
            conn.execute("DELETE FROM popdb.national_division WHERE import_id = %s", (import_id,))
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY popdb.national_division "
                    "(import_id, code, name, level, parent_code, status, valid_from, "
                    "valid_to, successors) FROM STDIN"
                ) as cp,
            ):
                for r in national:
                    cp.write_row(
                        (
                            import_id,
                            r["code"],
                            r["name"],
                            r["level"],
                            r["parent_code"],
                            r["status"],
                            r["valid_from"],
                            r["valid_to"],
                            r["successors"],
                        )
                    )
            res["changed"] = True
        res["steps"]["national"] = {
            "rows": len(national),
            "in_use": sum(r["in_use"] for r in national),
            "rejected": len(bad),
            "rejected_lines": bad[:50],
            "imported": not same,
        }
        # 2. provincial dictionary
        provincial = read_provincial(conn, provincial_csv)
        res["steps"]["provincial"] = {"rows": len(provincial)}
        # 3. backup of the current mapping as a dated version (rows of region_mapping, version label)
        label = f"backup-{version}"
        # once per version: a re-run of the same initialization keeps the first backup
        exists = (
            conn.execute(
                "SELECT count(*) FROM popdb.region_mapping_version WHERE version = %s", (label,)
            ).fetchone()[0]
            or conn.execute(
                "SELECT count(*) FROM popdb.region_mapping_run WHERE version = %s", (version,)
            ).fetchone()[0]
        )
        current = conn.execute(
            f"SELECT count(*) FROM popdb.region_mapping WHERE version = '{CURRENT}'"
        ).fetchone()[0]
        if not exists and current:
            conn.execute(
                "INSERT INTO popdb.region_mapping_version (version, note) VALUES (%s, %s)",
                (label, f"mapping before initialization {version}"),
            )
            conn.execute(
                "INSERT INTO popdb.region_mapping (provincial_code, national_code, method, version, note) "
                f"SELECT provincial_code, national_code, method, %s, note FROM popdb.region_mapping "
                f"WHERE version = '{CURRENT}'",
                (label,),
            )
            res["changed"] = True
        res["steps"]["backup"] = {"version": label, "rows": current, "created": bool(not exists and current)}
        # 4. compute
        if decisions_xlsx:
            res["steps"]["decisions"] = import_decisions(conn, decisions_xlsx, decided_by)
            res["changed"] = res["changed"] or res["steps"]["decisions"]["added"] > 0
        decisions = dict(
            conn.execute(
                "SELECT provincial_code, national_code FROM popdb.region_mapping_decision"
            ).fetchall()
        )
        mapping, unmatched = compute_mapping(national, provincial, decisions)
        have = {
            (r[0], r[1], r[2])
            for r in conn.execute(
                "SELECT provincial_code, national_code, method FROM popdb.region_mapping WHERE version = %s",
                (CURRENT,),
            ).fetchall()
        }
        want = {(m["provincial_code"], m["national_code"], m["method"]) for m in mapping}
        if have != want:
            conn.execute("DELETE FROM popdb.region_mapping WHERE version = %s", (CURRENT,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO popdb.region_mapping "
                    "(provincial_code, national_code, method, version, note) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [
                        (m["provincial_code"], m["national_code"], m["method"], CURRENT, f"init {version}")
                        for m in mapping
                    ],
                )
            res["changed"] = True
        by_method: dict[str, int] = {}
        for m in mapping:
            by_method[m["method"]] = by_method.get(m["method"], 0) + 1
        res["steps"]["mapping"] = {"rows": len(mapping), "by_method": by_method, "written": have != want}
        # 5. unmatched for review
        xlsx = os.path.join(out_dir, f"region-mapping-unmatched-{version}.xlsx")
        if not check:
            write_unmatched_xlsx(xlsx, unmatched, version)
            res["report"] = write_run_report(out_dir, version, res["steps"], by_method, unmatched)
        res["steps"]["unmatched"] = {
            "rows": len(unmatched),
            "xlsx": xlsx,
            "provincial": sum(u["side"] == "provincial" for u in unmatched),
            "national": sum(u["side"] == "national" for u in unmatched),
        }
        if res["changed"]:
            conn.execute(
                "INSERT INTO popdb.region_mapping_run (version, stats) VALUES (%s, %s) "
                "ON CONFLICT (version) DO UPDATE SET stats = EXCLUDED.stats, run_at = now()",
                (version, json.dumps(res["steps"], ensure_ascii=False, default=str)),
            )
    except BaseException:
        conn.rollback()
        raise
    if check:
        conn.rollback()
    else:
        conn.commit()
    return res
