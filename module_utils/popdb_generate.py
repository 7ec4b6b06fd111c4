"""Deterministic synthetic population for the 17 Hubei cities (全员人口个案 test data).

``generate(dsns, total, seed, ...)`` fills the city databases (``{city_code: dsn}``) with a
realistic population and returns a manifest with exact counts. Same seed, same sizes => same
rows, byte for byte. Rows are streamed with COPY (never row inserts), so it scales from 10
thousand persons to tens of millions (memory is bounded per county).

Realism:
- region tree: the 17 real city codes; counties, townships and villages under them are
  synthesised deterministically from the city code (``region_tree``): county = 6 digits,
  township = county + 3 digits, village = township + 3 digits (12-digit codes);
- 18-digit ID numbers (GB 11643): county code + birth date + sequence (odd = male) + check
  character, consistent with the record's sex and birth date;
- households (size 1-5+, head, spouse, children) and an age pyramid (2020 census shape);
- births in the last year to women aged 15-49 at age-specific fertility rates (``ASFR``),
  with birth events (mother, child, birth order, date, place);
- deaths at age-specific mortality (status '2' + death event);
- about 9% floating population (residence in another county than the hukou, ``floating_region``).

Defects (``Defects``) have exact rates: per city ``round(rate * persons)`` distinct persons get
each defect; the manifest lists them per city. ``dup_cross_city`` copies that many persons of a
city (clean) into the next generated city with a different ``updated_at``.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import asdict, dataclass, field

CITIES: dict[str, str] = {
    "420100": "武汉市",
    "420200": "黄石市",
    "420300": "十堰市",
    "420500": "宜昌市",
    "420600": "襄阳市",
    "420700": "鄂州市",
    "420800": "荆门市",
    "420900": "孝感市",
    "421000": "荆州市",
    "421100": "黄冈市",
    "421200": "咸宁市",
    "421300": "随州市",
    "422800": "恩施土家族苗族自治州",
    "429004": "仙桃市",
    "429005": "潜江市",
    "429006": "天门市",
    "429021": "神农架林区",
}
# Resident population in millions (2020 census, rounded): city weights for `total`.
POPULATION = {
    "420100": 12.33, "420200": 2.47, "420300": 3.21, "420500": 4.01, "420600": 5.26, "420700": 1.08,
    "420800": 2.60, "420900": 4.27, "421000": 5.23, "421100": 5.88, "421200": 2.66, "421300": 2.05,
    "422800": 3.46, "429004": 1.13, "429005": 0.89, "429006": 1.16, "429021": 0.07,
}  # fmt: skip
COUNTIES = {
    "420100": 13, "420200": 6, "420300": 8, "420500": 13, "420600": 9, "420700": 3, "420800": 5,
    "420900": 7, "421000": 8, "421100": 10, "421200": 6, "421300": 3, "422800": 8,
}  # fmt: skip
PROVINCE = "420000000000"
# Share of the population by 5-year age band 0-4 .. 95-99 (China 2020 census, approx.).
AGE_BANDS = [
    5.7,
    6.4,
    6.0,
    5.3,
    5.2,
    6.4,
    8.0,
    7.4,
    6.9,
    7.0,
    8.6,
    8.1,
    6.4,
    5.8,
    3.9,
    2.5,
    1.7,
    0.8,
    0.2,
    0.05,
]
# Age-specific fertility (births per woman per year) by 5-year band 15-19 .. 45-49.
ASFR = [0.006, 0.055, 0.098, 0.066, 0.028, 0.008, 0.002]
HOUSEHOLD_SIZES = [(1, 0.25), (2, 0.30), (3, 0.21), (4, 0.13), (5, 0.11)]
FLOATING_RATE = 0.09
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国文红玉梅云飞鹏辉宇浩然欣怡子涵思雨梓轩"
EDU_ADULT = [("10", 0.01), ("20", 0.09), ("30", 0.10), ("60", 0.16), ("70", 0.35), ("80", 0.24), ("90", 0.05)]
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"
TOWNSHIPS_PER_COUNTY = 8
VILLAGES_PER_TOWNSHIP = 8
DEFECT_TYPES = ("bad_check_digit", "missing_fields", "impossible_dates", "sex_mismatch", "dup_cross_city")
MISSING_FIELDS = ("name", "birth_date", "hukou_region", "sex")


def check_char(first17: str) -> str:
    return CHECK[sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11]


def id_valid(id_no: str | None) -> bool:
    if not id_no or len(id_no) != 18 or not id_no[:17].isdigit() or id_no[0] == "0":
        return False
    return check_char(id_no[:17]) == id_no[17]


@dataclass
class Defects:
    bad_check_digit: float = 0.0
    missing_fields: float = 0.0
    impossible_dates: float = 0.0
    sex_mismatch: float = 0.0
    dup_cross_city: float = 0.0

    def __post_init__(self):
        for k, v in asdict(self).items():
            if not 0.0 <= float(v) <= 0.2:
                raise ValueError(f"defects.{k}: rate must be between 0 and 0.2, got {v!r}")
        if sum(asdict(self).values()) > 0.5:
            raise ValueError("defects: the rates add up to more than 0.5")


@dataclass
class CityTree:
    city: str
    counties: list[str]
    townships: dict[str, list[str]] = field(default_factory=dict)  # county -> township codes (12)
    villages: dict[str, list[str]] = field(default_factory=dict)  # county -> village codes (12)


def region_tree(city: str) -> CityTree:
    """Deterministic sub-city codes (independent of the seed)."""
    if city not in CITIES:
        raise ValueError(f"city: unknown city code {city!r}")
    if city.startswith("4290"):  # province-direct county-level city: townships directly under it
        counties = [city]
    else:
        counties = [f"{city[:4]}{k:02d}" for k in range(2, 2 + COUNTIES[city])]
    tree = CityTree(city, counties)
    for c in counties:
        tws = [f"{c}{t:03d}000" for t in range(1, TOWNSHIPS_PER_COUNTY + 1)]
        tree.townships[c] = tws
        tree.villages[c] = [f"{t[:9]}{v:03d}" for t in tws for v in range(1, VILLAGES_PER_TOWNSHIP + 1)]
    return tree


def region_rows(cities) -> list[tuple]:
    """Dictionary rows (code, name, level, parent_code) for the province and the given cities."""
    rows = [(PROVINCE, "湖北省", 1, None)]
    for city in cities:
        tree = region_tree(city)
        ccode = city + "000000"
        rows.append((ccode, CITIES[city], 2, PROVINCE))
        for i, c in enumerate(tree.counties, 1):
            parent = ccode
            if c != city:
                rows.append((c + "000000", f"{CITIES[city]}第{i}区县", 3, ccode))
                parent = c + "000000"
            for j, t in enumerate(tree.townships[c], 1):
                rows.append((t, f"{CITIES[city]}{i}区县{j}街道", 4, parent))
                for k in range(1, VILLAGES_PER_TOWNSHIP + 1):
                    rows.append((f"{t[:9]}{k:03d}", f"{CITIES[city]}{i}-{j}-{k}村", 5, t))
    return rows


def load_regions(conn, cities) -> int:
    """Upsert the dictionary for ``cities`` (plus the province); returns rows written."""
    rows = region_rows(cities)
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE _reg (code char(12), name text, level smallint, parent char(12))")
        with conn.cursor().copy("COPY _reg FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        conn.execute(
            "INSERT INTO popdb.region (code, name, level, parent_code) "
            "SELECT code, name, level, parent FROM _reg "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level, "
            "parent_code = EXCLUDED.parent_code"
        )
        conn.execute("DROP TABLE _reg")
    return len(rows)


def city_sizes(total: int, cities=None) -> dict[str, int]:
    """Split ``total`` persons over the cities by population weight (largest remainder)."""
    cities = list(cities or CITIES)
    w = sum(POPULATION[c] for c in cities)
    raw = {c: total * POPULATION[c] / w for c in cities}
    out = {c: int(v) for c, v in raw.items()}
    rest = total - sum(out.values())
    for c in sorted(cities, key=lambda c: raw[c] - out[c], reverse=True)[:rest]:
        out[c] += 1
    return out


def _weighted(rng: random.Random, cum: list[float], items: list):
    x = rng.random() * cum[-1]
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return items[lo]


def _cum(weights):
    out, s = [], 0.0
    for w in weights:
        s += w
        out.append(s)
    return out


def _mortality(age: int) -> float:
    if age < 1:
        return 0.005
    if age < 40:
        return 0.0008
    if age < 60:
        return 0.004
    if age < 70:
        return 0.012
    if age < 80:
        return 0.035
    return 0.11


def _ts(d: dt.date, secs: int) -> str:
    return f"{d.isoformat()} {secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}+08"


class _CityGen:
    """Generates one city's rows as COPY text lines."""

    def __init__(self, city: str, n: int, seed: int, ref: dt.date, defects: Defects):
        self.city, self.n, self.ref = city, n, ref
        self.rng = random.Random(f"{seed}:{city}")
        self.tree = region_tree(city)
        self.defects = defects
        self.counts = {k: 0 for k in DEFECT_TYPES}
        self.stats = {"persons": 0, "households": 0, "births": 0, "deaths": 0, "floating": 0}
        # exact defect assignment: distinct person indices per defect type
        want = {k: round(getattr(defects, k) * n) for k in DEFECT_TYPES}
        picks = self.rng.sample(range(n), sum(want.values())) if n else []
        self.defect_of: dict[int, str] = {}
        pos = 0
        for k in DEFECT_TYPES:
            for i in picks[pos : pos + want[k]]:
                self.defect_of[i] = k
            pos += want[k]
        self.dup_lines: list[str] = []
        self.age_cum = _cum(AGE_BANDS)
        self.size_cum = _cum([w for _, w in HOUSEHOLD_SIZES])
        self.edu_cum = _cum([w for _, w in EDU_ADULT])
        self.ref_ord = ref.toordinal()
        self.ethnic = (
            [("01", 0.5), ("15", 0.45), ("06", 0.05)] if city == "422800" else [("01", 0.97), ("15", 0.03)]
        )
        self.eth_cum = _cum([w for _, w in self.ethnic])

    def _age(self, lo=0, hi=99) -> int:
        while True:
            band = _weighted(self.rng, self.age_cum, list(range(len(AGE_BANDS))))
            a = band * 5 + int(self.rng.random() * 5)
            if lo <= a <= hi:
                return a

    def _birth(self, age: int) -> dt.date:
        # birth date such that the completed age at ref is `age`
        days = age * 365 + int(self.rng.random() * 365) + age // 4
        return dt.date.fromordinal(self.ref_ord - days - 1)

    def rows(self):
        """Yield (table, line) tuples; persons are generated county by county."""
        counties = self.tree.counties
        per = [
            self.n // len(counties) + (1 if i < self.n % len(counties) else 0) for i in range(len(counties))
        ]
        idx = 0
        hh_seq = 0
        rng = self.rng
        for ci, county in enumerate(counties):
            seqs: dict[str, int] = {}
            villages = self.tree.villages[county]
            others = [v for c in counties if c != county for v in self.tree.villages[c]] or villages
            left = per[ci]
            while left > 0:
                size = min(_weighted(rng, self.size_cum, [s for s, _ in HOUSEHOLD_SIZES]), left)
                hh_seq += 1
                hh_id = f"{county}{hh_seq:010d}"
                village = villages[int(rng.random() * len(villages))]
                members = self._household(size)
                # newborn to a woman of fertile age in the household
                mothers = [m for m in members if m[0] == "2" and 15 <= m[1] <= 49]
                baby = None
                if mothers and len(members) < left:
                    mo = mothers[0]
                    if rng.random() < ASFR[(mo[1] - 15) // 5]:
                        baby = ("1" if rng.random() < 0.52 else "2", 0, "child")
                        members.append(baby)
                ids = []
                for sex, age, role in members:
                    if age == 0:  # newborn of the last year
                        bd = dt.date.fromordinal(self.ref_ord - 1 - int(rng.random() * 364))
                    else:
                        bd = self._birth(age)
                    key = f"{bd:%Y%m%d}"
                    s = seqs.get(key, 0) + 1
                    seqs[key] = s
                    seq3 = 2 * s - 1 if sex == "1" else 2 * s
                    if seq3 > 999:
                        seq3 = (seq3 % 998) + 1
                    f17 = f"{county}{key}{seq3:03d}"
                    ids.append((f17 + check_char(f17), sex, bd, age, role))
                head_id = ids[0][0]
                created = self.ref_ord - 1 - int(rng.random() * 3650)
                cdate = dt.date.fromordinal(created)
                yield (
                    "household",
                    f"{hh_id}\t{head_id}\t{village}\t1\t\\N\t{self.city}\t{_ts(cdate, 0)}\t{_ts(cdate, 0)}\n",
                )
                self.stats["households"] += 1
                for id_no, sex, bd, age, role in ids:
                    yield from self._person(idx, id_no, sex, bd, age, role, hh_id, village, others, county)
                    idx += 1
                    left -= 1
                if baby is not None:
                    mo_id = ids[members.index(mothers[0])][0]
                    child = ids[-1]
                    order = 1 + sum(1 for m in members[:-1] if m[2] == "child")
                    bdate = child[2]
                    yield (
                        "birth_event",
                        f"B{child[0]}\t{mo_id}\t{child[0]}\t{order}\t{bdate}\t{village}\t{self.city}\t"
                        f"{_ts(bdate, 3600)}\t{_ts(bdate, 3600)}\n",
                    )
                    self.stats["births"] += 1

    def _household(self, size: int) -> list[tuple[str, int, str]]:
        rng = self.rng
        head_age = self._age(22, 90)
        head_sex = "1" if rng.random() < 0.6 else "2"
        members = [(head_sex, head_age, "head")]
        if size >= 2:
            sp_age = max(20, min(95, head_age + int(rng.random() * 7) - 3))
            members.append(("2" if head_sex == "1" else "1", sp_age, "spouse"))
        mother_age = min(a for _, a, _ in members)
        for _ in range(size - len(members)):
            age = max(1, mother_age - 22 - int(rng.random() * 14))
            members.append(("1" if rng.random() < 0.52 else "2", age, "child"))
        return members

    def _person(self, idx, id_no, sex, bd, age, role, hh_id, village, others, county):
        rng = self.rng
        name = SURNAMES[int(rng.random() * len(SURNAMES))] + "".join(
            GIVEN[int(rng.random() * len(GIVEN))] for _ in range(1 + (rng.random() < 0.7))
        )
        eth = _weighted(rng, self.eth_cum, [e for e, _ in self.ethnic])
        if age < 20:
            marital = "10"
        elif role in ("head", "spouse") and age >= 22:
            marital = "20" if rng.random() < 0.85 else ("30" if age > 60 else "40")
        else:
            marital = "10" if rng.random() < 0.7 else "20"
        if age < 6:
            edu = "90"
        elif age < 18:
            edu = "80" if age < 12 else ("70" if age < 15 else "60")
        else:
            edu = _weighted(rng, self.edu_cum, [e for e, _ in EDU_ADULT])
        hukou = village
        residence = village
        floating = None
        if age >= 16 and rng.random() < FLOATING_RATE / 0.82:  # ~82% are 16+: overall ~9%
            residence = others[int(rng.random() * len(others))]
            floating = residence
            self.stats["floating"] += 1
        mgmt = residence[:9] + "000"
        status = "1"
        death = None
        if rng.random() < _mortality(age):
            status = "2"
            ddays = int(rng.random() * 365)
            death = dt.date.fromordinal(max(bd.toordinal(), self.ref_ord - 1 - ddays))
        created = max(bd.toordinal(), self.ref_ord - 1 - int(rng.random() * 3650))
        cdate = dt.date.fromordinal(created)
        udate = dt.date.fromordinal(created + int(rng.random() * (self.ref_ord - created)))
        usecs = int(rng.random() * 86400)
        defect = self.defect_of.get(idx)
        fields = {
            "id_no": id_no,
            "name": name,
            "sex": sex,
            "birth_date": bd.isoformat(),
            "hukou_region": hukou,
        }
        if defect is not None:
            self.counts[defect] += 1
            if defect == "bad_check_digit":
                wrong = [c for c in CHECK if c != id_no[17]]
                fields["id_no"] = id_no[:17] + wrong[int(rng.random() * len(wrong))]
            elif defect == "missing_fields":
                fields[MISSING_FIELDS[idx % len(MISSING_FIELDS)]] = None
            elif defect == "impossible_dates":
                fields["birth_date"] = dt.date.fromordinal(
                    self.ref_ord + 1 + int(rng.random() * 3650)
                ).isoformat()
            elif defect == "sex_mismatch":
                fields["sex"] = "2" if sex == "1" else "1"
        v = {k: ("\\N" if x is None else x) for k, x in fields.items()}
        line = (
            f"{v['id_no']}\t{v['name']}\t{v['sex']}\t{v['birth_date']}\t{eth}\t{marital}\t{edu}\t{hh_id}\t"
            f"{v['hukou_region']}\t{residence}\t{floating or chr(92) + 'N'}\t{mgmt}\t{status}\t{self.city}\t"
            f"{_ts(cdate, 0)}\t"
        )
        yield ("person", line + _ts(udate, usecs) + "\n")
        self.stats["persons"] += 1
        if defect == "dup_cross_city":
            # the same person registered in another city too, updated a day earlier or later
            other = dt.date.fromordinal(
                min(self.ref_ord - 1, udate.toordinal() + (1 if rng.random() < 0.5 else -1))
            )
            self.dup_lines.append(line.replace(f"\t{self.city}\t", "\t{CITY}\t") + _ts(other, usecs) + "\n")
        if death is not None and defect is None:
            self.stats["deaths"] += 1
            yield (
                "death_event",
                f"{id_no}\t{death}\t{residence}\t{self.city}\t{_ts(death, 0)}\t{_ts(death, 0)}\n",
            )


COPY_COLUMNS = {
    "person": "id_no, name, sex, birth_date, ethnicity, marital_status, education, household_id, "
    "hukou_region, residence_region, floating_region, mgmt_unit, status, city_code, created_at, updated_at",
    "household": "household_id, head_id_no, region_code, household_type, address, city_code, "
    "created_at, updated_at",
    "birth_event": "birth_id, mother_id_no, child_id_no, birth_order, birth_date, birth_place, city_code, "
    "created_at, updated_at",
    "death_event": "id_no, death_date, death_place, city_code, created_at, updated_at",
}


def _capture_triggers(conn, enable: bool) -> None:
    from ansible.module_utils.popdb_schema import SYNC_TABLES

    verb = "ENABLE" if enable else "DISABLE"
    for t in SYNC_TABLES:
        for op in ("insert", "update", "delete"):
            conn.execute(f"ALTER TABLE popdb.{t} {verb} TRIGGER {t}_capture_{op}")


def generate_city(
    dsn: str,
    city: str,
    n: int,
    seed: int = 1,
    ref_date: str | dt.date = "2025-12-31",
    defects: Defects | None = None,
    capture: bool = True,
    replace: bool = False,
    chunk_bytes: int = 1 << 20,
) -> dict:
    """Generate one city into ``dsn`` (migrated as role city). Returns its manifest (with dup lines)."""
    import psycopg
    from ansible.module_utils.popdb_schema import migrate

    ref = dt.date.fromisoformat(ref_date) if isinstance(ref_date, str) else ref_date
    gen = _CityGen(city, n, seed, ref, defects or Defects())
    tables = list(COPY_COLUMNS)
    conns = {t: psycopg.connect(dsn) for t in tables}
    try:
        migrate(conns["person"], "city")
        conns["person"].commit()
        load_regions(conns["person"], [city])
        conns["person"].commit()
        c0 = conns["person"]
        if replace:
            c0.execute("TRUNCATE popdb.person, popdb.household, popdb.birth_event, popdb.death_event")
        if not capture:
            _capture_triggers(c0, False)
        if replace or not capture:
            c0.commit()
        copies = {}
        ctx = {}
        for t in tables:
            ctx[t] = conns[t].cursor().copy(f"COPY popdb.{t} ({COPY_COLUMNS[t]}) FROM STDIN")
            copies[t] = ctx[t].__enter__()
        bufs: dict[str, list[str]] = {t: [] for t in tables}
        sizes = dict.fromkeys(tables, 0)
        for t, line in gen.rows():
            bufs[t].append(line)
            sizes[t] += len(line)
            if sizes[t] > chunk_bytes:
                copies[t].write("".join(bufs[t]))
                bufs[t].clear()
                sizes[t] = 0
        for t in tables:
            if bufs[t]:
                copies[t].write("".join(bufs[t]))
            ctx[t].__exit__(None, None, None)
        for t in tables:
            conns[t].commit()
        if not capture:
            _capture_triggers(c0, True)
            c0.commit()
    finally:
        for c in conns.values():
            c.close()
    return {
        "city": city,
        **gen.stats,
        "defects": dict(gen.counts),
        "dup_lines": gen.dup_lines,
    }


def generate(
    dsns: dict[str, str],
    total: int,
    seed: int = 1,
    ref_date: str = "2025-12-31",
    defects: Defects | dict | None = None,
    capture: bool = True,
    replace: bool = False,
    province_dsn: str | None = None,
) -> dict:
    """Generate ``total`` persons split over the cities of ``dsns``; return the manifest.

    Duplicates (``defects.dup_cross_city``) of city i go to the next city of ``dsns`` (sorted).
    """
    import psycopg

    if isinstance(defects, dict):
        unknown = set(defects) - set(DEFECT_TYPES)
        if unknown:
            raise ValueError(
                f"defects: unknown defect type(s) {sorted(unknown)}; known: {list(DEFECT_TYPES)}"
            )
        defects = Defects(**defects)
    defects = defects or Defects()
    if total < 1:
        raise ValueError("total: must be at least 1")
    cities = sorted(dsns)
    sizes = city_sizes(total, cities)
    manifest = {"seed": seed, "total": total, "ref_date": ref_date, "cities": {}, "defects": {}}
    dup_out: dict[str, list[str]] = {}
    for i, city in enumerate(cities):
        m = generate_city(dsns[city], city, sizes[city], seed, ref_date, defects, capture, replace)
        lines = m.pop("dup_lines")
        if len(cities) > 1 and lines:
            target = cities[(i + 1) % len(cities)]
            dup_out[target] = [ln.replace("{CITY}", target) for ln in lines]
        elif lines:
            m["defects"]["dup_cross_city"] = 0
        manifest["cities"][city] = m
    for target, lines in dup_out.items():
        with psycopg.connect(dsns[target]) as conn:
            with conn.cursor().copy(f"COPY popdb.person ({COPY_COLUMNS['person']}) FROM STDIN") as cp:
                cp.write("".join(lines))
    for k in DEFECT_TYPES:
        manifest["defects"][k] = sum(c["defects"][k] for c in manifest["cities"].values())
    for k in ("persons", "households", "births", "deaths", "floating"):
        manifest[k] = sum(c[k] for c in manifest["cities"].values())
    if province_dsn:
        from ansible.module_utils.popdb_schema import migrate

        with psycopg.connect(province_dsn) as conn:
            migrate(conn, "province")
            load_regions(conn, list(CITIES))
    return manifest
