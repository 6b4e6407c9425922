'use strict';
/*
 * test_node_driver.js: the node driver (mongodb 7.8) against a real nedbd: connecting, the
 * handshake and the diagnostic commands drivers, shells and monitoring tools rely on.
 * Expected reply shapes are MongoDB's (reference pages of hello, buildInfo, listCommands,
 * serverStatus, getParameter, hostInfo, whatsmyuri, connectionStatus, getCmdLineOpts,
 * getLog, startSession/endSessions); values come from the server or the machine, never
 * from a constant the server could happen to match by accident.
 */
const assert = require('assert/strict');
const os = require('os');
const path = require('path');
const { MongoClient, MongoServerError, Binary } = require('mongodb');
const h = require('./lib/server');
const { RawConn } = require('./lib/wire');

let srv;
let client;   // the shared directConnection client, connected by the first test that needs it
let admin;    // its admin database
let startedAt;
let buildInfo;
/* buildInfo as the server reports it, for tests that compare other replies with it. */
async function serverBuildInfo() {
    if (!buildInfo) buildInfo = await admin.command({ buildInfo: 1 });
    return buildInfo;
}

h.before(async () => {
    startedAt = Date.now();
    srv = await h.startServer();
});

/* Connects the shared client on first use, so a broken handshake fails each driver test
 * on its own while the raw-socket tests still run. */
async function connected() {
    if (!client) {
        const c = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                                  { serverSelectionTimeoutMS: 3000 });
        await c.connect();
        client = c;
        admin = client.db('admin');
    }
    return client;
}

h.after(async () => {
    if (client) await client.close().catch(() => {});
    if (srv && srv.alive()) srv.kill();
});

const isInt = (v) => typeof v === 'number' && Number.isInteger(v);
const near = (a, b, tol) => Math.abs(a - b) <= tol;

/* ------------------------------------------------------------ connecting */

h.test('connect with directConnection=true and ping', async () => {
    await connected();
    const r = await admin.command({ ping: 1 });
    assert.equal(r.ok, 1);
});

h.test('connect without directConnection (topology discovery) and ping', async () => {
    await connected();
    const c = new MongoClient(`mongodb://127.0.0.1:${srv.port}/`, { serverSelectionTimeoutMS: 5000 });
    try {
        await c.connect();
        const r = await c.db('test').command({ ping: 1 });
        assert.equal(r.ok, 1);
        // A standalone seed must be discovered as a standalone, not an unknown or RS member.
        const desc = c.topology.description;
        assert.equal(desc.type, 'Single', `topology type ${desc.type}`);
        const [sd] = [...desc.servers.values()];
        assert.equal(sd.type, 'Standalone', `server type ${sd.type}`);
    } finally {
        await c.close();
    }
});

h.test('ping answers on any database name', async () => {
    await connected();
    for (const db of ['test', 'admin', 'some_other_db', 'x'.repeat(60)]) {
        const r = await client.db(db).command({ ping: 1 });
        assert.equal(r.ok, 1, `ping on ${db}`);
    }
});

/* ------------------------------------------------------------ buildInfo */

h.test('buildInfo: 7.0 version, 4-int versionArray matching it, nedb sub-document', async () => {
    await connected();
    const bi = await admin.command({ buildInfo: 1 });
    assert.equal(bi.ok, 1);
    assert.match(bi.version, /^7\.0\.\d+$/, `version ${bi.version}`);
    assert.ok(Array.isArray(bi.versionArray) && bi.versionArray.length === 4,
              `versionArray ${JSON.stringify(bi.versionArray)}`);
    assert.ok(bi.versionArray.every(isInt), `versionArray not ints: ${JSON.stringify(bi.versionArray)}`);
    assert.deepEqual(bi.versionArray.slice(0, 3), bi.version.split('.').map(Number),
                     'versionArray[0..2] must match version');
    assert.equal(typeof bi.gitVersion, 'string');
    assert.equal(bi.maxBsonObjectSize, 16777216);
    assert.equal(bi.bits, 64);
    assert.equal(typeof bi.debug, 'boolean');
    assert.ok(Array.isArray(bi.storageEngines), 'storageEngines array');

    // NEDB's own version: the same one `nedbd --version` prints.
    assert.equal(typeof bi.nedb, 'object', 'buildInfo.nedb sub-document');
    assert.match(bi.nedb.version, /^\d+\.\d+\.\d+/, `nedb.version ${bi.nedb.version}`);
    const v = h.runNedbdSync(['--version']);
    assert.ok(v.stdout.includes(bi.nedb.version),
              `nedbd --version says ${JSON.stringify(v.stdout.trim())}, buildInfo.nedb.version ${bi.nedb.version}`);
});

h.test('buildInfo works on a non-admin database too, with the same answer', async () => {
    await connected();
    const bi = await client.db('test').command({ buildInfo: 1 });
    assert.equal(bi.version, (await serverBuildInfo()).version);
});

/* ------------------------------------------------------------ listCommands */

h.test('listCommands: ping, hello, buildInfo, listCommands, each with help', async () => {
    await connected();
    const r = await admin.command({ listCommands: 1 });
    assert.equal(r.ok, 1);
    assert.equal(typeof r.commands, 'object');
    for (const name of ['ping', 'hello', 'buildInfo', 'listCommands', 'serverStatus', 'isMaster']) {
        const c = r.commands[name];
        assert.ok(c, `listCommands lacks ${name}`);
        assert.equal(typeof c.help, 'string', `${name}.help`);
        assert.ok(c.help.trim().length > 0, `${name}.help is empty`);
    }
    for (const [name, c] of Object.entries(r.commands))
        assert.equal(typeof c.help, 'string', `${name} has no help string`);
});

/* ------------------------------------------------------------ hello */

h.test('hello: the fields drivers read', async () => {
    await connected();
    const before = Date.now();
    const r = await admin.command({ hello: 1 });
    const after = Date.now();
    assert.equal(r.ok, 1);
    assert.equal(r.isWritablePrimary, true);
    assert.equal(r.maxBsonObjectSize, 16777216);
    assert.equal(r.maxMessageSizeBytes, 48000000);
    assert.equal(r.maxWriteBatchSize, 100000);
    assert.ok(r.localTime instanceof Date, `localTime is ${typeof r.localTime}`);
    assert.ok(r.localTime.getTime() >= before - 2000 && r.localTime.getTime() <= after + 2000,
              `localTime ${r.localTime.toISOString()} is not now`);
    assert.equal(r.logicalSessionTimeoutMinutes, 30);
    assert.ok(isInt(r.connectionId), `connectionId ${r.connectionId}`);
    assert.equal(r.minWireVersion, 0);
    assert.equal(r.maxWireVersion, 21);
    assert.equal(r.readOnly, false);
    // A standalone: no replica-set or mongos fields; OP_COMPRESSED is not negotiated.
    assert.equal(r.setName, undefined, 'setName on a standalone');
    assert.equal(r.msg, undefined, 'msg (isdbgrid) on a standalone');
    assert.equal(r.compression, undefined, 'compression must not be offered');
});

h.test('hello: connectionId differs between connections and is stable on one', async () => {
    const a = await RawConn.open(srv.port);
    const b = await RawConn.open(srv.port);
    try {
        const a1 = await a.command({ hello: 1, $db: 'admin' });
        const a2 = await a.command({ hello: 1, $db: 'admin' });
        const b1 = await b.command({ hello: 1, $db: 'admin' });
        assert.equal(a1.connectionId, a2.connectionId, 'same connection, same connectionId');
        assert.notEqual(a1.connectionId, b1.connectionId, 'two connections share a connectionId');
    } finally {
        a.close();
        b.close();
    }
});

h.test('legacy isMaster and ismaster answer ismaster: true', async () => {
    await connected();
    for (const name of ['isMaster', 'ismaster']) {
        const r = await admin.command({ [name]: 1 });
        assert.equal(r.ok, 1, name);
        assert.equal(r.ismaster, true, `${name}.ismaster`);
        assert.equal(r.maxWireVersion, 21, `${name}.maxWireVersion`);
    }
});

h.test('isMaster with helloOk: true answers helloOk: true (drivers then switch to hello)', async () => {
    await connected();
    const r = await admin.command({ isMaster: 1, helloOk: true });
    assert.equal(r.ok, 1);
    assert.equal(r.helloOk, true, `reply ${JSON.stringify(r)}`);
});

h.test('generic command fields drivers attach are accepted', async () => {
    await connected();
    const r = await admin.command({
        ping: 1,
        comment: { why: 'integration test' },
        $readPreference: { mode: 'primaryPreferred' },
        maxTimeMS: 5000,
    });
    assert.equal(r.ok, 1, JSON.stringify(r));
});

h.test('Stable API client (serverApi v1, strict) connects and pings', async () => {
    const c = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`, {
        serverSelectionTimeoutMS: 3000,
        serverApi: { version: '1', strict: true, deprecationErrors: true },
    });
    try {
        await c.connect();
        assert.equal((await c.db('admin').command({ ping: 1 })).ok, 1);
    } finally {
        await c.close();
    }
});

h.test('hello asked for compression offers none; a zlib client still works uncompressed', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const r = await c.command({ hello: 1, compression: ['zstd', 'zlib', 'snappy'], $db: 'admin' });
        assert.equal(r.ok, 1);
        assert.equal(r.compression, undefined, `compression ${JSON.stringify(r.compression)}`);
    } finally {
        c.close();
    }
    const z = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true&compressors=zlib`,
                              { serverSelectionTimeoutMS: 3000 });
    try {
        await z.connect();
        assert.equal((await z.db('admin').command({ ping: 1 })).ok, 1);
    } finally {
        await z.close();
    }
});

/* ------------------------------------------------------------ errors */

h.test('unknown command: MongoServerError 59 CommandNotFound "no such command: \'foo\'"', async () => {
    await connected();
    for (const name of ['foo', 'nedbNoSuchCommand42']) {
        const err = await client.db('test').command({ [name]: 1 }).then(
            () => assert.fail(`${name} succeeded`), (e) => e);
        assert.ok(err instanceof MongoServerError, `${name}: got ${err && err.name}: ${err && err.message}`);
        assert.equal(err.code, 59, `${name}: code`);
        assert.equal(err.codeName, 'CommandNotFound', `${name}: codeName`);
        assert.equal(err.errmsg, `no such command: '${name}'`, `${name}: errmsg`);
        assert.equal(err.errorResponse.ok, 0, `${name}: ok`);
    }
    // The connection is still usable afterwards.
    assert.equal((await admin.command({ ping: 1 })).ok, 1);
});

h.test('OP_MSG without $db gets an error reply (40571), connection kept', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const r = await c.command({ ping: 1 });
        assert.equal(r.ok, 0, `reply ${JSON.stringify(r)}`);
        assert.equal(r.code, 40571, `code ${r.code} (${r.errmsg})`);
        assert.equal(typeof r.errmsg, 'string');
        const p = await c.command({ ping: 1, $db: 'admin' });
        assert.equal(p.ok, 1, 'ping after the error');
    } finally {
        c.close();
    }
});

h.test('a $db that is not a string gets an error reply, connection kept', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const r = await c.command({ ping: 1, $db: 42 });
        assert.equal(r.ok, 0, `reply ${JSON.stringify(r)}`);
        assert.ok(isInt(r.code) && r.code !== 0, `code ${r.code}`);
        assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    } finally {
        c.close();
    }
});

h.test('an invalid database name in $db is InvalidNamespace (73)', async () => {
    const c = await RawConn.open(srv.port);
    try {
        for (const db of ['', 'a.b', 'a b', 'a$b', 'x'.repeat(64)]) {
            const r = await c.command({ ping: 1, $db: db });
            assert.equal(r.ok, 0, `$db ${JSON.stringify(db)}: ${JSON.stringify(r)}`);
            assert.equal(r.code, 73, `$db ${JSON.stringify(db)}: code ${r.code} (${r.errmsg})`);
            assert.equal(r.codeName, 'InvalidNamespace');
        }
        assert.equal((await c.command({ ping: 1, $db: 'x'.repeat(63) })).ok, 1, '63-byte name is valid');
    } finally {
        c.close();
    }
});

h.test('command names are case-sensitive', async () => {
    await connected();
    const err = await admin.command({ PING: 1 }).then(() => null, (e) => e);
    assert.ok(err, 'PING succeeded');
    assert.equal(err.code, 59);
    assert.equal(err.errmsg, "no such command: 'PING'");
});

/* ------------------------------------------------------------ serverStatus */

h.test('serverStatus: host, version, process, pid, uptime, localTime', async () => {
    await connected();
    const s = await admin.command({ serverStatus: 1 });
    assert.equal(s.ok, 1);
    assert.equal(typeof s.host, 'string');
    assert.equal(s.host.split(':')[0], os.hostname(), `host ${s.host}`);
    assert.equal(s.version, (await serverBuildInfo()).version, 'serverStatus.version = buildInfo.version');
    assert.equal(typeof s.process, 'string');
    assert.equal(Number(s.pid), srv.pid, `pid ${s.pid}`);
    const sinceStart = (Date.now() - startedAt) / 1000;
    assert.equal(typeof s.uptime, 'number');
    assert.ok(s.uptime >= 0 && s.uptime <= sinceStart + 1, `uptime ${s.uptime}, started ${sinceStart} s ago`);
    assert.ok(Number(s.uptimeMillis) >= 0 && Number(s.uptimeMillis) <= sinceStart * 1000 + 1000,
              `uptimeMillis ${s.uptimeMillis}`);
    assert.ok(s.localTime instanceof Date && near(s.localTime.getTime(), Date.now(), 5000),
              `localTime ${s.localTime}`);
});

h.test('serverStatus: uptime advances', async () => {
    await connected();
    const a = await admin.command({ serverStatus: 1 });
    await h.sleep(1200);
    const b = await admin.command({ serverStatus: 1 });
    const d = Number(b.uptimeMillis) - Number(a.uptimeMillis);
    assert.ok(d >= 1000 && d < 5000, `uptimeMillis advanced by ${d} in 1.2 s`);
    assert.ok(b.uptime > a.uptime, `uptime ${a.uptime} -> ${b.uptime}`);
});

h.test('serverStatus: connections.current follows open and closed connections', async () => {
    await connected();
    const s0 = (await admin.command({ serverStatus: 1 })).connections;
    for (const k of ['current', 'available', 'totalCreated'])
        assert.equal(typeof Number(s0[k]), 'number', `connections.${k}`);
    assert.ok(s0.current >= 1, `current ${s0.current} with this client connected`);
    const raws = [];
    for (let i = 0; i < 5; i++) {
        const c = await RawConn.open(srv.port);
        await c.command({ hello: 1, $db: 'admin' }); // accepted and served
        raws.push(c);
    }
    const s1 = (await admin.command({ serverStatus: 1 })).connections;
    assert.ok(s1.current >= s0.current + 5, `current ${s0.current} -> ${s1.current} after 5 new connections`);
    assert.ok(Number(s1.totalCreated) >= Number(s0.totalCreated) + 5,
              `totalCreated ${s0.totalCreated} -> ${s1.totalCreated}`);
    raws.forEach((c) => c.close());
    let s2;
    for (let i = 0; i < 40; i++) {
        s2 = (await admin.command({ serverStatus: 1 })).connections;
        if (s2.current <= s1.current - 5) break;
        await h.sleep(100);
    }
    assert.ok(s2.current <= s1.current - 5, `current ${s1.current} -> ${s2.current} after closing 5`);
});

h.test('serverStatus: opcounters count commands', async () => {
    await connected();
    const a = (await admin.command({ serverStatus: 1 })).opcounters;
    for (const k of ['insert', 'query', 'update', 'delete', 'getmore', 'command'])
        assert.ok(Number.isFinite(Number(a[k])), `opcounters.${k} = ${a[k]}`);
    for (let i = 0; i < 7; i++) await admin.command({ ping: 1 });
    const b = (await admin.command({ serverStatus: 1 })).opcounters;
    const d = Number(b.command) - Number(a.command);
    assert.ok(d >= 8, `opcounters.command advanced by ${d} after 7 pings and a serverStatus`);
    assert.equal(Number(b.insert), Number(a.insert), 'insert counter moved without inserts');
});

h.test('serverStatus: metrics.commands.<name>.total counts each command', async () => {
    await connected();
    const get = async () => (await admin.command({ serverStatus: 1 })).metrics?.commands?.ping;
    const a = await get();
    assert.ok(a, 'serverStatus.metrics.commands.ping missing');
    for (let i = 0; i < 5; i++) await admin.command({ ping: 1 });
    const b = await get();
    assert.equal(Number(b.total) - Number(a.total), 5, `ping total ${a.total} -> ${b.total}`);
    assert.equal(Number(b.failed), Number(a.failed), 'ping failed counter moved');
});

/* ------------------------------------------------------------ other diagnostics */

h.test('getParameter featureCompatibilityVersion matches the server version', async () => {
    await connected();
    const r = await admin.command({ getParameter: 1, featureCompatibilityVersion: 1 });
    assert.equal(r.ok, 1);
    const [maj, min] = (await serverBuildInfo()).versionArray;
    assert.deepEqual(r.featureCompatibilityVersion, { version: `${maj}.${min}` });
});

h.test('hostInfo: system and os describe this machine', async () => {
    await connected();
    const r = await admin.command({ hostInfo: 1 });
    assert.equal(r.ok, 1);
    const s = r.system;
    assert.ok(s.currentTime instanceof Date && near(s.currentTime.getTime(), Date.now(), 5000),
              `currentTime ${s.currentTime}`);
    assert.equal(String(s.hostname).split(':')[0], os.hostname(), `hostname ${s.hostname}`);
    assert.equal(s.cpuAddrSize, /64/.test(process.arch) ? 64 : 32);
    const memMB = os.totalmem() / (1024 * 1024);
    assert.ok(near(Number(s.memSizeMB), memMB, memMB * 0.02 + 2), `memSizeMB ${s.memSizeMB}, machine ${memMB}`);
    assert.equal(s.numCores, os.cpus().length, 'numCores');
    assert.equal(typeof s.cpuArch, 'string');
    assert.equal(r.os.type, os.type(), `os.type ${r.os.type}`);
    assert.equal(typeof r.os.name, 'string');
    assert.equal(typeof r.os.version, 'string');
});

h.test('whatsmyuri: you is this connection\'s own address', async () => {
    await connected();
    const r = await admin.command({ whatsmyuri: 1 });
    assert.match(r.you, /^127\.0\.0\.1:\d+$/);
    const c = await RawConn.open(srv.port);
    try {
        const raw = await c.command({ whatsmyuri: 1, $db: 'admin' });
        assert.equal(raw.you, `127.0.0.1:${c.localPort}`);
    } finally {
        c.close();
    }
});

h.test('connectionStatus: nobody authenticated', async () => {
    await connected();
    const r = await admin.command({ connectionStatus: 1 });
    assert.equal(r.ok, 1);
    assert.deepEqual(r.authInfo.authenticatedUsers, []);
    assert.deepEqual(r.authInfo.authenticatedUserRoles, []);
});

h.test('getCmdLineOpts: argv is the command line nedbd was started with', async () => {
    await connected();
    const r = await admin.command({ getCmdLineOpts: 1 });
    assert.equal(r.ok, 1);
    assert.ok(Array.isArray(r.argv), 'argv array');
    assert.equal(path.basename(r.argv[0]), 'nedbd', `argv[0] ${r.argv[0]}`);
    assert.deepEqual(r.argv.slice(1), srv.args);
    assert.equal(typeof r.parsed, 'object');
});

h.test('getCmdLineOpts: parsed has net.port, net.bindIp, storage.dbPath (mongod shape)', async () => {
    await connected();
    const { parsed } = await admin.command({ getCmdLineOpts: 1 });
    assert.equal(Number(parsed?.net?.port), srv.port, `parsed ${JSON.stringify(parsed)}`);
    assert.equal(parsed.net.bindIp, '127.0.0.1');
    assert.equal(parsed?.storage?.dbPath, srv.dbpath);
});

h.test('getLog: startupWarnings and the list of log names', async () => {
    await connected();
    const r = await admin.command({ getLog: 'startupWarnings' });
    assert.equal(r.ok, 1);
    assert.ok(Array.isArray(r.log), 'log array');
    assert.ok(r.log.every((l) => typeof l === 'string'), 'log lines are strings');
    assert.ok(Number.isInteger(Number(r.totalLinesWritten)) && r.totalLinesWritten >= r.log.length,
              `totalLinesWritten ${r.totalLinesWritten}, ${r.log.length} lines`);
    const names = await admin.command({ getLog: '*' });
    assert.ok(Array.isArray(names.names) && names.names.includes('startupWarnings') &&
              names.names.includes('global'), `names ${JSON.stringify(names.names)}`);
});

/* ------------------------------------------------------------ sessions */

h.test('sessions: the driver attaches lsid and sends endSessions on close', async () => {
    await connected();
    const c = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                              { serverSelectionTimeoutMS: 5000, monitorCommands: true });
    const started = [];
    const results = {};
    c.on('commandStarted', (e) => started.push(e));
    c.on('commandSucceeded', (e) => { results[e.commandName] = 'ok'; });
    c.on('commandFailed', (e) => { results[e.commandName] = `failed: ${e.failure && e.failure.message}`; });
    await c.connect();
    const session = c.startSession();
    try {
        await c.db('test').command({ ping: 1 }, { session });
        const ping = started.find((e) => e.commandName === 'ping');
        assert.ok(ping, 'ping was not sent');
        assert.ok(ping.command.lsid && ping.command.lsid.id instanceof Binary,
                  'driver did not attach an lsid: does hello advertise logicalSessionTimeoutMinutes?');
        assert.equal(ping.command.lsid.id.sub_type, 4, 'lsid is a UUID');
    } finally {
        await session.endSession();
        await c.close();
    }
    assert.ok(started.some((e) => e.commandName === 'endSessions'), 'driver sent no endSessions');
    assert.equal(results.endSessions, 'ok', `endSessions ${results.endSessions}`);
});

h.test('startSession / endSessions commands', async () => {
    await connected();
    const r = await admin.command({ startSession: 1 });
    assert.equal(r.ok, 1);
    assert.ok(r.id && r.id.id instanceof Binary && r.id.id.sub_type === 4, `id ${JSON.stringify(r.id)}`);
    assert.equal(r.timeoutMinutes, 30);
    const r2 = await admin.command({ startSession: 1 });
    assert.notEqual(r2.id.id.toString('hex'), r.id.id.toString('hex'), 'two sessions with one id');
    const e = await admin.command({ endSessions: [r.id, r2.id] });
    assert.equal(e.ok, 1);
});

/* ------------------------------------------------------------ shutdown */

h.test('nedbd exits 0 on SIGTERM with this client connected', async () => {
    await connected().catch(() => {}); // shutdown is tested even when the handshake is broken
    const ms = await srv.stop({ timeoutMs: 5000 });
    assert.ok(ms < 5000, `took ${ms} ms`);
});

h.run();
