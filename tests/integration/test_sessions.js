'use strict';
/*
 * test_sessions.js: snapshot reads and the Stable API through the node driver against a
 * real nedbd.
 *
 * Snapshot reads: readConcern {level: "snapshot"} reads the newest committed op and the
 * reply says when (cursor.atClusterTime, or atClusterTime at the top for distinct, as
 * mongod answers snapshot reads); a driver session started with {snapshot: true} sends
 * that time back with every later read, so all of them see one moment (DESIGN.md
 * section 5 time travel). A standalone mongod refuses snapshot reads; NEDB serves them.
 *
 * Stable API (MongoDB's "Stable API" page and its changelog): apiVersion must be "1"
 * (322), apiStrict/apiDeprecationErrors need it (4886600), and with apiStrict: true a
 * command outside API V1 (distinct, listCommands...) or a stage outside it
 * ($listLocalSessions, $indexStats, NEDB's $trace) is 323 APIStrictError.
 */
const assert = require('assert/strict');
const { MongoClient, Timestamp } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let db;

const uri = () => `mongodb://127.0.0.1:${srv.port}/?directConnection=true`;

h.before(async () => {
    srv = await h.startServer();
    client = new MongoClient(uri(), { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('sess');
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
});

h.test('readConcern snapshot: the reply carries the cluster time it read at', async () => {
    const w = await db.command({ insert: 'snap', documents: [{ _id: 1 }] });
    const f = await db.command({ find: 'snap', readConcern: { level: 'snapshot' } });
    assert.ok(f.cursor.atClusterTime instanceof Timestamp);
    assert.equal(f.cursor.atClusterTime.toString(), w.operationTime.toString(),
                 'the newest op: the insert just acknowledged (no other writer here)');
    const d = await db.command({ distinct: 'snap', key: '_id', readConcern: { level: 'snapshot' } });
    assert.equal(d.atClusterTime.toString(), w.operationTime.toString());
    const a = await db.command({ aggregate: 'snap', pipeline: [], cursor: {}, readConcern: { level: 'snapshot' } });
    assert.equal(a.cursor.atClusterTime.toString(), w.operationTime.toString());
    /* an explicit atClusterTime comes back as asked */
    const at = await db.command({ find: 'snap', readConcern: { level: 'snapshot', atClusterTime: w.operationTime } });
    assert.equal(at.cursor.atClusterTime.toString(), w.operationTime.toString());
    /* reads without the snapshot level say nothing */
    assert.equal((await db.command({ find: 'snap' })).cursor.atClusterTime, undefined);
});

h.test('a snapshot session reads one moment: later writes are invisible to it', async () => {
    const c = db.collection('snap2');
    await c.insertMany([{ _id: 1, v: 'a' }, { _id: 2, v: 'b' }]);
    const s = client.startSession({ snapshot: true });
    try {
        assert.deepEqual(await c.find({}, { session: s }).toArray(), [{ _id: 1, v: 'a' }, { _id: 2, v: 'b' }]);
        await c.insertOne({ _id: 3, v: 'c' });
        await c.updateOne({ _id: 1 }, { $set: { v: 'changed' } });
        await c.deleteOne({ _id: 2 });
        assert.deepEqual(await c.find({}, { session: s }).toArray(), [{ _id: 1, v: 'a' }, { _id: 2, v: 'b' }]);
        assert.deepEqual((await c.distinct('v', {}, { session: s })).sort(), ['a', 'b']);
        assert.deepEqual(await c.aggregate([{ $count: 'n' }], { session: s }).toArray(), [{ n: 2 }]);
    } finally {
        await s.endSession();
    }
    /* outside the session: the newest state */
    assert.deepEqual(await c.find().toArray(), [{ _id: 1, v: 'changed' }, { _id: 3, v: 'c' }]);
});

async function refused(promise, code, re) {
    await assert.rejects(promise, (e) => {
        assert.equal(e.code, code, e.message);
        if (re) assert.match(e.message, re);
        return true;
    });
}

h.test('Stable API parameters: apiVersion "1" only, apiStrict needs apiVersion', async () => {
    assert.equal((await db.command({ ping: 1, apiVersion: '1' })).ok, 1);
    await refused(db.command({ ping: 1, apiVersion: '2' }), 322, /API version must be "1"/);
    await refused(db.command({ ping: 1, apiVersion: 1 }), 14);
    await refused(db.command({ ping: 1, apiStrict: true }), 4886600);
    await refused(db.command({ ping: 1, apiDeprecationErrors: false }), 4886600);
    await refused(db.command({ ping: 1, apiVersion: '1', apiStrict: 1 }), 14);
    /* apiStrict: false allows everything */
    assert.ok(Array.isArray((await db.command({ distinct: 'snap', key: '_id', apiVersion: '1', apiStrict: false })).values));
});

h.test('apiStrict through the driver: commands and stages outside API V1 are 323', async () => {
    const strict = new MongoClient(uri(), { serverApi: { version: '1', strict: true } });
    await strict.connect();
    try {
        const sdb = strict.db('sess');
        const c = sdb.collection('strict');
        await c.insertOne({ _id: 1, x: 1 });
        assert.deepEqual(await c.find().toArray(), [{ _id: 1, x: 1 }]);
        assert.equal(await c.countDocuments(), 1);
        assert.deepEqual(await c.aggregate([{ $match: { x: 1 } }, { $project: { _id: 1 } }]).toArray(), [{ _id: 1 }]);
        await refused(c.distinct('x'), 323, /the command distinct is not in API Version 1/);
        await refused(sdb.command({ listCommands: 1 }), 323);
        await refused(strict.db('admin').command({ serverStatus: 1 }), 323);
        for (const stage of [{ $listLocalSessions: {} }, { $indexStats: {} },
            { $trace: { direction: 'backward', as: 't' } }]) {
            const name = Object.keys(stage)[0];
            const target = name === '$listLocalSessions' ? strict.db('admin') : c;
            await refused(target.aggregate([stage]).toArray(), 323,
                          new RegExp(`\\${name} is not allowed with 'apiStrict: true' in API Version 1`));
        }
        /* inside a sub-pipeline too */
        await refused(c.aggregate([{ $facet: { a: [{ $trace: { direction: 'forward', as: 't' } }] } }]).toArray(), 323);
    } finally {
        await strict.close();
    }
    /* the same stage without apiStrict runs */
    assert.equal((await db.collection('strict').aggregate([{ $indexStats: {} }]).toArray()).length, 1);
});

h.run();
