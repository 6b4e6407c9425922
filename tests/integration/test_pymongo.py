"""test_pymongo.py: pymongo 3.11 (Debian's python3-pymongo) against a real nedbd.

pymongo 3.11 is the oldest client NEDB supports: it handshakes with OP_QUERY isMaster and
needs minWireVersion <= 9 (DESIGN.md section 9). Values are compared with what the server
or the machine says elsewhere, not with constants the server could match by accident.
Run with /usr/bin/python3 (tests/integration/run.js does).
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import server as h  # noqa: E402

import pymongo  # noqa: E402
from pymongo import MongoClient  # noqa: E402
from pymongo.errors import OperationFailure  # noqa: E402

srv = None
client = None


@h.before
def setup():
    global srv
    srv = h.start_server()


@h.after
def teardown():
    if client is not None:
        client.close()
    if srv is not None and srv.alive():
        srv.kill()


def connected():
    """The shared client, connected on first use (so a broken handshake fails each test)."""
    global client
    if client is None:
        c = MongoClient("127.0.0.1", srv.port, serverSelectionTimeoutMS=3000, connect=True)
        c.admin.command("ping")
        client = c
    return client


def eq(actual, expected, what):
    assert actual == expected, "%s: %r, expected %r" % (what, actual, expected)


@h.test("pymongo version is the pinned 3.11 series")
def _():
    assert pymongo.version.startswith("3.11"), "pymongo %s (run with /usr/bin/python3)" % pymongo.version


@h.test("MongoClient connects and ping answers ok 1")
def _():
    eq(connected().admin.command("ping")["ok"], 1.0, "ping ok")
    eq(connected().test.command("ping")["ok"], 1.0, "ping on test")


@h.test("handshake limits reach the client")
def _():
    c = connected()
    eq(c.is_primary, True, "is_primary")
    eq(c.max_bson_size, 16 * 1024 * 1024, "max_bson_size")
    eq(c.max_message_size, 48000000, "max_message_size")
    eq(c.max_write_batch_size, 100000, "max_write_batch_size")
    eq(c.address, ("127.0.0.1", srv.port), "address")


@h.test("buildInfo: 7.0 version and a matching 4-int versionArray")
def _():
    bi = connected().admin.command("buildInfo")
    eq(bi["ok"], 1.0, "ok")
    v = bi["version"]
    parts = v.split(".")
    assert len(parts) == 3 and parts[0] == "7" and parts[1] == "0" and parts[2].isdigit(), "version %r" % v
    va = bi["versionArray"]
    assert len(va) == 4 and all(isinstance(x, int) for x in va), "versionArray %r" % (va,)
    eq(va[:3], [int(p) for p in parts], "versionArray vs version")
    out = subprocess.run([h.nedbd_path(), "--version"], capture_output=True, text=True, timeout=10).stdout
    assert bi["nedb"]["version"] in out, "buildInfo.nedb.version %r, --version %r" % (bi["nedb"]["version"], out)


@h.test("listCommands: ping, hello, buildInfo with help")
def _():
    cmds = connected().admin.command("listCommands")["commands"]
    for name in ("ping", "hello", "buildInfo", "isMaster"):
        assert name in cmds, "listCommands lacks %s" % name
        assert isinstance(cmds[name].get("help"), str) and cmds[name]["help"].strip(), "%s has no help" % name


@h.test("server_info() is buildInfo")
def _():
    info = connected().server_info()
    bi = connected().admin.command("buildInfo")
    eq(info["version"], bi["version"], "server_info version")
    eq(info["versionArray"], bi["versionArray"], "server_info versionArray")


@h.test("unknown command raises OperationFailure 59 CommandNotFound")
def _():
    for name in ("foo", "nedbNoSuchCommand42"):
        try:
            connected().test.command(name)
        except OperationFailure as e:
            eq(e.code, 59, "%s code" % name)
            eq(e.details.get("codeName"), "CommandNotFound", "%s codeName" % name)
            eq(e.details.get("errmsg"), "no such command: '%s'" % name, "%s errmsg" % name)
            eq(e.details.get("ok"), 0.0, "%s ok" % name)
        else:
            raise AssertionError("%s succeeded" % name)
    eq(connected().admin.command("ping")["ok"], 1.0, "ping after the error")


@h.test("serverStatus pid is nedbd's and connections are counted")
def _():
    s = connected().admin.command("serverStatus")
    eq(int(s["pid"]), srv.pid, "pid")
    assert s["connections"]["current"] >= 1, "connections %r" % s["connections"]


@h.test("sessions: start_session and end it")
def _():
    c = connected()
    with c.start_session() as s:
        eq(c.admin.command("ping", session=s)["ok"], 1.0, "ping in a session")
        assert s.session_id["id"].subtype == 4, "lsid %r" % s.session_id


@h.test("a client asking for zlib compression is not given it and still works")
def _():
    z = MongoClient("127.0.0.1", srv.port, serverSelectionTimeoutMS=3000, compressors="zlib")
    try:
        eq(z.admin.command("ping")["ok"], 1.0, "ping")
        hello = z.admin.command("isMaster", compression=["zlib"])
        assert "compression" not in hello, "server offered compression %r" % hello.get("compression")
    finally:
        z.close()


@h.test("commands with a secondaryPreferred read preference run on the standalone")
def _():
    from pymongo import ReadPreference
    r = connected().admin.command("buildInfo", read_preference=ReadPreference.SECONDARY_PREFERRED)
    eq(r["ok"], 1.0, "buildInfo ok")
    c = MongoClient("127.0.0.1", srv.port, serverSelectionTimeoutMS=3000, readPreference="secondary")
    try:
        eq(c.admin.command("ping")["ok"], 1.0, "ping with readPreference=secondary on a direct connection")
    finally:
        c.close()


@h.test("nedbd exits 0 on SIGTERM with pymongo connected")
def _():
    try:
        connected()
    except Exception:  # noqa: BLE001 - shutdown is tested even when the handshake is broken
        pass
    srv.stop(timeout=5)


h.run()
