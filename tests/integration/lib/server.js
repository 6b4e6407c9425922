'use strict';
/*
 * lib/server.js: what every JavaScript integration test shares.
 *
 *  1. startServer(): a real nedbd on a free 127.0.0.1 port with a fresh temporary --dbpath,
 *     its stderr and stdout captured to a log file, returned once it accepts TCP
 *     connections and answers a ping on one. srv.stop() sends SIGTERM and throws unless nedbd exits 0 in time.
 *  2. A tiny test framework: test(name, fn), before(fn), after(fn), run(). Tests run in
 *     order; each prints `ok - name` or `not ok - name: reason`; the file ends with one line
 *     `N passed, N failed` (plus `, N skipped`) that tests/integration/run.js parses, and
 *     exits 1 if anything failed. When a test fails, the log tail of every server still
 *     running is printed (as `# ` comment lines) so the reason is next to the failure.
 *
 * The nedbd binary comes from $NEDBD; when that is unset, the newest build/<dir>/nedbd of
 * this checkout is used. Nothing here knows about any machine path.
 */
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..', '..');

/* ---------------------------------------------------------------- binaries */

function newestBuilt(name) {
    const build = path.join(ROOT, 'build');
    let best = null;
    let bestTime = -1;
    let dirs = [];
    try {
        dirs = fs.readdirSync(build);
    } catch (e) {
        return null;
    }
    for (const d of dirs) {
        const p = path.join(build, d, name);
        try {
            const st = fs.statSync(p);
            if (st.isFile() && st.mtimeMs > bestTime) {
                best = p;
                bestTime = st.mtimeMs;
            }
        } catch (e) { /* not built there */ }
    }
    return best;
}

/* Path of the nedbd under test; throws with a helpful message if there is none. */
function nedbdPath() {
    const p = process.env.NEDBD ? path.resolve(process.env.NEDBD) : newestBuilt('nedbd');
    if (!p || !fs.existsSync(p))
        throw new Error(`nedbd not found (NEDBD=${process.env.NEDBD || ''}); build it or set NEDBD`);
    return p;
}

/* Path of the offline `nedb` tool, or null when it is not built. */
function nedbToolPath() {
    const p = process.env.NEDB_TOOL ? path.resolve(process.env.NEDB_TOOL) : newestBuilt('nedb');
    return p && fs.existsSync(p) ? p : null;
}

/* Runs nedbd synchronously with `args` (for --help, --version, bad flags). The result is
 * spawnSync's, plus `timedOut` (nedbd was still running at the timeout and got SIGTERM, so
 * its exit status says nothing) and `what` (a one-line description for messages). */
function runNedbdSync(args, opts = {}) {
    const r = spawnSync(nedbdPath(), args, { encoding: 'utf8', timeout: 10000, ...opts });
    r.timedOut = !!(r.error && r.error.code === 'ETIMEDOUT');
    r.what = r.timedOut ? 'still running at the timeout (it started serving)'
        : `exit ${r.signal || r.status}, stderr ${JSON.stringify((r.stderr || '').trim())}`;
    return r;
}

/* True when a runNedbdSync() result is a refusal: it ended by itself with a non-zero status. */
const refused = (r) => !r.timedOut && r.status !== 0 && r.status !== null;

/* ---------------------------------------------------------------- helpers */

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* A port that was free a moment ago: bind port 0, read the port, close. */
function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function canConnect(port, timeoutMs = 500) {
    return new Promise((resolve) => {
        const sock = net.connect({ port, host: '127.0.0.1' });
        const done = (ok) => {
            clearTimeout(t);
            sock.destroy();
            resolve(ok);
        };
        const t = setTimeout(() => done(false), timeoutMs);
        sock.once('connect', () => done(true));
        sock.once('error', () => done(false));
    });
}

/* True once a ping on a fresh connection is answered. Stronger than a TCP connect: the
 * kernel completes connects into the listen backlog before the server's loop runs. */
async function answersPing(port) {
    const { RawConn } = require('./wire');
    let c;
    try {
        c = await RawConn.open(port, '127.0.0.1', 500);
        const r = await c.command({ ping: 1, $db: 'admin' }, 2000);
        return r.ok === 1;
    } catch (e) {
        return false;
    } finally {
        if (c) c.close();
    }
}

function tail(file, lines = 40) {
    try {
        const text = fs.readFileSync(file, 'utf8');
        return text.split('\n').slice(-lines - 1).join('\n').trimEnd();
    } catch (e) {
        return `(no log: ${e.message})`;
    }
}

/* Soft "Max open files" of a process (default: this one), from /proc. */
function openFileLimit(pid = 'self') {
    try {
        const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
        const m = limits.match(/^Max open files\s+(\S+)\s+(\S+)/m);
        if (m) {
            const v = (s) => (s === 'unlimited' ? Infinity : Number(s));
            return { soft: v(m[1]), hard: v(m[2]) };
        }
    } catch (e) { /* not Linux */ }
    return { soft: Infinity, hard: Infinity };
}

/* ---------------------------------------------------------------- server */

const running = new Set();
const started = []; // every server this file started: their directories go when all passed

class Server {
    constructor(dir, port, args, proc, logPath, dbpath) {
        this.dir = dir;                    // temporary directory, holds data/ and nedbd.log
        this.dbpath = dbpath || path.join(dir, 'data');
        this.port = port;
        this.host = '127.0.0.1';
        this.args = args;                  // argv after the binary
        this.proc = proc;
        this.pid = proc.pid;
        this.logPath = logPath;
        this.exit = null;                  // {code, signal} once exited
        this.exited = new Promise((resolve) => {
            proc.once('exit', (code, signal) => {
                this.exit = { code, signal };
                running.delete(this);
                resolve(this.exit);
            });
        });
    }

    get uri() {
        return `mongodb://127.0.0.1:${this.port}/`;
    }

    logTail(lines = 40) {
        return tail(this.logPath, lines);
    }

    alive() {
        return this.exit === null;
    }

    /* SIGTERM, then wait; throws unless nedbd exits with code 0 within timeoutMs. On
     * success the temporary directory is removed (unless keep), on failure it is kept. */
    async stop({ timeoutMs = 10000, keep = false } = {}) {
        if (this.exit === null) this.proc.kill('SIGTERM');
        const t0 = Date.now();
        const res = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
        if (res === null) {
            this.proc.kill('SIGKILL');
            await this.exited;
            throw new Error(`nedbd did not exit within ${timeoutMs} ms of SIGTERM ` +
                            `(killed; log kept in ${this.dir})\n${this.logTail()}`);
        }
        if (res.code !== 0) {
            throw new Error(`nedbd exited with ${res.signal ? 'signal ' + res.signal : 'code ' + res.code} ` +
                            `after SIGTERM (log kept in ${this.dir})\n${this.logTail()}`);
        }
        if (!keep && !process.env.NEDB_KEEP_TMP) fs.rmSync(this.dir, { recursive: true, force: true });
        return Date.now() - t0;
    }

    kill() {
        if (this.exit === null) this.proc.kill('SIGKILL');
    }
}

/*
 * Starts nedbd. Options:
 *   dbpath    data directory (default: data/ inside a fresh temporary directory)
 *   args      extra command-line arguments (after --bind/--port/--dbpath)
 *   logLevel  --log-level (default 1, so connection lines are in the log tail; null: no flag)
 *   threads   --threads (default: nedbd's own default)
 *   env       extra environment variables
 *   wrap      (bin, args) -> [file, args]: run nedbd through another program (ulimit, ...)
 *   ready     'ping' (default): return once a ping is answered; 'tcp': once a TCP connect
 *             succeeds (for tests of what happens that early)
 */
async function startServer(opts = {}) {
    const bin = nedbdPath();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nedb-it-'));
    const logPath = path.join(dir, 'nedbd.log');
    let lastErr = null;
    for (let attempt = 0; attempt < 5; attempt++) {
        const port = await freePort();
        const args = ['--bind', '127.0.0.1', '--port', String(port),
                      '--dbpath', opts.dbpath || path.join(dir, 'data')];
        if (opts.logLevel !== null) args.push('--log-level', String(opts.logLevel ?? 1));
        if (opts.threads) args.push('--threads', String(opts.threads));
        if (opts.args) args.push(...opts.args);
        const logFd = fs.openSync(logPath, 'a');
        fs.writeSync(logFd, `# ${bin} ${args.join(' ')}\n`);
        const [file, argv] = opts.wrap ? opts.wrap(bin, args) : [bin, args];
        const proc = spawn(file, argv, {
            stdio: ['ignore', logFd, logFd],
            env: { ...process.env, ...(opts.env || {}) },
        });
        fs.closeSync(logFd);
        const srv = new Server(dir, port, args, proc, logPath, opts.dbpath);
        running.add(srv);
        if (attempt === 0) started.push(srv);
        const deadline = Date.now() + (opts.startTimeoutMs || 15000);
        while (Date.now() < deadline && srv.alive()) {
            if (opts.ready === 'tcp' ? await canConnect(port) : await answersPing(port)) return srv;
            await sleep(50);
        }
        if (srv.alive()) {
            srv.kill();
            await srv.exited;
            throw new Error(`nedbd did not accept connections on port ${port} within ` +
                            `${opts.startTimeoutMs || 15000} ms (log in ${dir})\n${tail(logPath)}`);
        }
        const log = tail(logPath);
        lastErr = new Error(`nedbd exited during startup (${srv.exit.signal || 'code ' + srv.exit.code}) ` +
                            `(log in ${dir})\n${log}`);
        // Someone took the port between freePort() and bind(): try another one.
        if (!/in use|EADDRINUSE/i.test(log.split('\n').slice(-5).join('\n'))) break;
    }
    throw lastErr;
}

process.on('exit', () => {
    for (const s of running) s.kill();
});

/* ---------------------------------------------------------------- framework */

const tests = [];
const befores = [];
const afters = [];

/* NEDB_IT_ONLY=a,b runs only the tests whose names contain one of those substrings. */
const only = (process.env.NEDB_IT_ONLY || '').split(',').filter(Boolean);

function test(name, fn, opts = {}) {
    if (only.length && !only.some((s) => name.includes(s))) return;
    tests.push({ name, fn, timeoutMs: opts.timeoutMs || 30000, skip: opts.skip });
}
test.skip = (name, fn, reason) => test(name, fn, { skip: reason || 'skipped' });
const before = (fn) => befores.push(fn);
const after = (fn) => afters.push(fn);

function errText(e) {
    if (e && e.name === 'AssertionError') {
        const first = e.message.split('\n')[0];
        const values = e.operator && e.operator !== '==' && e.operator !== 'fail'
            ? ` (actual ${fmt(e.actual)}, expected ${fmt(e.expected)})` : '';
        return first + values;
    }
    if (e && e.name && e.name.startsWith('Mongo'))
        return `${e.name}: ${e.message}${e.code !== undefined ? ` (code ${e.code})` : ''}`;
    return e && e.stack ? e.stack.split('\n').slice(0, 4).join('\n') : String(e);
}

function fmt(v) {
    try {
        const s = typeof v === 'string' ? JSON.stringify(v) : require('util').inspect(v, { depth: 3, breakLength: 200 });
        return s.length > 300 ? s.slice(0, 300) + '...' : s;
    } catch (e) {
        return String(v);
    }
}

/* An exception nobody caught (a socket 'error' without a listener, a rejected promise a test
 * forgot to await) fails the test running at the time instead of killing the file. */
let failCurrent = null;
let stray = null;
function onStray(e) {
    if (failCurrent) failCurrent(e);
    else stray = stray || e;
}
process.on('uncaughtException', onStray);
process.on('unhandledRejection', onStray);

function withTimeout(promise, ms, what) {
    let t;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
            failCurrent = (e) => {
                const err = new Error(`uncaught during ${what}: ${e && e.message ? e.message : e}`);
                if (e && e.stack) err.stack = `${err.message}\n${e.stack.split('\n').slice(1).join('\n')}`;
                reject(err);
            };
        }),
    ]).finally(() => {
        clearTimeout(t);
        failCurrent = null;
    });
}

function comment(text) {
    for (const line of String(text).split('\n')) console.log(`# ${line}`);
}

function printServerLogs() {
    for (const s of running) {
        comment(`--- nedbd (port ${s.port}) log tail: ${s.logPath}`);
        comment(s.logTail(30));
    }
}

async function run() {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    let setupError = null;
    for (const fn of befores) {
        try {
            await withTimeout(Promise.resolve().then(fn), 60000, 'before()');
        } catch (e) {
            setupError = e;
            console.log(`not ok - setup: ${errText(e)}`);
            printServerLogs();
            failed++;
            break;
        }
    }
    for (const t of tests) {
        if (t.skip) {
            console.log(`ok - ${t.name} # SKIP ${t.skip}`);
            skipped++;
            continue;
        }
        if (setupError) {
            console.log(`not ok - ${t.name}: setup failed`);
            failed++;
            continue;
        }
        const t0 = Date.now();
        try {
            await withTimeout(Promise.resolve().then(t.fn), t.timeoutMs, `test "${t.name}"`);
            console.log(`ok - ${t.name} (${Date.now() - t0} ms)`);
            passed++;
        } catch (e) {
            console.log(`not ok - ${t.name}: ${errText(e)}`);
            printServerLogs();
            failed++;
        }
    }
    for (const fn of afters) {
        try {
            await withTimeout(Promise.resolve().then(fn), 60000, 'after()');
        } catch (e) {
            console.log(`not ok - teardown: ${errText(e)}`);
            failed++;
        }
    }
    if (stray) {
        console.log(`not ok - uncaught between tests: ${errText(stray)}`);
        failed++;
    }
    for (const s of running) s.kill(); // a test that forgot its server must not leak it
    for (const s of started) {
        if (failed === 0 && !process.env.NEDB_KEEP_TMP) fs.rmSync(s.dir, { recursive: true, force: true });
        else if (fs.existsSync(s.dir)) comment(`kept ${s.dir}`);
    }
    console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
    process.exitCode = failed ? 1 : 0;
    // Do not wait for stray sockets or timers a failed test left behind.
    setTimeout(() => process.exit(process.exitCode), 200).unref();
}

/* Awaits a command that must fail with a server error of `code`; returns the error. */
async function expectCode(promise, code) {
    const assert = require('assert/strict');
    const { MongoServerError } = require('mongodb');
    let caught;
    try {
        await promise;
    } catch (e) {
        caught = e;
    }
    assert.ok(caught, `expected error ${code}, got success`);
    assert.ok(caught instanceof MongoServerError, `unexpected error ${caught}`);
    assert.equal(caught.code, code, caught.message);
    return caught;
}

module.exports = {
    ROOT,
    expectCode,
    nedbdPath,
    nedbToolPath,
    runNedbdSync,
    refused,
    startServer,
    freePort,
    canConnect,
    openFileLimit,
    sleep,
    test,
    before,
    after,
    run,
    comment,
};
