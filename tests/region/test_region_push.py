"""Push of the dictionary + mapping to a real database table and a real HTTP endpoint (loopback)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from ansible.module_utils import popdb_downstream as D
from ansible.module_utils import popdb_region as R
from regionlib import change


class Store(BaseHTTPRequestHandler):
    """A business system's endpoint: PUT stores the document, GET returns it."""

    doc: bytes | None = None
    drop_last_row = False
    puts = 0

    def do_PUT(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).drop_last_row:  # a faulty receiver: loses a row
            d = json.loads(body)
            d["rows"] = d["rows"][:-1]
            body = json.dumps(d).encode()
        type(self).doc = body
        type(self).puts += 1
        self.send_response(204)
        self.end_headers()

    def do_GET(self):  # noqa: N802
        if type(self).doc is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(type(self).doc)))
        self.end_headers()
        self.wfile.write(type(self).doc)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_store():
    handler = type("S", (Store,), {"doc": None, "drop_last_row": False, "puts": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{srv.server_address[1]}/region-dict"
    srv.shutdown()
    srv.server_close()


def test_push_db_and_http_verified(pg_server, prov, http_store):
    handler, url = http_store
    biz = pg_server.create_db("biz_region")
    downstreams = [
        {"name": "业务库", "type": "db", "dsn": biz, "table": "public.region_dict"},
        {"name": "交换平台", "type": "http", "url": url},
    ]
    res = D.push_all(prov, downstreams)
    assert res["failed"] == [] and res["rows"] > 100
    assert [(r["changed"], r["verified"]) for r in res["downstreams"]] == [(True, True), (True, True)]
    with psycopg.connect(biz) as c:
        assert c.execute("SELECT count(*) FROM public.region_dict").fetchone()[0] == res["rows"]
    assert json.loads(handler.doc)["checksum"] == res["checksum"]
    # nothing new: nothing pushed
    again = D.push_all(prov, downstreams)
    assert not again["changed"] and handler.puts == 1
    # after a change the new dictionary arrives everywhere
    R.apply_change(prov, change(type="rename", code="420600", name="襄樊市"))
    res = D.push_all(prov, downstreams)
    assert res["changed"] and res["failed"] == []
    with psycopg.connect(biz) as c:
        assert (
            c.execute("SELECT name FROM public.region_dict WHERE code = '420600000000'").fetchone()[0]
            == "襄樊市"
        )
    names = {r[0]: r[1] for r in json.loads(handler.doc)["rows"]}
    assert names["420600000000"] == "襄樊市"


def test_push_detects_what_did_not_arrive(prov, http_store):
    handler, url = http_store
    handler.drop_last_row = True
    res = D.push_all(
        prov,
        [
            {"name": "坏接收端", "type": "http", "url": url},
            {"name": "不可达", "type": "http", "url": "http://127.0.0.1:9/none", "timeout": 2},
        ],
    )
    assert res["failed"] == ["坏接收端", "不可达"]
    assert "verification failed" in res["downstreams"][0]["error"]


def test_push_check_mode_writes_nothing(pg_server, prov, http_store):
    handler, url = http_store
    biz = pg_server.create_db("biz_region_check")
    res = D.push_all(
        prov,
        [
            {"name": "db", "type": "db", "dsn": biz, "table": "region_dict"},
            {"name": "http", "type": "http", "url": url},
        ],
        check=True,
    )
    assert [r["changed"] for r in res["downstreams"]] == [True, True]
    assert handler.doc is None
    with psycopg.connect(biz) as c:
        assert c.execute("SELECT to_regclass('region_dict')").fetchone()[0] is None
