'use strict';
/*
 * test_dbpath.js: nedbd and its data directory (DESIGN.md sections 4 and 6, README's flag
 * table): --dbpath is created when missing, an unusable one is refused at startup, the
 * directory is locked while a server has it open (a second nedbd or the offline `nedb`
 * tool is refused), and after a clean shutdown `nedb verify` finds a valid chain.
 *
 * The `nedb` tool comes from $NEDB_TOOL (else the newest build/<dir>/nedb); the tests that
 * need it are skipped when it is not built.
 */
const assert = require('assert/strict');
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./lib/server');
const { RawConn } = require('./lib/wire');

const tool = h.nedbToolPath();
const noTool = tool ? undefined : 'nedb tool not built (set NEDB_TOOL)';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nedb-it-dbpath-'));

h.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function runTool(args) {
    return spawnSync(tool, args, { encoding: 'utf8', timeout: 20000 });
}

h.test('a missing, nested --dbpath is created and nedbd serves', async () => {
    const s = await h.startServer({ dbpath: path.join(tmp, 'a', 'b', 'c') });
    try {
        assert.ok(fs.statSync(s.dbpath).isDirectory(), `${s.dbpath} not created`);
        const c = await RawConn.open(s.port);
        assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
        c.close();
    } finally {
        await s.stop({ timeoutMs: 5000 });
    }
});

h.test('a --dbpath that is a regular file is refused at startup with a message', () => {
    const file = path.join(tmp, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const r = h.runNedbdSync(['--port', '0', '--dbpath', file], { timeout: 5000 });
    assert.ok(h.refused(r), r.what);
    assert.ok(r.stderr.includes(file) || r.stderr.includes('not-a-dir'),
              `stderr does not name the path: ${JSON.stringify(r.stderr)}`);
});

h.test('nedbd keeps a LOCK file in its --dbpath while it runs (DESIGN 4)', async () => {
    const s = await h.startServer();
    try {
        assert.ok(fs.existsSync(path.join(s.dbpath, 'LOCK')),
                  `no LOCK in ${s.dbpath}: ${JSON.stringify(fs.readdirSync(s.dbpath))}`);
    } finally {
        await s.stop({ timeoutMs: 5000 });
    }
});

h.test('a second nedbd on the same --dbpath is refused with a clear message (DESIGN 6)', async () => {
    const s = await h.startServer();
    try {
        const port = await h.freePort();
        const r = h.runNedbdSync(['--port', String(port), '--dbpath', s.dbpath], { timeout: 5000 });
        assert.ok(h.refused(r), `second nedbd on the same directory: ${r.what}`);
        assert.match(r.stderr, /lock|in use|already|busy|running|server/i, `stderr ${JSON.stringify(r.stderr)}`);
        // The first server is unharmed.
        const c = await RawConn.open(s.port);
        assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
        c.close();
    } finally {
        await s.stop({ timeoutMs: 5000 });
    }
});

h.test('nedb verify is refused while nedbd has the directory open', async () => {
    const s = await h.startServer();
    try {
        const r = runTool(['verify', s.dbpath]);
        assert.ok(r.status !== 0, `nedb verify exit 0 on an open directory: ${r.stdout}`);
        assert.match(r.stderr + r.stdout, /lock|in use|already|busy|running|server/i, `output ${JSON.stringify(r.stderr + r.stdout)}`);
    } finally {
        await s.stop({ timeoutMs: 5000 });
    }
}, { skip: noTool });

h.test('after a clean SIGTERM, nedb verify finds a valid chain (exit 0)', async () => {
    const s = await h.startServer();
    const c = await RawConn.open(s.port);
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    c.close();
    await s.stop({ timeoutMs: 5000, keep: true });
    try {
        const r = runTool(['verify', s.dbpath]);
        assert.equal(r.status, 0, `nedb verify exit ${r.status}: ${(r.stderr || r.stdout).trim()}`);
        const j = runTool(['verify', '--json', s.dbpath]);
        assert.equal(j.status, 0, `nedb verify --json exit ${j.status}`);
        assert.equal(JSON.parse(j.stdout).ok, true, j.stdout);
    } finally {
        fs.rmSync(s.dir, { recursive: true, force: true });
    }
}, { skip: noTool });

h.test('a restarted nedbd serves the same --dbpath again', async () => {
    const s = await h.startServer();
    await s.stop({ timeoutMs: 5000, keep: true });
    const again = await h.startServer({ dbpath: s.dbpath });
    try {
        const c = await RawConn.open(again.port);
        const opts = await c.command({ getCmdLineOpts: 1, $db: 'admin' });
        c.close();
        assert.equal(opts.parsed?.storage?.dbPath, s.dbpath, 'serving another directory');
    } finally {
        await again.stop({ timeoutMs: 5000 });
        fs.rmSync(s.dir, { recursive: true, force: true });
    }
});

h.run();
