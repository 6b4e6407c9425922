'use strict';
/*
 * test_mongosh.js: the real mongosh 2.12 (node_modules/.bin/mongosh) connects to nedbd and
 * runs commands with --quiet --eval. Besides the values, the shell must stay silent: no
 * warning (mongosh prints startup warnings and complains about fields it does not expect)
 * and nothing at all on stderr.
 *
 * --quiet also hides mongosh's startup banners (the server's startup warnings and the
 * "Non-Genuine MongoDB" warning, which it shows when replies look like another product's), so
 * one test runs without --quiet and checks that no banner appears.
 *
 * mongosh runs with HOME pointing into a temporary directory (it writes logs and history
 * there), telemetry off and CI=1 (no update check), so the test neither touches the user's
 * files nor the network.
 */
const assert = require('assert/strict');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./lib/server');
const { RawConn } = require('./lib/wire');

const MONGOSH = path.join(h.ROOT, 'node_modules', '.bin', 'mongosh');
let srv;
let home;

h.before(async () => {
    assert.ok(fs.existsSync(MONGOSH), `mongosh not installed at ${MONGOSH} (npm ci)`);
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'nedb-it-mongosh-'));
    srv = await h.startServer();
});

h.after(async () => {
    if (srv && srv.alive()) srv.kill();
    if (home) fs.rmSync(home, { recursive: true, force: true });
});

/* Runs mongosh [--quiet] --eval `script` (or, with script null, the REPL fed `input` on
 * stdin) against db `test`; resolves {code, stdout, stderr}. */
function mongosh(script, { quiet = true, input = '', timeoutMs = 60000 } = {}) {
    return new Promise((resolve, reject) => {
        const args = [`mongodb://127.0.0.1:${srv.port}/test`, ...(quiet ? ['--quiet'] : []),
                      ...(script === null ? [] : ['--eval', script])];
        const p = spawn(MONGOSH, args, {
            env: { ...process.env, HOME: home, MONGOSH_FORCE_DISABLE_TELEMETRY_FOR_TESTING: '1', NO_COLOR: '1',
                   CI: '1' },
            stdio: ['pipe', 'pipe', 'pipe'],
        });
        p.stdin.end(input);
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => { stdout += d; });
        p.stderr.on('data', (d) => { stderr += d; });
        const t = setTimeout(() => {
            p.kill('SIGKILL');
            reject(new Error(`mongosh did not finish in ${timeoutMs} ms; stdout ${stdout} stderr ${stderr}`));
        }, timeoutMs);
        p.on('error', reject);
        p.on('close', (code) => {
            clearTimeout(t);
            resolve({ code, stdout, stderr });
        });
    });
}

/* The one `RESULT {...}` line the script printed, parsed; asserts nothing else was printed. */
function result(out) {
    const lines = out.stdout.split('\n').map((l) => l.trimEnd()).filter((l) => l.length);
    const res = lines.filter((l) => l.startsWith('RESULT '));
    const other = lines.filter((l) => !l.startsWith('RESULT '));
    assert.equal(res.length, 1, `expected one RESULT line; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
    assert.deepEqual(other, [], `mongosh printed more than the result (warnings?):\n${other.join('\n')}`);
    return JSON.parse(res[0].slice('RESULT '.length));
}

function quiet(out) {
    assert.equal(out.stderr.trim(), '', `mongosh wrote to stderr:\n${out.stderr}`);
    assert.ok(!/warning/i.test(out.stdout), `mongosh printed a warning:\n${out.stdout}`);
}

h.test('mongosh: ping and db.version(), nothing else printed', async () => {
    const out = await mongosh(
        'const ping = db.runCommand({ ping: 1 });' +
        'print("RESULT " + JSON.stringify({ ping: ping.ok, version: db.version(), db: db.getName() }));');
    quiet(out);
    assert.equal(out.code, 0, `exit ${out.code}`);
    const r = result(out);
    assert.equal(r.ping, 1);
    assert.equal(r.db, 'test');
    // db.version() is buildInfo.version: ask the server directly over a raw socket.
    const c = await RawConn.open(srv.port);
    try {
        const bi = await c.command({ buildInfo: 1, $db: 'admin' });
        assert.equal(r.version, bi.version);
    } finally {
        c.close();
    }
    assert.match(r.version, /^7\.0\.\d+$/);
}, { timeoutMs: 90000 });

h.test('mongosh: unknown command fails with 59 CommandNotFound', async () => {
    const out = await mongosh(
        'let r;' +
        'try { const x = db.runCommand({ foo: 1 });' +
        '      r = { threw: false, ok: x.ok, code: x.code, codeName: x.codeName, errmsg: x.errmsg }; }' +
        'catch (e) { r = { threw: true, code: e.code, codeName: e.codeName, errmsg: e.message }; }' +
        'print("RESULT " + JSON.stringify(r));');
    quiet(out);
    const r = result(out);
    assert.equal(r.code, 59, JSON.stringify(r));
    assert.equal(r.codeName, 'CommandNotFound', JSON.stringify(r));
    assert.ok(String(r.errmsg).includes("no such command: 'foo'"), `errmsg ${r.errmsg}`);
    if (!r.threw) assert.equal(r.ok, 0);
}, { timeoutMs: 90000 });

h.test('mongosh: db.hello(), db.serverStatus() and db.hostInfo() helpers work', async () => {
    const out = await mongosh(
        'const hello = db.hello(); const ss = db.serverStatus(); const hi = db.hostInfo();' +
        'print("RESULT " + JSON.stringify({ primary: hello.isWritablePrimary, wire: hello.maxWireVersion,' +
        '  conns: ss.connections.current, pid: Number(ss.pid), cores: hi.system.numCores }));');
    quiet(out);
    const r = result(out);
    assert.equal(r.primary, true);
    assert.equal(r.wire, 21);
    assert.ok(r.conns >= 1, `connections.current ${r.conns}`);
    assert.equal(r.pid, srv.pid);
    assert.equal(r.cores, os.cpus().length);
}, { timeoutMs: 90000 });

h.test('mongosh: the administrative helpers work (currentOp, killOp, profiling, fsyncLock, validate, rs.status)', async () => {
    const out = await mongosh(
        'db.adm.insertMany([{_id: 1, a: [1, 2]}, {_id: 2}]); db.adm.createIndex({a: 1});' +
        'const cur = db.currentOp(); const mine = cur.inprog.filter((o) => o.command && o.command.aggregate === 1);' +
        'const kill = db.killOp(123456);' +
        'const before = db.getProfilingStatus(); const set = db.setProfilingLevel(0, {slowms: 250});' +
        'const after = db.getProfilingStatus(); db.setProfilingLevel(0, {slowms: 100});' +
        'const lock = db.fsyncLock(); const unlock = db.fsyncUnlock();' +
        'const v = db.adm.validate(); const vf = db.adm.validate({full: true});' +
        'const top = db.adminCommand({top: 1}); const ds = db.runCommand({dataSize: "test.adm"});' +
        'let st = null; try { rs.status(); } catch (e) { st = e.code; }' +
        'let rwc = null; try { db.adminCommand({getDefaultRWConcern: 1}); } catch (e) { rwc = e.code; }' +
        'print("RESULT " + JSON.stringify({ cur: cur.ok, mine: mine.length, kill: kill.info,' +
        '  before: before.slowms, was: set.was, after: after.slowms, lock: Number(lock.lockCount), unlock: Number(unlock.lockCount),' +
        '  valid: v.valid, keys: v.keysPerIndex, fullValid: vf.valid, top: Number(top.totals["test.adm"].insert.count),' +
        '  objects: ds.numObjects, rsCode: st, rwc }));');
    quiet(out);
    const r = result(out);
    assert.equal(r.cur, 1);
    assert.equal(r.mine, 1); // db.currentOp() runs $currentOp through aggregate and sees itself
    assert.equal(r.kill, 'attempting to kill op');
    assert.equal(r.before, 100);
    assert.equal(r.was, 0);
    assert.equal(r.after, 250);
    assert.equal(r.lock, 1);
    assert.equal(r.unlock, 0);
    assert.equal(r.valid, true);
    assert.deepEqual(r.keys, { _id_: 2, a_1: 3 });
    assert.equal(r.fullValid, true);
    assert.equal(r.top, 1);
    assert.equal(r.objects, 2);
    assert.equal(r.rsCode, 76);
    assert.equal(r.rwc, 51300);
}, { timeoutMs: 90000 });

h.test('mongosh REPL without --quiet: no startup-warning, automation or non-genuine banner', async () => {
    // The banners only show when the REPL starts (not with --eval), so feed it on stdin.
    const out = await mongosh(null, { quiet: false, input: 'print("RESULT " + db.version())\n' });
    assert.equal(out.stderr.trim(), '', `mongosh wrote to stderr:\n${out.stderr}`);
    assert.equal(out.code, 0, `exit ${out.code}`);
    // mongosh's own complaint about this machine's Node.js version is not about the server.
    const clientSide = /^Deprecation warnings:$|Node\.js versions lower than|supported-operating-systems/;
    const lines = out.stdout.split('\n').filter((l) => !clientSide.test(l.trim()));
    const bad = lines.filter((l) => /warning|genuine|emulation|automation|error/i.test(l));
    assert.deepEqual(bad, [], `mongosh printed a banner:\n${out.stdout}`);
    const res = lines.find((l) => l.includes('RESULT '));
    assert.ok(res, `no RESULT line:\n${out.stdout}`);
    const version = res.slice(res.indexOf('RESULT ') + 7).trim();
    assert.ok(lines.some((l) => /^Using MongoDB:\s+/.test(l) && l.trim().endsWith(version)),
              `no "Using MongoDB: ${version}" line:\n${out.stdout}`);
}, { timeoutMs: 90000 });


h.test('mongosh: CRUD round trip with the shell helpers, and cursors across getMore', async () => {
    const out = await mongosh(
        'const c = db.getSiblingDB("shellcrud").items;' +
        'c.insertOne({ _id: 1, k: "a", n: 1 });' +
        'c.insertMany([{ _id: 2, k: "b", n: 2 }, { _id: 3, k: "a", n: 3 }]);' +
        'c.updateOne({ _id: 1 }, { $inc: { n: 10 }, $set: { t: true } });' +
        'c.updateMany({ k: "a" }, { $set: { seen: 1 } });' +
        'c.deleteOne({ _id: 2 });' +
        'const docs = c.find({}, { _id: 1, n: 1 }).sort({ n: -1 }).toArray();' +
        'c.insertMany(Array.from({ length: 300 }, (_, i) => ({ _id: 100 + i })));' +
        'let iterated = 0; c.find({ _id: { $gte: 100 } }).batchSize(25).forEach(() => iterated++);' +
        'let dup = null; try { c.insertOne({ _id: 1 }); } catch (e) { dup = e.code; }' +
        'print("RESULT " + JSON.stringify({ docs, iterated, dup,' +
        '  one: c.findOne({ _id: 1 }), n: db.getSiblingDB("shellcrud").runCommand({ count: "items" }).n }));');
    quiet(out);
    assert.equal(out.code, 0, `exit ${out.code}`);
    const r = result(out);
    assert.deepEqual(r.docs, [{ _id: 1, n: 11 }, { _id: 3, n: 3 }]);
    assert.deepEqual(r.one, { _id: 1, k: 'a', n: 11, t: true, seen: 1 });
    assert.equal(r.iterated, 300);
    assert.equal(r.dup, 11000);
    assert.equal(r.n, 302);
}, { timeoutMs: 90000 });

h.test('mongosh: provenance accepted, and refused with write error 2', async () => {
    const out = await mongosh(
        'const d = db.getSiblingDB("shellprov");' +
        'const src = d.runCommand({ insert: "m", documents: [{ _id: "q", _evidence: "user_message" }] });' +
        'const ok = d.runCommand({ insert: "m", documents: [{ _id: "a", _caused_by: [{ coll: "m", _id: "q" }], _confidence: 0.9 }] });' +
        'const bad = d.runCommand({ insert: "m", documents: [{ _id: "b", _evidence: "hunch" }] });' +
        'print("RESULT " + JSON.stringify({ srcSeq: Number(src.seqs[0]), okN: ok.n,' +
        '  cause: Number(d.m.findOne({ _id: "a" })._caused_by[0]), badN: bad.n, badCode: bad.writeErrors[0].code,' +
        '  stored: d.m.countDocuments ? d.runCommand({ count: "m", query: { _id: "b" } }).n : -1 }));');
    quiet(out);
    assert.equal(out.code, 0, `exit ${out.code}`);
    const r = result(out);
    assert.equal(r.okN, 1);
    assert.equal(r.cause, r.srcSeq);
    assert.equal(r.badN, 0);
    assert.equal(r.badCode, 2);
    assert.equal(r.stored, 0);
}, { timeoutMs: 90000 });

h.test('nedbd exits 0 on SIGTERM after the mongosh sessions', async () => {
    await srv.stop({ timeoutMs: 5000 });
});

h.run();
