'use strict';
/*
 * test_admin.js: the administrative commands mongosh's helpers and Compass send (currentOp
 * and $currentOp, killOp, profile, fsync / fsyncUnlock, top, dataSize, validate,
 * getDefaultRWConcern, replSetGetStatus), through the node driver, with the reply shapes
 * and error codes of a standalone MongoDB 7.0 mongod (its command reference pages; the
 * refusals as mongod words them: 51300 "'getDefaultRWConcern' is not supported on
 * standalone nodes.", 76 "not running with --replSet", 20 "fsyncUnlock called when not
 * locked"). Figures are checked against what the client knows: the documents it wrote
 * (bson.calculateObjectSize), the connection it holds (connectionId from
 * connectionStatus is not available, so from a second client's own currentOp), the
 * commands it sent (top's counts), the log lines the server wrote (slowms).
 */
const assert = require('assert/strict');
const bson = require('bson');
const fs = require('fs');
const path = require('path');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let admin;
let db;

async function fails(fn) {
    try {
        await fn();
    } catch (e) {
        return e;
    }
    assert.fail('expected an error');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

h.before(async () => {
    srv = await h.startServer({ logLevel: 2 });
    client = await MongoClient.connect(srv.uri, { directConnection: true, retryWrites: false });
    admin = client.db('admin');
    db = client.db('adm');
});

h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) srv.kill();
});

h.test('currentOp lists itself with mongod\'s fields', async () => {
    const r = await admin.command({ currentOp: 1, comment: 'me' });
    assert.equal(r.ok, 1);
    const me = r.inprog.filter((o) => o.command && o.command.comment === 'me');
    assert.equal(me.length, 1, JSON.stringify(r.inprog));
    const op = me[0];
    assert.equal(op.type, 'op');
    assert.equal(op.active, true);
    assert.equal(op.op, 'command');
    assert.equal(op.ns, 'admin.$cmd');
    assert.equal(op.command.currentOp, 1);
    assert.equal(typeof op.opid, 'number');
    assert.equal(typeof op.connectionId, 'number');
    assert.equal(op.desc, `conn${op.connectionId}`);
    assert.match(op.client, /^127\.0\.0\.1:\d+$/);
    assert.ok(Number(op.secs_running) >= 0 && Number(op.microsecs_running) >= 0);
    // the client's port is the one this connection uses: whatsmyuri says the same
    const uri = await admin.command({ whatsmyuri: 1 });
    assert.equal(op.client, uri.you);
});

h.test('currentOp filters on the fields of the operations; $ownOps and $all are options', async () => {
    const none = await admin.command({ currentOp: 1, op: 'insert' });
    assert.deepEqual(none.inprog, []);
    const some = await admin.command({ currentOp: 1, $ownOps: true, $all: true, 'command.currentOp': { $exists: true } });
    assert.equal(some.inprog.length, 1);
    const bad = await fails(() => admin.command({ currentOp: 1, x: { $bogus: 1 } }));
    assert.equal(bad.code, 2);
});

h.test('currentOp and $currentOp only on admin (13 and 73)', async () => {
    const e = await fails(() => db.command({ currentOp: 1 }));
    assert.equal(e.code, 13);
    const e2 = await fails(() => db.aggregate([{ $currentOp: {} }]).toArray());
    assert.equal(e2.code, 73);
    const e3 = await fails(() => admin.aggregate([{ $currentOp: { idleConnections: 1 } }]).toArray());
    assert.equal(e3.code, 9);
});

h.test('$currentOp on admin: the aggregate itself, then $match on it', async () => {
    const ops = await admin.aggregate([{ $currentOp: { allUsers: true, idleConnections: false } },
        { $match: { 'command.aggregate': 1 } }, { $project: { op: 1, ns: 1, active: 1, pipe: '$command.pipeline' } }]).toArray();
    assert.equal(ops.length, 1);
    assert.equal(ops[0].active, true);
    assert.deepEqual(ops[0].pipe[0], { $currentOp: { allUsers: true, idleConnections: false } });
});

h.test('killOp: {info: "attempting to kill op"} (also for an unknown op); op is required and numeric', async () => {
    const r = await admin.command({ killOp: 1, op: 987654321 });
    assert.equal(r.info, 'attempting to kill op');
    assert.equal(r.ok, 1);
    assert.equal((await fails(() => admin.command({ killOp: 1 }))).code, 4);
    assert.equal((await fails(() => admin.command({ killOp: 1, op: 'x' }))).code, 14);
    assert.equal((await fails(() => db.command({ killOp: 1, op: 1 }))).code, 13);
});

h.test('profile: -1 reads, 0 sets slowms and answers the previous settings; 1 and 2 are refused', async () => {
    const r0 = await db.command({ profile: -1 });
    assert.equal(r0.was, 0);
    assert.equal(r0.slowms, 100);
    assert.equal(r0.sampleRate, 1);
    const r1 = await db.command({ profile: 0, slowms: 0, sampleRate: 0.5 });
    assert.deepEqual([r1.was, r1.slowms, r1.sampleRate], [0, 100, 1]);
    const r2 = await db.command({ profile: -1 });
    assert.deepEqual([r2.was, r2.slowms, r2.sampleRate], [0, 0, 0.5]);
    // slowms 0: every command is a slow operation in the log (level 2)
    await db.command({ ping: 1, comment: 'slow-probe' });
    await sleep(200);
    const log = fs.readFileSync(srv.logPath, 'utf8');
    assert.match(log, /slow adm\.ping/);
    await db.command({ profile: 0, slowms: 100, sampleRate: 1 });
    for (const level of [1, 2]) {
        const e = await fails(() => db.command({ profile: level }));
        assert.equal(e.code, 238);
    }
    assert.equal((await fails(() => db.command({ profile: 5 }))).code, 2);
    assert.equal((await fails(() => db.command({ profile: 0, sampleRate: 2 }))).code, 2);
    assert.equal((await db.command({ profile: -1 })).slowms, 100);
});

h.test('fsync: numFiles 1 once queued writes are durable; admin only', async () => {
    await db.collection('f').insertOne({ _id: 1 });
    const r = await admin.command({ fsync: 1 });
    assert.equal(r.numFiles, 1);
    assert.equal(r.ok, 1);
    assert.equal((await fails(() => db.command({ fsync: 1 }))).code, 13);
});

h.test('fsyncUnlock without a lock: 20 "fsyncUnlock called when not locked"', async () => {
    const e = await fails(() => admin.command({ fsyncUnlock: 1 }));
    assert.equal(e.code, 20);
    assert.equal(e.message, 'fsyncUnlock called when not locked');
});

h.test('fsync lock holds writes (reads go on) until the last fsyncUnlock; lockCount counts', async () => {
    const other = await MongoClient.connect(srv.uri, { directConnection: true, retryWrites: false });
    try {
        const l1 = await admin.command({ fsync: 1, lock: true });
        assert.equal(l1.lockCount, 1);
        assert.equal(l1.info, 'now locked against writes, use db.fsyncUnlock() to unlock');
        const l2 = await admin.command({ fsync: 1, lock: true });
        assert.equal(l2.lockCount, 2);
        let written = false;
        const w = other.db('adm').collection('f').insertOne({ _id: 2 }).then(() => { written = true; });
        await sleep(300);
        assert.equal(written, false);
        assert.equal(await db.collection('f').countDocuments({ _id: 2 }), 0); // reads answer
        const held = await admin.command({ currentOp: 1, waitingForLock: true });
        assert.equal(held.inprog.length, 1);
        assert.equal(held.inprog[0].op, 'insert');
        assert.equal(held.inprog[0].ns, 'adm.f');
        const u1 = await admin.command({ fsyncUnlock: 1 });
        assert.equal(u1.lockCount, 1);
        await sleep(200);
        assert.equal(written, false);
        const u2 = await admin.command({ fsyncUnlock: 1 });
        assert.equal(u2.lockCount, 0);
        assert.equal(u2.info, 'fsyncUnlock completed');
        await w;
        assert.equal(await db.collection('f').countDocuments({ _id: 2 }), 1);
    } finally {
        await other.close();
    }
});

h.test('killOp interrupts a write held by the fsync lock (11601), which is never written', async () => {
    const other = await MongoClient.connect(srv.uri, { directConnection: true, retryWrites: false });
    try {
        await admin.command({ fsync: 1, lock: true });
        const w = other.db('adm').collection('f').insertOne({ _id: 3 }).then(() => null, (e) => e);
        let ops = [];
        for (let i = 0; i < 50 && ops.length === 0; i++) {
            await sleep(50);
            ops = (await admin.command({ currentOp: 1, op: 'insert' })).inprog;
        }
        assert.equal(ops.length, 1);
        assert.equal(ops[0].waitingForLock, true);
        await admin.command({ killOp: 1, op: ops[0].opid });
        const e = await w;
        assert.ok(e, 'the held insert failed');
        assert.equal(e.code, 11601);
        await admin.command({ fsyncUnlock: 1 });
        assert.equal(await db.collection('f').countDocuments({ _id: 3 }), 0);
    } finally {
        await other.close();
    }
});

h.test('getDefaultRWConcern and replSetGetStatus are refused as on a standalone', async () => {
    const e = await fails(() => admin.command({ getDefaultRWConcern: 1 }));
    assert.equal(e.code, 51300);
    assert.equal(e.message, "'getDefaultRWConcern' is not supported on standalone nodes.");
    const r = await fails(() => admin.command({ replSetGetStatus: 1 }));
    assert.equal(r.code, 76);
    assert.equal(r.message, 'not running with --replSet');
});

h.test('top: per-namespace time and count of the commands this client sent', async () => {
    const t = db.collection('topc');
    await t.insertOne({ a: 1 });
    await t.insertOne({ a: 2 });
    await t.find({}).toArray();
    await t.updateOne({ a: 1 }, { $set: { b: 1 } });
    await t.deleteOne({ a: 2 });
    await t.countDocuments();
    const r = await admin.command({ top: 1 });
    assert.equal(r.totals.note, 'all times in microseconds');
    const n = r.totals['adm.topc'];
    assert.ok(n, JSON.stringify(Object.keys(r.totals)));
    for (const k of ['total', 'readLock', 'writeLock', 'queries', 'getmore', 'insert', 'update', 'remove', 'commands']) {
        assert.equal(typeof n[k].time, 'number', k);
        assert.equal(typeof n[k].count, 'number', k);
    }
    assert.equal(n.insert.count, 2);
    assert.equal(n.update.count, 1);
    assert.equal(n.remove.count, 1);
    assert.equal(n.queries.count, 2); // find and the count aggregate
    assert.equal(n.total.count, 6);
    assert.equal(n.readLock.count + n.writeLock.count, 6);
    assert.equal((await fails(() => db.command({ top: 1 }))).code, 13);
});

h.test('dataSize: the BSON size and number of the documents; zeros for a missing namespace', async () => {
    const docs = [{ _id: 1, s: 'x'.repeat(100) }, { _id: 2, n: 5 }, { _id: 3, a: [1, 2, 3] }];
    await db.collection('ds').insertMany(docs);
    const r = await db.command({ dataSize: 'adm.ds' });
    assert.equal(r.size, docs.reduce((s, d) => s + bson.calculateObjectSize(d), 0));
    assert.equal(r.numObjects, 3);
    assert.equal(typeof r.millis, 'number');
    const m = await db.command({ dataSize: 'adm.nothere' });
    assert.deepEqual([m.size, m.numObjects], [0, 0]);
    assert.equal((await fails(() => db.command({ dataSize: 'nodot' }))).code, 73);
    assert.equal((await fails(() => db.command({ dataSize: 'adm.ds', keyPattern: { _id: 1 }, min: { _id: 1 }, max: { _id: 2 } }))).code, 238);
});

h.test('validate: counts records and keys per index as a scan finds them', async () => {
    const c = db.collection('v');
    await c.insertMany([{ _id: 1, a: [1, 2, 2], b: 'x' }, { _id: 2, a: 3 }, { _id: 3 }, { _id: 4, a: [] }]);
    await c.createIndex({ a: 1 });
    await c.createIndex({ b: 1 }, { sparse: true });
    await c.createIndex({ a: 1, b: 1 });
    await c.createIndex({ b: 1, a: -1 }, { partialFilterExpression: { b: { $exists: true } } });
    const r = await db.command({ validate: 'v' });
    assert.equal(r.ns, 'adm.v');
    assert.equal(r.valid, true);
    assert.equal(r.repaired, false);
    assert.equal(r.nrecords, 4);
    assert.equal(r.nIndexes, 5);
    assert.equal(r.nInvalidDocuments, 0);
    // a: {1, 2} + 3 + null + undefined; b sparse: one document has it
    assert.deepEqual(r.keysPerIndex, { _id_: 4, a_1: 5, b_1: 1, a_1_b_1: 5, 'b_1_a_-1': 2 });
    for (const name of Object.keys(r.keysPerIndex)) assert.equal(r.indexDetails[name].valid, true);
    for (const k of ['warnings', 'errors', 'extraIndexEntries', 'missingIndexEntries', 'corruptRecords']) {
        assert.deepEqual(r[k], [], k);
    }
    assert.equal(r.advice, undefined);
    const full = await db.command({ validate: 'v', full: true });
    assert.equal(full.valid, true);
});

h.test('validate errors: 26 for a missing collection, 166 for a view, 238 for repair', async () => {
    const e = await fails(() => db.command({ validate: 'missing' }));
    assert.equal(e.code, 26);
    assert.equal(e.message, "Collection 'adm.missing' does not exist to validate.");
    await db.createCollection('vv', { viewOn: 'v', pipeline: [] });
    assert.equal((await fails(() => db.command({ validate: 'vv' }))).code, 166);
    assert.equal((await fails(() => db.command({ validate: 'v', repair: true }))).code, 238);
    assert.equal((await fails(() => db.command({ validate: 'v', full: 'yes' }))).code, 14);
});

h.test('validate full: a damaged log record makes the result invalid, naming the seq', async () => {
    const s2 = await h.startServer();
    const c2 = await MongoClient.connect(s2.uri, { directConnection: true });
    try {
        const coll = c2.db('x').collection('y');
        await coll.insertMany([{ _id: 1, v: 'first' }, { _id: 2, v: 'second' }]);
        const quick = await c2.db('x').command({ validate: 'y', full: true });
        assert.equal(quick.valid, true);
        const dir = path.join(s2.dbpath, 'log');
        const seg = path.join(dir, fs.readdirSync(dir).filter((f) => f.endsWith('.nlog')).sort()[0]);
        const buf = fs.readFileSync(seg);
        const at = buf.indexOf(Buffer.from('first'));
        assert.ok(at > 0);
        const fd = fs.openSync(seg, 'r+');
        fs.writeSync(fd, Buffer.from('F'), 0, 1, at);
        fs.closeSync(fd);
        const r = await c2.db('x').command({ validate: 'y' });
        assert.equal(r.valid, true); // without full: the chain is not walked
        const f = await c2.db('x').command({ validate: 'y', full: true });
        assert.equal(f.valid, false);
        assert.equal(f.errors.length, 1);
        assert.match(f.errors[0], /hash chain does not verify at seq \d+/);
        assert.match(f.advice, /corrupt namespace/);
    } finally {
        await c2.close();
        s2.kill();
    }
});

h.test('nedbd exits 0 on SIGTERM', async () => {
    await client.close();
    client = null;
    await srv.stop();
});

h.run();
