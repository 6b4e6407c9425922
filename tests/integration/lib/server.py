"""lib/server.py: what every Python integration test shares (the twin of lib/server.js).

1. start_server(): a real nedbd on a free 127.0.0.1 port with a fresh temporary --dbpath,
   its output captured to a log file, returned once it accepts TCP connections and answers
   a ping on one.
   srv.stop() sends SIGTERM and raises unless nedbd exits 0 in time.
2. A tiny test framework: @test("name") (or test(name, fn)), before(fn), after(fn), run().
   Tests run in order and print `ok - name` / `not ok - name: reason`; the file ends with
   `N passed, N failed` (plus `, N skipped`), which tests/integration/run.js parses, and
   exits 1 if anything failed. A failure prints the log tail of every running server.

The nedbd binary is $NEDBD, else the newest build/<dir>/nedbd of this checkout. Run with
/usr/bin/python3 (Debian's python3-pymongo).
"""
import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _newest_built(name):
    found = [p for p in glob.glob(os.path.join(ROOT, "build", "*", name)) if os.path.isfile(p)]
    return max(found, key=os.path.getmtime) if found else None


def nedbd_path():
    p = os.path.abspath(os.environ["NEDBD"]) if os.environ.get("NEDBD") else _newest_built("nedbd")
    if not p or not os.path.exists(p):
        raise RuntimeError("nedbd not found (NEDBD=%s); build it or set NEDBD" % os.environ.get("NEDBD", ""))
    return p


def free_port():
    """A port that was free a moment ago: bind port 0, read it, close."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def answers_ping(port, timeout=1.0):
    """True once a hand-built OP_MSG ping on a fresh connection is answered ok (stronger than
    a TCP connect, which the kernel completes before the server's loop runs)."""
    import struct
    import bson
    import bson.errors
    body = bson.BSON.encode({"ping": 1, "$db": "admin"})
    msg = struct.pack("<iiiiI", 16 + 4 + 1 + len(body), 1, 0, 2013, 0) + b"\x00" + body
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(msg)
            buf = b""
            while len(buf) < 4 or len(buf) < struct.unpack("<i", buf[:4])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                buf += chunk
            n = struct.unpack("<i", buf[21:25])[0]
            doc = bson.BSON(buf[21:21 + n]).decode()
            return doc.get("ok") == 1
    except (OSError, ValueError, struct.error, bson.errors.BSONError):
        return False


def _tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "\n".join(f.read().rstrip("\n").split("\n")[-lines:])
    except OSError as e:
        return "(no log: %s)" % e


_running = []
_started = []  # every server this file started: their directories go when all passed


class Server:
    def __init__(self, directory, port, args, proc, log_path):
        self.dir = directory
        self.dbpath = os.path.join(directory, "data")
        self.port = port
        self.host = "127.0.0.1"
        self.args = args
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path

    @property
    def uri(self):
        return "mongodb://127.0.0.1:%d/" % self.port

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10.0, keep=False):
        """SIGTERM, then wait; raises unless nedbd exits 0 within `timeout` seconds."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("nedbd did not exit within %.0f s of SIGTERM (killed; log kept in %s)\n%s"
                                 % (timeout, self.dir, self.log_tail()))
        finally:
            if self in _running:
                _running.remove(self)
        if code != 0:
            raise AssertionError("nedbd exited with %s after SIGTERM (log kept in %s)\n%s"
                                 % (code, self.dir, self.log_tail()))
        if not keep and not os.environ.get("NEDB_KEEP_TMP"):
            import shutil
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        if self in _running:
            _running.remove(self)


def start_server(args=(), log_level=1, threads=None, start_timeout=15.0):
    """Starts nedbd on a free port with a fresh --dbpath; returns a Server once it accepts."""
    binary = nedbd_path()
    directory = tempfile.mkdtemp(prefix="nedb-it-", dir=tempfile.gettempdir())
    log_path = os.path.join(directory, "nedbd.log")
    last = None
    for _ in range(5):
        port = free_port()
        argv = ["--bind", "127.0.0.1", "--port", str(port), "--dbpath", os.path.join(directory, "data"),
                "--log-level", str(log_level)]
        if threads:
            argv += ["--threads", str(threads)]
        argv += list(args)
        with open(log_path, "a") as log:
            log.write("# %s %s\n" % (binary, " ".join(argv)))
            log.flush()
            proc = subprocess.Popen([binary] + argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        srv = Server(directory, port, argv, proc, log_path)
        _running.append(srv)
        if srv.dir not in [s.dir for s in _started]:
            _started.append(srv)
        deadline = time.time() + start_timeout
        while time.time() < deadline and srv.alive():
            if answers_ping(port):
                return srv
            time.sleep(0.05)
        if srv.alive():
            srv.kill()
            raise RuntimeError("nedbd did not accept connections on port %d within %.0f s (log in %s)\n%s"
                               % (port, start_timeout, directory, _tail(log_path)))
        _running.remove(srv)
        log = _tail(log_path)
        last = RuntimeError("nedbd exited during startup (code %s) (log in %s)\n%s"
                            % (proc.returncode, directory, log))
        if "in use" not in log.lower() and "eaddrinuse" not in log.lower():
            break
    raise last


# ------------------------------------------------------------------ framework

_tests = []
_befores = []
_afters = []


# NEDB_IT_ONLY=a,b runs only the tests whose names contain one of those substrings.
_only = [s for s in os.environ.get("NEDB_IT_ONLY", "").split(",") if s]


def test(name, fn=None, timeout=30.0, skip=None):
    """test("name", fn) or as a decorator: @test("name")."""
    def add(f):
        if not _only or any(s in name for s in _only):
            _tests.append((name, f, timeout, skip))
        return f
    return add(fn) if fn is not None else add


def before(fn):
    _befores.append(fn)
    return fn


def after(fn):
    _afters.append(fn)
    return fn


def comment(text):
    for line in str(text).split("\n"):
        print("# " + line)


def _print_logs():
    for s in list(_running):
        comment("--- nedbd (port %d) log tail: %s" % (s.port, s.log_path))
        comment(s.log_tail(30))


def _reason(e):
    if isinstance(e, AssertionError) and str(e):
        return str(e)
    # A bare `assert`: name the line that failed, from the test's own traceback.
    where = ""
    tb = traceback.extract_tb(e.__traceback__)
    for frame in reversed(tb):
        if not frame.filename.endswith(os.path.join("lib", "server.py")):
            where = " at %s:%d: %s" % (os.path.basename(frame.filename), frame.lineno, frame.line)
            break
    return "%s%s%s" % (type(e).__name__, (": %s" % e) if str(e) else "", where)


def _call(fn, timeout, what):
    """Runs fn in a thread so a hung test is reported instead of blocking the file."""
    box = {}

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: B902 - report everything
            box["e"] = e
            box["tb"] = traceback.format_exc()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError("%s timed out after %.0f s" % (what, timeout))
    if "e" in box:
        e = box["e"]
        if not isinstance(e, AssertionError) and os.environ.get("NEDB_IT_VERBOSE"):
            comment(box["tb"])
        raise e


def run():
    passed = failed = skipped = 0
    setup_error = None
    for fn in _befores:
        try:
            _call(fn, 60, "before()")
        except BaseException as e:  # noqa: B902
            setup_error = e
            print("not ok - setup: %s" % _reason(e))
            _print_logs()
            failed += 1
            break
    for name, fn, timeout, skip in _tests:
        if skip:
            print("ok - %s # SKIP %s" % (name, skip))
            skipped += 1
            continue
        if setup_error is not None:
            print("not ok - %s: setup failed" % name)
            failed += 1
            continue
        t0 = time.time()
        try:
            _call(fn, timeout, 'test "%s"' % name)
            print("ok - %s (%d ms)" % (name, (time.time() - t0) * 1000))
            passed += 1
        except BaseException as e:  # noqa: B902
            print("not ok - %s: %s" % (name, _reason(e)))
            _print_logs()
            failed += 1
        sys.stdout.flush()
    for fn in _afters:
        try:
            _call(fn, 60, "after()")
        except BaseException as e:  # noqa: B902
            print("not ok - teardown: %s" % _reason(e))
            failed += 1
    for s in list(_running):
        s.kill()
    import shutil
    for s in _started:
        if failed == 0 and not os.environ.get("NEDB_KEEP_TMP"):
            shutil.rmtree(s.dir, ignore_errors=True)
        elif os.path.exists(s.dir):
            comment("kept %s" % s.dir)
    print("%d passed, %d failed%s" % (passed, failed, (", %d skipped" % skipped) if skipped else ""))
    sys.stdout.flush()
    os._exit(1 if failed else 0)
