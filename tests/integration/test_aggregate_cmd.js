'use strict';
/*
 * test_aggregate_cmd.js: the aggregate command's own behaviour on a live nedbd (the stages
 * themselves are test_aggregate.js's): cursor batches over getMore, streaming and errors
 * during getMore, killCursors, explain, let, maxTimeMS, aggregate: 1, snapshots (asOf and
 * a cursor's snapshot across getMores), $out, pipeline-style updates, and MongoDB's
 * errors for malformed commands. Expected shapes and codes are MongoDB 7.0's (aggregate
 * command reference, "Aggregation Pipeline Limits", update with aggregation pipeline).
 */
const assert = require('assert/strict');
const { MongoClient, Long } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let db;

h.before(async () => {
    srv = await h.startServer();
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 5000 });
    await client.connect();
    db = client.db('aggcmd');
    const docs = [];
    for (let i = 0; i < 250; i++) docs.push({ _id: i, v: i % 7, s: i === 200 ? 'x' : i });
    await db.collection('c').insertMany(docs);
});

h.after(async () => {
    if (client) await client.close().catch(() => {});
    if (srv && srv.alive()) srv.kill();
});

async function codeOf(p) {
    try {
        await p;
    } catch (e) {
        return e.code;
    }
    return 'no error';
}

h.test('cursor: first batch of batchSize, the rest through getMore, in natural order', async () => {
    const r = await db.command({ aggregate: 'c', pipeline: [{ $project: { v: 1 } }], cursor: { batchSize: 10 } });
    assert.equal(r.cursor.firstBatch.length, 10);
    assert.notEqual(Number(r.cursor.id), 0);
    assert.equal(r.cursor.ns, 'aggcmd.c');
    const ids = r.cursor.firstBatch.map((d) => d._id);
    const m = await db.command({ getMore: r.cursor.id, collection: 'c', batchSize: 100 });
    assert.equal(m.cursor.nextBatch.length, 100);
    ids.push(...m.cursor.nextBatch.map((d) => d._id));
    let id = m.cursor.id;
    while (Number(id) !== 0) {
        const n = await db.command({ getMore: id, collection: 'c' });
        ids.push(...n.cursor.nextBatch.map((d) => d._id));
        id = n.cursor.id;
    }
    assert.deepEqual(ids, Array.from({ length: 250 }, (_, i) => i));
});

h.test('cursor: batchSize 0 returns an open cursor with no documents', async () => {
    const r = await db.command({ aggregate: 'c', pipeline: [], cursor: { batchSize: 0 } });
    assert.equal(r.cursor.firstBatch.length, 0);
    assert.notEqual(Number(r.cursor.id), 0);
    await db.command({ killCursors: 'c', cursors: [r.cursor.id] });
});

h.test('streaming: a late evaluation error comes with a getMore, not the first batch', async () => {
    // document 200 holds a string, so $add fails there only
    const pipeline = [{ $project: { w: { $add: ['$s', 1] } } }];
    const r = await db.command({ aggregate: 'c', pipeline, cursor: { batchSize: 10 } });
    assert.equal(r.cursor.firstBatch.length, 10);
    const code = await codeOf(db.command({ getMore: r.cursor.id, collection: 'c', batchSize: 1000 }));
    assert.equal(code, 16554);
    // the failed cursor is gone
    assert.equal(await codeOf(db.command({ getMore: r.cursor.id, collection: 'c' })), 43);
});

h.test('killCursors frees a pipeline cursor', async () => {
    const r = await db.command({ aggregate: 'c', pipeline: [{ $match: { v: 1 } }], cursor: { batchSize: 1 } });
    const k = await db.command({ killCursors: 'c', cursors: [r.cursor.id] });
    assert.deepEqual(k.cursorsKilled.map(Number), [Number(r.cursor.id)]);
    assert.equal(await codeOf(db.command({ getMore: r.cursor.id, collection: 'c' })), 43);
});

h.test('a cursor reads its command\'s snapshot across getMores', async () => {
    const coll = db.collection('snap');
    await coll.insertMany([{ _id: 1 }, { _id: 2 }, { _id: 3 }]);
    const r = await db.command({ aggregate: 'snap', pipeline: [], cursor: { batchSize: 1 } });
    await coll.insertMany([{ _id: 4 }, { _id: 5 }]);
    await coll.deleteOne({ _id: 2 });
    const m = await db.command({ getMore: r.cursor.id, collection: 'snap' });
    assert.deepEqual([...r.cursor.firstBatch, ...m.cursor.nextBatch].map((d) => d._id), [1, 2, 3]);
    assert.deepEqual((await coll.aggregate([]).toArray()).map((d) => d._id), [1, 3, 4, 5]);
});

h.test('asOf: an aggregate reads the past', async () => {
    const coll = db.collection('past');
    const w = await db.command({ insert: 'past', documents: [{ _id: 1, n: 1 }] });
    const seq = w.seqs[0];
    await coll.updateOne({ _id: 1 }, { $set: { n: 2 } });
    const now = await coll.aggregate([]).toArray();
    assert.equal(now[0].n, 2);
    const r = await db.command({ aggregate: 'past', pipeline: [], cursor: {}, asOf: seq });
    assert.equal(r.cursor.firstBatch[0].n, 1);
});

h.test('explain: true returns the stages and no cursor', async () => {
    const pipeline = [{ $match: { v: 3 } }, { $project: { v: 1 } }];
    const r = await db.command({ aggregate: 'c', pipeline, explain: true });
    assert.equal(r.cursor, undefined);
    assert.ok(Array.isArray(r.stages));
    assert.deepEqual(r.stages[0].$cursor.queryPlanner.parsedQuery, { v: 3 });
    assert.deepEqual(r.stages[1], { $project: { v: 1 } });
    const e = await db.command({ explain: { aggregate: 'c', pipeline, cursor: {} }, verbosity: 'queryPlanner' });
    assert.deepEqual(e.stages, r.stages);
    const viaDriver = await db.collection('c').aggregate(pipeline).explain();
    assert.deepEqual(viaDriver.stages, r.stages);
});

h.test('let: variables visible to $match $expr and to stages', async () => {
    const r = await db.collection('c').aggregate(
        [{ $match: { $expr: { $eq: ['$_id', '$$x'] } } }, { $project: { y: '$$x' } }],
        { let: { x: { $add: [40, 2] } } }).toArray();
    assert.deepEqual(r, [{ _id: 42, y: 42 }]);
});

h.test('maxTimeMS: a pipeline past its time limit fails with 50', async () => {
    const heavy = [{ $project: { x: { $reduce: { input: { $range: [0, 20000] }, initialValue: 0,
                                                 in: { $add: ['$$value', '$$this'] } } } } },
                   { $sort: { x: 1 } }];
    const code = await codeOf(db.command({ aggregate: 'c', pipeline: heavy, cursor: {}, maxTimeMS: 1 }));
    assert.equal(code, 50);
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [], cursor: {}, maxTimeMS: -1 })), 2);
});

h.test('aggregate: 1 runs a $documents pipeline; a collection stage needs a collection', async () => {
    const r = await db.command({ aggregate: 1, pipeline: [{ $documents: [{ a: 1 }, { a: 2 }] }], cursor: {} });
    assert.deepEqual(r.cursor.firstBatch, [{ a: 1 }, { a: 2 }]);
    assert.equal(r.cursor.ns, 'aggcmd.$cmd.aggregate');
    const viaDriver = await db.aggregate([{ $documents: [{ b: 1 }] }]).toArray();
    assert.deepEqual(viaDriver, [{ b: 1 }]);
    assert.equal(await codeOf(db.command({ aggregate: 1, pipeline: [{ $match: {} }], cursor: {} })), 73);
});

h.test('errors: missing cursor, bad pipeline, unknown field, negative batchSize, bad collation', async () => {
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [] })), 9);
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: {}, cursor: {} })), 14);
    assert.equal(await codeOf(db.command({ aggregate: 'c', cursor: {} })), 40414);
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [{ $nope: 1 }], cursor: {} })), 40324);
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [], cursor: {}, bogus: 1 })), 40415);
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [], cursor: { batchSize: -1 } })), 51024);
    const r = await db.command({ aggregate: 'c', pipeline: [{ $limit: 1 }], cursor: {},
                                 collation: { locale: 'simple' }, hint: { _id: 1 }, comment: 'hi',
                                 allowDiskUse: true, bypassDocumentValidation: true });
    assert.equal(r.cursor.firstBatch.length, 1);
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [], cursor: {},
                                           collation: { strength: 2 } })), 40414);
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [], cursor: {},
                                           collation: { locale: 'xx_NOPE' } })), 2);
});

h.test('$listLocalSessions lists the server\'s sessions (aggregate: 1)', async () => {
    const session = client.startSession();
    await db.collection('c').findOne({}, { session });
    const id = session.id.id.toString('hex');
    const rows = await client.db('admin').aggregate([{ $listLocalSessions: { allUsers: true } }]).toArray();
    const mine = rows.find((r) => r._id.id.toString('hex') === id);
    assert.ok(mine, 'the session just used is listed');
    assert.ok(mine.lastUse instanceof Date);
    assert.equal(mine._id.uid.length(), 32);
    await session.endSession();
    assert.equal(await codeOf(db.command({ aggregate: 'c', pipeline: [{ $listLocalSessions: {} }], cursor: {} })), 73);
    assert.equal(await codeOf(db.command({ aggregate: 1, pipeline: [{ $listLocalSessions: { bogus: 1 } }], cursor: {} })), 40415);
});

h.test('collation reaches $match and $sort', async () => {
    const t = db.collection('coll8n');
    await t.insertMany([{ _id: 1, s: 'b' }, { _id: 2, s: 'B' }, { _id: 3, s: 'a' }, { _id: 4, s: '10' },
                        { _id: 5, s: '9' }]);
    const ci = { locale: 'en', strength: 2 };
    const m = await t.aggregate([{ $match: { s: 'b' } }], { collation: ci }).toArray();
    assert.deepEqual(m.map((d) => d._id), [1, 2]);
    const m0 = await t.aggregate([{ $match: { s: 'b' } }]).toArray();
    assert.deepEqual(m0.map((d) => d._id), [1]);
    const sorted = await t.aggregate([{ $match: { _id: { $gte: 4 } } }, { $sort: { s: 1 } }],
                                     { collation: { locale: 'en', numericOrdering: true } }).toArray();
    assert.deepEqual(sorted.map((d) => d.s), ['9', '10']);
});

h.test('$out replaces the target, as ordinary ops, and answers an empty cursor', async () => {
    const t = db.collection('outt');
    await t.insertMany([{ _id: 0, old: true }, { _id: 1000, old: true }]);
    const r = await db.command({ aggregate: 'c', pipeline: [{ $match: { v: 0 } }, { $out: 'outt' }], cursor: {} });
    assert.deepEqual(r.cursor.firstBatch, []);
    assert.equal(Number(r.cursor.id), 0);
    const want = (await db.collection('c').find({ v: 0 }).toArray());
    assert.deepEqual(await t.find().sort({ _id: 1 }).toArray(), want);
    // an empty result empties the target, and a missing target is created
    await db.collection('c').aggregate([{ $match: { v: 99 } }, { $out: 'outt' }]).toArray();
    assert.equal(await t.countDocuments(), 0);
    await db.collection('c').aggregate([{ $match: { v: 99 } }, { $out: 'outnew' }]).toArray();
    const names = (await db.listCollections().toArray()).map((c) => c.name);
    assert.ok(names.includes('outnew'), names.join());
});

h.test('$out with two documents of one _id fails with 11000 and leaves the target alone', async () => {
    const t = db.collection('outdup');
    await t.insertOne({ _id: 'keep' });
    const code = await codeOf(db.collection('c').aggregate(
        [{ $match: { v: 1 } }, { $project: { _id: 'same' } }, { $out: 'outdup' }]).toArray());
    assert.equal(code, 11000);
    assert.deepEqual(await t.find().toArray(), [{ _id: 'keep' }]);
});

h.test('pipeline-style update: stages, let, upsert, and the refused forms', async () => {
    const t = db.collection('pu');
    await t.insertMany([{ _id: 1, a: 1, b: 2 }]);
    const u = await t.updateOne({ _id: 1 }, [{ $set: { c: { $add: ['$a', '$b', '$$k'] } } }, { $unset: 'b' }],
                                { let: { k: 10 } });
    assert.equal(u.modifiedCount, 1);
    assert.deepEqual(await t.findOne({ _id: 1 }), { _id: 1, a: 1, c: 13 });
    const up = await t.updateOne({ _id: 2, x: 5 }, [{ $set: { y: { $multiply: ['$x', 2] } } }], { upsert: true });
    assert.equal(up.upsertedId, 2);
    assert.deepEqual(await t.findOne({ _id: 2 }), { _id: 2, x: 5, y: 10 });
    const fam = await t.findOneAndUpdate({ _id: 1 }, [{ $replaceWith: { z: '$a' } }], { returnDocument: 'after' });
    assert.deepEqual(fam, { _id: 1, z: 1 });
    assert.equal(await codeOf(t.updateOne({ _id: 1 }, [{ $match: {} }])), 72);
    assert.equal(await codeOf(t.updateOne({ _id: 1 }, [{ $set: { _id: 3 } }])), 66);
});

h.test('nedbd exits 0 on SIGTERM', () => srv.stop());

h.run();
