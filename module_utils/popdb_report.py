"""Shared operator report writer: one call gives a Chinese HTML page (inline CSS, no external
resources) and an xlsx workbook (openpyxl) with green/amber/red status cells.

Any duty calls it with a title and one or more tables::

    from ansible.module_utils.popdb_report import write_report, cell
    write_report("out/disk_cleanup/20261129/report", "磁盘清理报告",
                 [{"title": "各主机释放空间", "columns": [("host", "主机"), ("freed", "释放")],
                   "rows": [{"host": "web01", "freed": cell("1.2 GiB", "green")}]}])

A cell is a plain value or ``{"value": v, "status": "green|amber|red|grey", "text": shown}``.
Every text cell is passed through popdb_mask.mask_text unless ``mask=False`` (ID numbers never
reach a report).
"""

from __future__ import annotations

import datetime as _dt
import html
import os

from ansible.module_utils.popdb_mask import mask_text

STATUSES = ("green", "amber", "red", "grey")
STATUS_LABELS = {"green": "正常", "amber": "警告", "red": "严重", "grey": "未知"}
# Background / text colours shared by HTML and xlsx (Excel-style conditional colours).
STATUS_FILL = {"green": "C6EFCE", "amber": "FFEB9C", "red": "FFC7CE", "grey": "E7E6E6"}
STATUS_FONT = {"green": "006100", "amber": "9C5700", "red": "9C0006", "grey": "3A3838"}
STATUS_RANK = {"grey": 0, "green": 1, "amber": 2, "red": 3}

CSS = """
body{font-family:"WenQuanYi Micro Hei","Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;
margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-left:4px solid #2f5597;
padding-left:8px}.meta{color:#666;font-size:13px;margin-bottom:12px}
table{border-collapse:collapse;font-size:13px;margin-bottom:8px}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#2f5597;color:#fff;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:12px;margin:4px 0 10px}
.summary span{display:inline-block;margin-right:14px;padding:2px 10px;border-radius:3px}
""" + "".join(
    f"td.s-{s},span.s-{s}{{background:#{STATUS_FILL[s]};color:#{STATUS_FONT[s]}}}" for s in STATUSES
)


def cell(value, status: str | None = None, text: str | None = None) -> dict:
    """A report cell with an optional green/amber/red status and display text."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r} (expected one of {', '.join(STATUSES)})")
    return {"value": value, "status": status, "text": text}


def worst(statuses) -> str:
    """The worst of several statuses (red > amber > green > grey); grey when empty."""
    result = "grey"
    for s in statuses:
        if s and STATUS_RANK.get(s, 0) > STATUS_RANK[result]:
            result = s
    return result


def _norm_columns(columns) -> list[tuple[str, str]]:
    out = []
    for c in columns:
        if isinstance(c, dict):
            out.append((c["key"], c.get("title", c["key"])))
        elif isinstance(c, list | tuple) and len(c) == 2:
            out.append((c[0], c[1]))
        else:
            out.append((str(c), str(c)))
    return out


def _split(value) -> tuple[object, str | None, str]:
    """(raw value, status, display text) of one cell."""
    status = None
    text = None
    if isinstance(value, dict) and "value" in value:
        status = value.get("status")
        text = value.get("text")
        value = value["value"]
    if text is None:
        if value is None:
            text = ""
        elif isinstance(value, float):
            text = f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
        elif isinstance(value, list | tuple):
            text = "；".join(str(v) for v in value)
        else:
            text = str(value)
    return value, status, text


def _validate_sections(sections) -> list[dict]:
    if not isinstance(sections, list) or not sections:
        raise ValueError("report needs at least one section (a list of {title, columns, rows})")
    out = []
    for i, sec in enumerate(sections):
        if "columns" not in sec or "rows" not in sec:
            raise ValueError(f"section {i} ({sec.get('title', '?')!r}) needs 'columns' and 'rows'")
        cols = _norm_columns(sec["columns"])
        for r, row in enumerate(sec["rows"]):
            if not isinstance(row, dict):
                raise ValueError(f"section {sec.get('title', i)!r} row {r} is not a mapping: {row!r}")
            for key, value in row.items():
                if isinstance(value, dict) and value.get("status") not in (None, *STATUSES):
                    raise ValueError(
                        f"section {sec.get('title', i)!r} row {r} field {key!r}: "
                        f"unknown status {value.get('status')!r}"
                    )
        out.append({**sec, "columns": cols})
    return out


def render_html(
    title: str, sections, subtitle: str | None = None, generated_at: str | None = None, mask: bool = True
) -> str:
    """The report as one self-contained HTML page (lang zh-CN, inline CSS)."""
    sections = _validate_sections(sections)
    m = mask_text if mask else (lambda s: s)
    esc = html.escape
    when = generated_at or _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{esc(m(title))}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(m(title))}</h1>",
        f'<div class="meta">生成时间：{esc(when)}' + (f"　{esc(m(subtitle))}" if subtitle else "") + "</div>",
    ]
    for sec in sections:
        if sec.get("title"):
            parts.append(f"<h2>{esc(m(sec['title']))}</h2>")
        if sec.get("note"):
            parts.append(f'<div class="note">{esc(m(sec["note"]))}</div>')
        cols = sec["columns"]
        if not sec["rows"]:
            parts.append('<div class="note">（无）</div>')
            continue
        parts.append(
            "<table><thead><tr>" + "".join(f"<th>{esc(t)}</th>" for _, t in cols) + "</tr></thead><tbody>"
        )
        for row in sec["rows"]:
            tds = []
            for key, _ in cols:
                value, status, text = _split(row.get(key))
                classes = []
                if status:
                    classes.append(f"s-{status}")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    classes.append("num")
                cls = f' class="{" ".join(classes)}"' if classes else ""
                tds.append(f"<td{cls}>{esc(m(text))}</td>")
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_xlsx(path: str, title: str, sections, mask: bool = True, generated_at: str | None = None) -> None:
    """One worksheet per section; status cells filled green/amber/red; title and time on top."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    sections = _validate_sections(sections)
    m = mask_text if mask else (lambda s: s)
    wb = Workbook()
    wb.remove(wb.active)
    used = set()
    when = generated_at or _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    for i, sec in enumerate(sections):
        name = (sec.get("sheet") or sec.get("title") or f"表{i + 1}")[:31]
        for ch in "[]:*?/\\":
            name = name.replace(ch, "_")
        base, n = name, 2
        while name in used:
            name = f"{base[:28]}_{n}"
            n += 1
        used.add(name)
        ws = wb.create_sheet(name)
        ws.append([m(title) + ("：" + m(sec["title"]) if sec.get("title") else "")])
        ws["A1"].font = Font(bold=True, size=13)
        ws.append([f"生成时间：{when}"])
        header_row = 3
        ws.append([t for _, t in sec["columns"]])
        for c in range(1, len(sec["columns"]) + 1):
            hc = ws.cell(row=header_row, column=c)
            hc.font = Font(bold=True, color="FFFFFF")
            hc.fill = PatternFill("solid", fgColor="2F5597")
        widths = [len(t) * 2 + 2 for _, t in sec["columns"]]
        for row in sec["rows"]:
            values, stats = [], []
            for key, _ in sec["columns"]:
                value, status, text = _split(row.get(key))
                if (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and text == _split(value)[2]
                ):
                    values.append(value)
                else:
                    values.append(m(text))
                stats.append(status)
            ws.append(values)
            r = ws.max_row
            for c, status in enumerate(stats, start=1):
                if status:
                    xc = ws.cell(row=r, column=c)
                    xc.fill = PatternFill("solid", fgColor=STATUS_FILL[status])
                    xc.font = Font(color=STATUS_FONT[status])
                widths[c - 1] = max(widths[c - 1], min(60, len(str(values[c - 1])) + 2))
        for c, w in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(c)].width = w
        ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    wb.save(path)


def write_report(
    base_path: str,
    title: str,
    sections,
    subtitle: str | None = None,
    mask: bool = True,
    generated_at: str | None = None,
) -> dict:
    """Write ``<base_path>.html`` and ``<base_path>.xlsx``; return their paths."""
    d = os.path.dirname(base_path)
    if d:
        os.makedirs(d, exist_ok=True)
    html_path, xlsx_path = base_path + ".html", base_path + ".xlsx"
    page = render_html(title, sections, subtitle=subtitle, generated_at=generated_at, mask=mask)
    tmp = html_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, html_path)
    write_xlsx(xlsx_path + ".tmp.xlsx", title, sections, mask=mask, generated_at=generated_at)
    os.replace(xlsx_path + ".tmp.xlsx", xlsx_path)
    return {"html": html_path, "xlsx": xlsx_path}


def write_table_report(base_path: str, title: str, columns, rows, **kwargs) -> dict:
    """Convenience: a report with one table."""
    return write_report(base_path, title, [{"title": "", "columns": columns, "rows": rows}], **kwargs)
