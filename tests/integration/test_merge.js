'use strict';
/*
 * test_merge.js: $merge writes through the node driver against a real nedbd, beyond the
 * cases of tests/aggregation/stages/join_out_merge.json: a target in another database, a
 * target created on first write, several produced documents matching one target document
 * (each sees what the previous one wrote), NEDB's deliberate atomicity (a failing document
 * leaves the whole target untouched, where mongod would keep the earlier writes), the
 * writeConcern, keyPattern/keyValue on DuplicateKey, and the ops in history (asOf).
 * Expected results come from MongoDB's $merge reference page.
 */
const assert = require('assert/strict');
const { MongoClient, MongoServerError } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let db;

h.before(async () => {
    srv = await h.startServer();
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('merge');
    await db.collection('sales').insertMany([
        { _id: 1, region: 'north', amount: 10 },
        { _id: 2, region: 'south', amount: 20 },
        { _id: 3, region: 'north', amount: 5 },
    ]);
});

h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) await srv.stop();
});

h.test('into another database: the target is created there, the reply cursor is empty', async () => {
    const r = await db.command({
        aggregate: 'sales',
        pipeline: [{ $group: { _id: '$region', total: { $sum: '$amount' } } },
                   { $merge: { into: { db: 'reports', coll: 'totals' } } }],
        cursor: {},
    });
    assert.deepEqual(r.cursor.firstBatch, []);
    assert.equal(Number(r.cursor.id), 0);
    const got = await client.db('reports').collection('totals').find().sort({ _id: 1 }).toArray();
    assert.deepEqual(got, [{ _id: 'north', total: 15 }, { _id: 'south', total: 20 }]);
    const names = (await client.db('merge').listCollections().toArray()).map((c) => c.name);
    assert.ok(!names.includes('totals'), names.join());
});

h.test('a second run merges into what the first wrote (on-demand materialized view)', async () => {
    await db.collection('sales').insertOne({ _id: 4, region: 'north', amount: 1 });
    await db.collection('sales').aggregate([
        { $group: { _id: '$region', total: { $sum: '$amount' } } },
        { $merge: { into: { db: 'reports', coll: 'totals' }, whenMatched: 'replace' } },
    ]).toArray();
    const got = await client.db('reports').collection('totals').find().sort({ _id: 1 }).toArray();
    assert.deepEqual(got, [{ _id: 'north', total: 16 }, { _id: 'south', total: 20 }]);
});

h.test('documents matching the same target document each see the previous write', async () => {
    /* every sale merges into one counter document through the whenMatched pipeline */
    await db.collection('counter').insertOne({ _id: 'all', n: 0, sum: 0 });
    await db.collection('sales').aggregate([
        { $project: { _id: 'all', amount: 1 } },
        { $merge: { into: 'counter',
                    whenMatched: [{ $set: { n: { $add: ['$n', 1] }, sum: { $add: ['$sum', '$$new.amount'] } } }] } },
    ]).toArray();
    assert.deepEqual(await db.collection('counter').findOne({ _id: 'all' }), { _id: 'all', n: 4, sum: 36 });
    /* and a document inserted by an earlier one is matched by a later one */
    await db.collection('sales').aggregate([
        { $project: { _id: '$region', amount: 1 } },
        { $merge: { into: 'byRegion', whenMatched: [{ $set: { amount: { $add: ['$amount', '$$new.amount'] } } }] } },
    ]).toArray();
    const got = await db.collection('byRegion').find().sort({ _id: 1 }).toArray();
    assert.deepEqual(got, [{ _id: 'north', amount: 16 }, { _id: 'south', amount: 20 }]);
});

h.test('a failing document leaves the target untouched (NEDB writes $merge atomically)', async () => {
    const t = db.collection('atomic');
    await t.insertOne({ _id: 3, region: 'old' });
    let caught;
    try {
        /* _id 1 and 2 would be inserted before _id 3 fails */
        await db.collection('sales').aggregate([
            { $sort: { _id: 1 } }, { $merge: { into: 'atomic', whenMatched: 'fail' } },
        ]).toArray();
    } catch (e) {
        caught = e;
    }
    assert.ok(caught instanceof MongoServerError, String(caught));
    assert.equal(caught.code, 11000);
    assert.deepEqual(caught.errorResponse.keyPattern, { _id: 1 });
    assert.deepEqual(caught.errorResponse.keyValue, { _id: 3 });
    assert.deepEqual(await t.find().toArray(), [{ _id: 3, region: 'old' }]);
});

h.test('an insert colliding on _id through other `on` fields fails with 11000', async () => {
    const t = db.collection('onk');
    await t.insertOne({ _id: 1, k: 'x' });
    await t.createIndex({ k: 1 }, { unique: true });
    let caught;
    try {
        await db.collection('sales').aggregate([
            { $match: { _id: 1 } }, { $project: { k: 'y' } }, { $merge: { into: 'onk', on: 'k' } },
        ]).toArray();
    } catch (e) {
        caught = e;
    }
    assert.ok(caught instanceof MongoServerError, String(caught));
    assert.equal(caught.code, 11000);
    assert.deepEqual(await t.find().toArray(), [{ _id: 1, k: 'x' }]);
});

h.test('`on` fields need a unique index on exactly them: 51183 before anything is written', async () => {
    const t = db.collection('onu');
    await t.insertOne({ _id: 1, k: 'x', j: 1 });
    const run = (on) => db.collection('sales').aggregate([
        { $match: { _id: 1 } }, { $project: { _id: 0, k: 'x', j: { $literal: 1 }, v: 'new' } },
        { $merge: { into: 'onu', on } },
    ]).toArray();
    await assert.rejects(run('k'), (e) => e.code === 51183);
    await t.createIndex({ k: 1 });
    await assert.rejects(run('k'), (e) => e.code === 51183, 'not unique');
    await t.createIndex({ k: 1, j: 1 }, { unique: true });
    await assert.rejects(run('k'), (e) => e.code === 51183, 'unique on more fields');
    assert.deepEqual(await t.find().toArray(), [{ _id: 1, k: 'x', j: 1 }]);
    await run(['j', 'k']);
    assert.deepEqual(await t.find().toArray(), [{ _id: 1, k: 'x', j: 1, v: 'new' }]);
});

h.test('custom `on` fields: a document produced twice merges into the first one\'s write; large merges', async () => {
    const t = db.collection('onbig');
    await t.createIndex({ k: 1 }, { unique: true });
    await t.insertMany(Array.from({ length: 3000 }, (_, i) => ({ _id: i, k: `k${i}`, v: 0 })));
    /* 3000 produced documents: even ks match target documents, odd ones are new; every k
     * is produced twice (the second sees the first one's write, through the on-values) */
    const src = db.collection('onbig_src');
    const docs = [];
    for (let i = 0; i < 3000; i++) docs.push({ _id: i, k: `k${i * 2}`, n: 1 }, { _id: 10000 + i, k: `k${i * 2}`, n: 2 });
    await src.insertMany(docs);
    await src.aggregate([{ $project: { _id: 0, k: 1, n: 1 } },
        { $merge: { into: 'onbig', on: 'k', whenMatched: [{ $set: { v: { $add: ['$v', '$$new.n'] } } }],
                    whenNotMatched: 'insert' } }]).toArray();
    assert.equal(await t.countDocuments(), 3000 + 1500, 'ks k3000..k5998 (even) are new');
    const byK = new Map((await t.find({}).toArray()).map((d) => [d.k, d]));
    assert.equal(byK.get('k0').v, 3, 'matched twice: 0 + 1 + 2');
    assert.equal(byK.get('k2998').v, 3);
    assert.equal(byK.get('k1').v, 0, 'not produced');
    /* a new k produced twice: inserted by the first, merged by the second */
    assert.equal(byK.get('k3000').n, 1);
    assert.equal(byK.get('k3000').v, null, 'merged by the second: $add of a missing $v is null');
    assert.equal(byK.get('k5998').v, null);
});

h.test('writeConcern is accepted; nothing produced creates nothing; history keeps the old state', async () => {
    const before = await db.command({ ping: 1 });
    await db.collection('sales').aggregate([{ $match: { region: 'south' } }, { $merge: { into: 'wc' } }],
                                           { writeConcern: { w: 1, j: false } }).toArray();
    assert.deepEqual(await db.collection('wc').find().toArray(), [{ _id: 2, region: 'south', amount: 20 }]);
    await db.collection('sales').aggregate([{ $match: { region: 'east' } }, { $merge: { into: 'none' } }]).toArray();
    const names = (await db.listCollections().toArray()).map((c) => c.name);
    assert.ok(!names.includes('none'), names.join());
    /* the state before the $merge, read back at its operationTime */
    const old = await db.command({ find: 'wc', readConcern: { level: 'snapshot', atClusterTime: before.operationTime } });
    assert.deepEqual(old.cursor.firstBatch, []);
});

h.run();
