'use strict';
/*
 * test_find_project.js: aggregation expressions in find projections (MongoDB 4.4+) through
 * the node driver against a real nedbd. Expected results follow MongoDB 7.0's
 * db.collection.find() documentation (the inventory example with $switch, $concat and
 * $literal; computed fields after the included ones; $$REMOVE drops a field) and mongod's
 * projection errors (31252, 31254, 31310, 31325; an expression that fails to evaluate
 * fails the command with its own code, e.g. 16554 for a non-numeric $add).
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
    db = client.db('fproj');
    await db.collection('inventory').insertMany([
        { _id: 1, item: 'journal', status: 'A', size: { h: 14, w: 21, uom: 'cm' }, instock: [{ warehouse: 'A', qty: 5 }] },
        { _id: 2, item: 'notebook', status: 'A', size: { h: 8.5, w: 11, uom: 'in' }, instock: [{ warehouse: 'C', qty: 5 }] },
        { _id: 3, item: 'paper', status: 'D', size: { h: 8.5, w: 11, uom: 'in' }, instock: [{ warehouse: 'A', qty: 60 }] },
    ]);
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
});

async function findErr(projection, filter = {}) {
    try {
        await db.collection('inventory').find(filter, { projection }).toArray();
    } catch (e) {
        assert.ok(e instanceof MongoServerError, String(e));
        return e;
    }
    assert.fail(`find with ${JSON.stringify(projection)} succeeded`);
}

h.test('the documentation example: $switch, $concat of $toString/$multiply, $literal', async () => {
    const docs = await db.collection('inventory').find({}, {
        projection: {
            _id: 0,
            item: 1,
            status: {
                $switch: {
                    branches: [
                        { case: { $eq: ['$status', 'A'] }, then: 'Available' },
                        { case: { $eq: ['$status', 'D'] }, then: 'Discontinued' },
                    ],
                    default: 'No status found',
                },
            },
            area: { $concat: [{ $toString: { $multiply: ['$size.h', '$size.w'] } }, ' ', '$size.uom'] },
            reportNumber: { $literal: 1 },
        },
    }).sort({ _id: 1 }).toArray();
    assert.deepEqual(docs, [
        { item: 'journal', status: 'Available', area: '294 cm', reportNumber: 1 },
        { item: 'notebook', status: 'Available', area: '93.5 in', reportNumber: 1 },
        { item: 'paper', status: 'Discontinued', area: '93.5 in', reportNumber: 1 },
    ]);
});

h.test('computed fields follow the included ones, in projection order; _id stays', async () => {
    const d = await db.collection('inventory').findOne({ _id: 1 },
        { projection: { up: { $toUpper: '$item' }, status: 1, sum: { $add: ['$size.h', '$size.w'] } } });
    assert.deepEqual(Object.keys(d), ['_id', 'status', 'up', 'sum']);
    assert.deepEqual(d, { _id: 1, status: 'A', up: 'JOURNAL', sum: 35 });
});

h.test('$$REMOVE drops the field; "$path" strings copy values; dotted paths nest', async () => {
    const docs = await db.collection('inventory').find({}, {
        projection: {
            item: 1,
            big: { $cond: [{ $gt: [{ $arrayElemAt: ['$instock.qty', 0] }, 10] }, 'yes', '$$REMOVE'] },
            'dims.unit': '$size.uom',
        },
    }).sort({ _id: 1 }).toArray();
    assert.deepEqual(docs, [
        { _id: 1, item: 'journal', dims: { unit: 'cm' } },
        { _id: 2, item: 'notebook', dims: { unit: 'in' } },
        { _id: 3, item: 'paper', big: 'yes', dims: { unit: 'in' } },
    ]);
});

h.test('findOneAndUpdate returns the projected expressions too', async () => {
    const r = await db.collection('inventory').findOneAndUpdate({ _id: 2 }, { $set: { status: 'B' } },
        { projection: { _id: 0, label: { $concat: ['$item', '/', '$status'] } }, returnDocument: 'after' });
    const doc = r && r.value !== undefined ? r.value : r;
    assert.deepEqual(doc, { label: 'notebook/B' });
});

h.test('the command\'s let variables are visible to projection expressions', async () => {
    const docs = await db.collection('inventory')
        .find({ _id: 2 }, { projection: { _id: 0, tagged: { $concat: ['$$prefix', '$item'] } }, let: { prefix: 'x-' } })
        .toArray();
    assert.deepEqual(docs, [{ tagged: 'x-notebook' }]);
    const r = await db.collection('inventory').findOneAndUpdate({ _id: 2 }, { $set: { n: 1 } },
        { projection: { _id: 0, v: '$$v' }, let: { v: 7 }, returnDocument: 'after' });
    const doc = r && r.value !== undefined ? r.value : r;
    assert.deepEqual(doc, { v: 7 });
});

/* "$$NOW returns the same value for all members of the deployment and remains the same
 * throughout all stages of the aggregation pipeline" (Aggregation Variables); find's
 * expressions share it across documents, let values and getMore batches. */
h.test('$$NOW is one value for the whole find: every document, let values, $expr, getMore', async () => {
    const c = db.collection('now');
    await c.insertMany(Array.from({ length: 3000 }, (_, i) => ({ _id: i, pad: 'x'.repeat(200) })));
    const before = Date.now();
    const docs = await c.find({ $expr: { $lte: ['$$NOW', '$$NOW'] } },
                              { projection: { t: '$$NOW', l: '$$start' }, let: { start: '$$NOW' }, batchSize: 500 })
        .toArray();
    assert.equal(docs.length, 3000);
    const t0 = docs[0].t.getTime();
    assert.ok(t0 >= before - 1000 && t0 <= Date.now() + 1000, 'the wall clock of the command');
    for (const d of docs) {
        assert.equal(d.t.getTime(), t0, `document ${d._id}`);
        assert.equal(d.l.getTime(), t0, `let value, document ${d._id}`);
    }
});

h.test('mongod\'s codes: expressions in an exclusion projection, unknown operators', async () => {
    assert.equal((await findErr({ item: 0, x: { $add: [1, 2] } })).code, 31252);
    assert.equal((await findErr({ x: { $add: [1, 2] }, item: 0 })).code, 31254);
    assert.equal((await findErr({ item: 0, x: '$status' })).code, 31310);
    assert.equal((await findErr({ x: { $nosuchop: 1 } })).code, 31325);
    assert.equal((await findErr({ x: { $add: [{ $nosuchop: 1 }] } })).code, 168);
});

h.test('an expression that fails to evaluate fails the find with its code', async () => {
    const e = await findErr({ x: { $add: ['$item', 1] } });
    assert.equal(e.code, 16554);
});

h.run();
