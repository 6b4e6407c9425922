'use strict';
/*
 * test_indexes.js: secondary indexes through the node driver and mongoose: createIndex /
 * createIndexes / listIndexes / dropIndex(es) with MongoDB 7.0's replies and error codes,
 * unique indexes refusing duplicates on insert, update, upsert and findOneAndUpdate (11000
 * with keyPattern and keyValue), index definitions across a restart and at an earlier
 * snapshot (asOf), and mongoose's autoIndex creating a `unique: true` schema index.
 */
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { MongoClient } = require('mongodb');
const mongoose = require('mongoose');
const h = require('./lib/server');

let srv;
let client;
let db;
const dbpath = fs.mkdtempSync(path.join(require('os').tmpdir(), 'nedb-indexes-'));

async function connect() {
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('idx');
}

/* Runs fn, which must fail; returns the error. */
async function fails(fn) {
    try {
        await fn();
    } catch (e) {
        return e;
    }
    assert.fail('expected an error');
}

const names = (list) => list.map((i) => i.name);

h.before(async () => {
    srv = await h.startServer({ dbpath });
    await connect();
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
    fs.rmSync(dbpath, { recursive: true, force: true });
});

h.test('createIndex creates the collection, names the index from its key, listIndexes shows it', async () => {
    const c = db.collection('people');
    assert.deepEqual(await db.listCollections({ name: 'people' }).toArray(), []);
    const name = await c.createIndex({ last: 1, first: -1 });
    assert.equal(name, 'last_1_first_-1');
    assert.equal((await db.listCollections({ name: 'people' }).toArray()).length, 1);
    const list = await c.listIndexes().toArray();
    assert.deepEqual(list, [
        { v: 2, key: { _id: 1 }, name: '_id_' },
        { v: 2, key: { last: 1, first: -1 }, name: 'last_1_first_-1' },
    ]);
});

h.test('createIndexes replies numIndexesBefore/After, createdCollectionAutomatically and the "all indexes already exist" note', async () => {
    const r1 = await db.command({ createIndexes: 'fresh', indexes: [
        { key: { a: 1 }, name: 'a_1', unique: true },
        { key: { b: -1 }, name: 'b_-1', sparse: true, expireAfterSeconds: 3600 },
    ] });
    assert.equal(r1.numIndexesBefore, 1);
    assert.equal(r1.numIndexesAfter, 3);
    assert.equal(r1.createdCollectionAutomatically, true);
    const r2 = await db.command({ createIndexes: 'fresh', indexes: [{ key: { a: 1 }, name: 'a_1', unique: true }] });
    assert.equal(r2.numIndexesBefore, 3);
    assert.equal(r2.numIndexesAfter, 3);
    assert.equal(r2.note, 'all indexes already exist');
    assert.equal(r2.createdCollectionAutomatically, undefined);
    const r3 = await db.command({ createIndexes: 'fresh', indexes: [{ key: { c: 1 }, name: 'c_1' }] });
    assert.equal(r3.createdCollectionAutomatically, false);
    assert.equal(r3.numIndexesAfter, 4);
    const specs = await db.collection('fresh').indexes();
    assert.deepEqual(specs.find((s) => s.name === 'b_-1'),
                     { v: 2, key: { b: -1 }, name: 'b_-1', sparse: true, expireAfterSeconds: 3600 });
    assert.equal(specs.find((s) => s.name === 'a_1').unique, true);
});

h.test('conflicting and invalid specs get MongoDB\'s codes (85, 86, 67, 197, 238, 40414)', async () => {
    const c = db.collection('fresh');
    assert.equal((await fails(() => c.createIndex({ a: 1 }, { name: 'other' }))).code, 85);
    assert.equal((await fails(() => c.createIndex({ zz: 1 }, { name: 'a_1' }))).code, 86);
    assert.equal((await fails(() => c.createIndex({ a: 1 }, { name: 'a_1' }))).code, 85,
                 'same name and key, different options');
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [{ key: {}, name: 'e' }] }))).code, 67);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [{ key: { a: 0 }, name: 'z' }] }))).code, 67);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [{ key: { a: 'nope' }, name: 'z' }] }))).code, 67);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [{ key: { a: 1 }, name: 'z', bogus: 1 }] }))).code, 197);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [{ key: { t: 'text' }, name: 't' }] }))).code, 238);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [{ key: { '$**': 1 }, name: 'w' }] }))).code, 238);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh' }))).code, 40414);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [
        { key: { p: 1 }, name: 'p', sparse: true, partialFilterExpression: { p: { $gt: 1 } } }] }))).code, 67);
    assert.equal((await fails(() => db.command({ createIndexes: 'fresh', indexes: [{ key: { h: 'hashed' }, name: 'h', unique: true }] }))).code, 67);
    assert.deepEqual(names(await c.indexes()), ['_id_', 'a_1', 'b_-1', 'c_1'], 'nothing created');
});

h.test('a unique index refuses a duplicate insert with 11000, keyPattern and keyValue', async () => {
    const c = db.collection('users');
    await c.createIndex({ email: 1 }, { unique: true });
    await c.insertOne({ _id: 1, email: 'a@x' });
    const e = await fails(() => c.insertOne({ _id: 2, email: 'a@x' }));
    assert.equal(e.code, 11000);
    assert.deepEqual(e.keyPattern, { email: 1 });
    assert.deepEqual(e.keyValue, { email: 'a@x' });
    assert.equal(e.errmsg, 'E11000 duplicate key error collection: idx.users index: email_1 dup key: { email: "a@x" }');
    assert.equal(await c.countDocuments({}), 1);
    /* unordered insert: the others go in (the raw reply: the driver's WriteError keeps
     * only code, index, errmsg and errInfo) */
    const r = await db.command({ insert: 'users', ordered: false,
                                 documents: [{ _id: 3, email: 'b@x' }, { _id: 4, email: 'b@x' }, { _id: 5, email: 'c@x' }] });
    assert.equal(r.n, 2);
    assert.equal(r.writeErrors.length, 1);
    assert.equal(r.writeErrors[0].index, 1);
    assert.equal(r.writeErrors[0].code, 11000);
    assert.deepEqual(r.writeErrors[0].keyPattern, { email: 1 });
    assert.deepEqual(r.writeErrors[0].keyValue, { email: 'b@x' });
    assert.deepEqual((await c.find({}).toArray()).map((d) => d._id), [1, 3, 5]);
});

h.test('updates, upserts and findOneAndUpdate that would duplicate a key fail with 11000', async () => {
    const c = db.collection('users');
    const e1 = await fails(() => c.updateOne({ _id: 3 }, { $set: { email: 'a@x' } }));
    assert.equal(e1.code, 11000);
    assert.deepEqual(e1.keyValue, { email: 'a@x' });
    assert.equal((await c.findOne({ _id: 3 })).email, 'b@x', 'unchanged');
    const e2 = await fails(() => c.updateOne({ _id: 99 }, { $set: { email: 'c@x' } }, { upsert: true }));
    assert.equal(e2.code, 11000);
    assert.equal(await c.countDocuments({ _id: 99 }), 0);
    const e3 = await fails(() => c.replaceOne({ _id: 5 }, { email: 'a@x' }));
    assert.equal(e3.code, 11000);
    const e4 = await fails(() => c.findOneAndUpdate({ _id: 5 }, { $set: { email: 'b@x' } }));
    assert.equal(e4.code, 11000);
    assert.deepEqual(e4.keyPattern, { email: 1 });
    assert.deepEqual(e4.keyValue, { email: 'b@x' });
    /* changing a key frees the old one */
    await c.updateOne({ _id: 1 }, { $set: { email: 'new@x' } });
    await c.insertOne({ _id: 6, email: 'a@x' });
    assert.equal(await c.countDocuments({ email: 'a@x' }), 1);
});

h.test('missing fields index as null unless sparse; partial indexes constrain only what they cover', async () => {
    const c = db.collection('users');
    await c.insertOne({ _id: 10 });
    const e = await fails(() => c.insertOne({ _id: 11 }));
    assert.equal(e.code, 11000);
    assert.deepEqual(e.keyValue, { email: null });
    const s = db.collection('sparse');
    await s.createIndex({ code: 1 }, { unique: true, sparse: true });
    await s.insertMany([{ _id: 1 }, { _id: 2 }, { _id: 3, code: 7 }]);
    assert.equal((await fails(() => s.insertOne({ _id: 4, code: 7 }))).code, 11000);
    const p = db.collection('partial');
    await p.createIndex({ sku: 1 }, { unique: true, partialFilterExpression: { active: true } });
    await p.insertMany([{ _id: 1, sku: 'x', active: false }, { _id: 2, sku: 'x', active: false }, { _id: 3, sku: 'x', active: true }]);
    assert.equal((await fails(() => p.insertOne({ _id: 4, sku: 'x', active: true }))).code, 11000);
});

h.test('creating a unique index over existing duplicates fails with 11000 and creates nothing', async () => {
    const c = db.collection('dups');
    await c.insertMany([{ _id: 1, k: 5 }, { _id: 2, k: 5 }]);
    const e = await fails(() => c.createIndex({ k: 1 }, { unique: true }));
    assert.equal(e.code, 11000);
    assert.match(e.message, /index: k_1 dup key: \{ k: 5 \}/);
    assert.deepEqual(names(await c.indexes()), ['_id_']);
});

h.test('dropIndex / dropIndexes by name, key pattern, list and "*"; _id_ cannot be dropped (72), unknown 27', async () => {
    const c = db.collection('fresh');
    const r = await db.command({ dropIndexes: 'fresh', index: 'c_1' });
    assert.equal(r.nIndexesWas, 4);
    await c.dropIndex({ 'b': -1 });
    assert.deepEqual(names(await c.indexes()), ['_id_', 'a_1']);
    assert.equal((await fails(() => c.dropIndex('_id_'))).code, 72);
    assert.equal((await fails(() => c.dropIndex('nope'))).code, 27);
    assert.equal((await fails(() => c.dropIndex({ nope: 1 }))).code, 27);
    await c.createIndexes([{ key: { x: 1 } }, { key: { y: 1 } }]);
    await db.command({ dropIndexes: 'fresh', index: ['x_1', 'y_1'] });
    assert.deepEqual(names(await c.indexes()), ['_id_', 'a_1']);
    await c.dropIndexes();
    assert.deepEqual(names(await c.indexes()), ['_id_']);
    assert.equal((await fails(() => db.command({ dropIndexes: 'no_such_coll', index: '*' }))).code, 26);
});

h.test('listIndexes at an earlier snapshot (asOf, atClusterTime) shows the indexes of that moment', async () => {
    const c = db.collection('history');
    const created = await db.command({ createIndexes: 'history', indexes: [{ key: { a: 1 }, name: 'a_1' }] });
    const ins = await db.command({ insert: 'history', documents: [{ _id: 1, a: 1 }] });
    const seq = Number(ins.seqs[0]);
    await c.dropIndex('a_1');
    assert.deepEqual(names(await c.indexes()), ['_id_']);
    const past = await db.command({ listIndexes: 'history', asOf: seq });
    assert.deepEqual(names(past.cursor.firstBatch), ['_id_', 'a_1']);
    const before = await db.command({ listIndexes: 'history', asOf: seq - 2 });
    assert.deepEqual(names(before.cursor.firstBatch), ['_id_'], 'before the createIndexes op');
    const at = await db.command({ listIndexes: 'history',
                                  readConcern: { level: 'snapshot', atClusterTime: created.operationTime } });
    assert.deepEqual(names(at.cursor.firstBatch), ['_id_', 'a_1']);
});

h.test('collMod index: hidden and expireAfterSeconds report _old/_new; prepareUnique then unique converts, 359 lists the violations', async () => {
    const c = db.collection('modme');
    await c.insertMany([{ _id: 1, x: 1 }, { _id: 2, x: 1 }, { _id: 3, x: 2 }]);
    await c.createIndex({ x: 1 });
    await c.createIndex({ t: 1 }, { expireAfterSeconds: 60 });
    const h1 = await db.command({ collMod: 'modme', index: { name: 'x_1', hidden: true } });
    assert.equal(h1.hidden_old, false);
    assert.equal(h1.hidden_new, true);
    assert.equal((await c.indexes()).find((i) => i.name === 'x_1').hidden, true);
    const t1 = await db.command({ collMod: 'modme', index: { keyPattern: { t: 1 }, expireAfterSeconds: 120 } });
    assert.equal(t1.expireAfterSeconds_old, 60);
    assert.equal(t1.expireAfterSeconds_new, 120);
    assert.equal((await fails(() => db.command({ collMod: 'modme', index: { name: 'nope', hidden: false } }))).code, 27);
    assert.equal((await fails(() => db.command({ collMod: 'modme', index: { name: 'x_1', unique: true } }))).code, 72,
                 'not prepared');
    const p1 = await db.command({ collMod: 'modme', index: { keyPattern: { x: 1 }, prepareUnique: true } });
    assert.equal(p1.prepareUnique_old, false);
    assert.equal(p1.prepareUnique_new, true);
    /* prepared: new duplicates are refused, the existing ones stay */
    assert.equal((await fails(() => c.insertOne({ _id: 4, x: 2 }))).code, 11000);
    const e = await fails(() => db.command({ collMod: 'modme', index: { keyPattern: { x: 1 }, unique: true } }));
    assert.equal(e.code, 359);
    assert.deepEqual(e.errorResponse.violations, [{ ids: [1, 2] }]);
    await c.deleteOne({ _id: 2 });
    const u = await db.command({ collMod: 'modme', index: { keyPattern: { x: 1 }, unique: true } });
    assert.equal(u.unique_new, true);
    const spec = (await c.indexes()).find((i) => i.name === 'x_1');
    assert.equal(spec.unique, true);
    assert.equal(spec.prepareUnique, undefined);
    assert.equal((await fails(() => c.insertOne({ _id: 5, x: 1 }))).code, 11000);
});

h.test('index commands on a view are refused with 166', async () => {
    await db.createCollection('aview', { viewOn: 'users', pipeline: [] });
    assert.equal((await fails(() => db.collection('aview').createIndex({ a: 1 }))).code, 166);
    assert.equal((await fails(() => db.command({ dropIndexes: 'aview', index: '*' }))).code, 166);
    assert.equal((await fails(() => db.command({ listIndexes: 'aview' }))).code, 166);
    await db.collection('aview').drop();
});

h.test('equality filters on an indexed field (find, count, update, delete) see exactly what a scan sees', async () => {
    const c = db.collection('lookup');
    await c.createIndex({ tag: 1 });
    await c.insertMany([{ _id: 1, tag: 'a', n: 1 }, { _id: 2, tag: ['b', 'a'], n: 2 }, { _id: 3, tag: 'b', n: 3 },
                        { _id: 4, tag: 1, n: 4 }, { _id: 5, tag: 1.0, n: 5 }, { _id: 6, n: 6 }]);
    const ids = async (q, opts) => (await c.find(q, opts).toArray()).map((d) => d._id);
    assert.deepEqual(await ids({ tag: 'a' }), [1, 2], 'multikey element, natural order');
    assert.deepEqual(await ids({ tag: { $eq: 'b' } }), [2, 3]);
    assert.deepEqual(await ids({ tag: 1 }), [4, 5], '1 == 1.0');
    assert.deepEqual(await ids({ tag: 'a', n: { $gt: 1 } }), [2], 'the rest of the filter still applies');
    assert.deepEqual(await ids({ tag: 'b' }, { sort: { n: -1 } }), [3, 2]);
    assert.deepEqual(await ids({ tag: null }), [6], 'null is answered by a scan');
    const before = await db.command({ insert: 'lookup', documents: [{ _id: 7, tag: 'c' }] });
    await c.updateOne({ tag: 'a', _id: 1 }, { $set: { tag: 'c' } });
    assert.deepEqual(await ids({ tag: 'c' }), [1, 7]);
    assert.deepEqual(await ids({ tag: 'a' }), [2]);
    const past = await db.command({ find: 'lookup', filter: { tag: 'a' }, asOf: Number(before.seqs[0]) });
    assert.deepEqual(past.cursor.firstBatch.map((d) => d._id), [1, 2], 'as of before the update');
    assert.equal((await db.command({ count: 'lookup', query: { tag: 'b' } })).n, 2);
    await c.deleteMany({ tag: 'b' });
    assert.deepEqual(await ids({}), [1, 4, 5, 6, 7]);
    /* a collation: strings compare by it, the binary index is not used */
    assert.deepEqual(await ids({ tag: 'C' }, { collation: { locale: 'en', strength: 2 } }), [1, 7]);
});

/* Runs the same writes on an indexed collection and an unindexed copy, then compares what
 * reads return on both: the index must change nothing a client sees. */
async function twins(name, key) {
    const ix = db.collection(name);
    const plain = db.collection(`${name}_plain`);
    await ix.createIndex(key);
    const both = async (fn) => { await fn(ix); await fn(plain); };
    const same = async (q, opts, why) => {
        const a = (await ix.find(q, opts).toArray()).map((d) => d._id);
        const b = (await plain.find(q, opts).toArray()).map((d) => d._id);
        assert.deepEqual(a, b, `${why || ''} ${JSON.stringify(q)}`);
        const co = opts && opts.collation ? { collation: opts.collation } : {};
        assert.equal(await ix.countDocuments(q, co), await plain.countDocuments(q, co), `count ${JSON.stringify(q)}`);
        const cnt = await db.command({ count: name, query: q, ...co });
        assert.equal(cnt.n, (await plain.find(q, co).toArray()).length, `count command ${JSON.stringify(q)}`);
        /* aggregate's leading $match reads through the same choice */
        const agg = async (c) => (await c.aggregate([{ $match: q }, { $project: { _id: 1 } }], co).toArray())
            .map((d) => d._id);
        assert.deepEqual(await agg(ix), await agg(plain), `aggregate ${JSON.stringify(q)}`);
        return a;
    };
    /* the plan the read takes on the indexed one */
    const stage = async (filter, extra) => (await db.command({ explain: { find: name, filter, ...extra },
                                                                verbosity: 'queryPlanner' })).queryPlanner.winningPlan.stage;
    return { ix, plain, both, same, stage };
}

h.test('$in on an indexed field (find, count, distinct, update, delete) sees exactly what a scan sees', async () => {
    const { Long } = require('mongodb');
    const t = await twins('inlookup', { tag: 1 });
    await t.both((c) => c.insertMany([
        { _id: 1, tag: 'b', n: 1 }, { _id: 2, tag: 'a', n: 2 }, { _id: 3, tag: ['c', 'a'], n: 3 },
        { _id: 4, tag: 1, n: 4 }, { _id: 5, tag: 1.0, n: 5 }, { _id: 6, tag: Long.fromNumber(1), n: 6 },
        { _id: 7, tag: 2.5, n: 7 }, { _id: 8, n: 8 }, { _id: 9, tag: null, n: 9 },
        { _id: 10, tag: { x: 1 }, n: 10 }, { _id: 11, tag: { x: 1.0 }, n: 11 }, { _id: 12, tag: ['b', 1], n: 12 },
        { _id: 13, tag: [['a']], n: 13 }, { _id: 14, tag: 'A', n: 14 }]));
    assert.equal(await t.stage({ tag: { $in: ['a', 'b'] } }), 'FETCH', 'the index is used');
    const aggPlan = async (pipeline, extra = {}) => (await db.command({
        explain: { aggregate: 'inlookup', pipeline, cursor: {}, ...extra }, verbosity: 'queryPlanner' }))
        .stages[0].$cursor.queryPlanner.winningPlan;
    const wp = await aggPlan([{ $match: { tag: { $in: ['a', 'b'] } } }, { $count: 'n' }]);
    assert.equal(wp.stage, 'FETCH');
    assert.equal(wp.inputStage.stage, 'IXSCAN');
    assert.equal(wp.inputStage.indexName, 'tag_1');
    assert.equal((await aggPlan([{ $match: { n: 1 } }])).stage, 'COLLSCAN');
    assert.equal((await aggPlan([{ $match: { tag: 'a' } }], { collation: { locale: 'en' } })).stage, 'COLLSCAN');
    assert.deepEqual(await t.same({ tag: { $in: ['b', 'a'] } }), [1, 2, 3, 12], 'natural order, each once');
    await t.same({ tag: { $in: ['a', 'a', 'b', 'a'] } }, undefined, 'duplicates');
    assert.deepEqual(await t.same({ tag: { $in: [1, 1.0, Long.fromNumber(1)] } }), [4, 5, 6, 12], 'one numeric key');
    await t.same({ tag: { $in: [Long.fromNumber(1), 2.5] } });
    await t.same({ tag: { $in: ['zzz', 'a'] } }, undefined, 'an absent value');
    assert.deepEqual(await t.same({ tag: { $in: ['zzz'] } }), []);
    assert.deepEqual(await t.same({ tag: { $in: [] } }), []);
    await t.same({ tag: { $in: [{ x: 1 }, 'c'] } }, undefined, 'documents compare by value');
    await t.same({ tag: { $in: [['a'], 'c'] } }, undefined, 'an array value: scanned');
    await t.same({ tag: { $in: [null, 'a'] } }, undefined, 'null: scanned');
    await t.same({ tag: { $in: [/^a/, 'b'] } }, undefined, 'a regex: scanned');
    await t.same({ tag: { $in: ['a', 'b'] }, n: { $gt: 2 } }, undefined, 'the rest of the filter');
    await t.same({ n: { $lt: 13 }, tag: { $in: ['a', 1] } });
    await t.same({ tag: { $in: ['a', 'b', 1] } }, { sort: { n: -1 } });
    await t.same({ tag: { $in: ['a', 'b', 1] } }, { skip: 2, limit: 3 });
    await t.same({ tag: { $in: ['a', 'A'] } }, { collation: { locale: 'en', strength: 2 } }, 'collation');
    assert.deepEqual((await t.ix.distinct('n', { tag: { $in: ['a', 2.5] } })).sort(),
                     (await t.plain.distinct('n', { tag: { $in: ['a', 2.5] } })).sort());
    /* updates move a document between keys but not in natural order */
    await t.both((c) => c.updateMany({ tag: { $in: ['b', 2.5] } }, { $set: { tag: 'a' } }));
    assert.deepEqual(await t.same({ tag: { $in: ['a', 'c'] } }), [1, 2, 3, 7, 12]);
    /* a deleted and re-inserted _id comes last */
    await t.both((c) => c.deleteMany({ tag: { $in: [1, 'zzz'] } }));
    await t.both((c) => c.deleteOne({ _id: 2 }).then(() => c.insertOne({ _id: 2, tag: 'c' })));
    assert.deepEqual(await t.same({ tag: { $in: ['c', 'a'] } }), [1, 3, 7, 12, 2]);
    await t.same({});
});

h.test('an index created after the documents, a hidden one, and snapshots older than the index', async () => {
    const ix = db.collection('late');
    const plain = db.collection('late_plain');
    const docs = [];
    for (let i = 0; i < 30; i++) docs.push({ _id: i, k: i % 4, s: i % 3 ? 'x' : 'y' });
    await ix.insertMany(docs);
    await plain.insertMany(docs);
    const before = await db.command({ insert: 'late', documents: [{ _id: 100, k: 1 }] });
    await plain.insertOne({ _id: 100, k: 1 });
    await ix.createIndex({ k: 1 });
    const after = await db.command({ insert: 'late', documents: [{ _id: 101, k: 2 }] });
    await plain.insertOne({ _id: 101, k: 2 });
    await ix.updateOne({ _id: 5 }, { $set: { k: 3 } });
    await plain.updateOne({ _id: 5 }, { $set: { k: 3 } });
    const ids = async (c, filter, extra) => (await db.command({ find: c, filter, ...extra })).cursor.firstBatch.map((d) => d._id);
    const stage = async (filter, extra) => (await db.command({ explain: { find: 'late', filter, ...extra },
                                                              verbosity: 'queryPlanner' })).queryPlanner.winningPlan.stage;
    for (const f of [{ k: 1 }, { k: { $in: [3, 1] } }, { k: { $in: [2, 0] }, s: 'y' }]) {
        assert.equal(await stage(f), 'FETCH', JSON.stringify(f));
        assert.deepEqual(await ids('late', f), await ids('late_plain', f), JSON.stringify(f));
    }
    /* as of before the index: a scan, and what the collection held then */
    const old = { asOf: Number(before.seqs[0]) };
    assert.equal(await stage({ k: { $in: [1, 3] } }, old), 'COLLSCAN');
    assert.deepEqual(await ids('late', { k: { $in: [1, 3] } }, old),
                     docs.filter((d) => d.k === 1 || d.k === 3).map((d) => d._id).concat([100]));
    /* as of after the index but before the update of _id 5 */
    const mid = { asOf: Number(after.seqs[0]) };
    assert.equal(await stage({ k: { $in: [1, 3] } }, mid), 'FETCH');
    const wantMid = docs.filter((d) => d.k === 1 || d.k === 3).map((d) => d._id).concat([100]);
    assert.deepEqual(await ids('late', { k: { $in: [1, 3] } }, mid), wantMid);
    assert.ok(!(await ids('late', { k: 3 }, mid)).includes(5), '_id 5 got k: 3 only later');
    /* hidden: not used, same answers; visible again: used */
    await db.command({ collMod: 'late', index: { name: 'k_1', hidden: true } });
    assert.equal(await stage({ k: { $in: [1, 3] } }), 'COLLSCAN');
    assert.deepEqual(await ids('late', { k: { $in: [1, 3] } }), await ids('late_plain', { k: { $in: [1, 3] } }));
    await db.command({ collMod: 'late', index: { name: 'k_1', hidden: false } });
    assert.equal(await stage({ k: { $in: [1, 3] } }), 'FETCH');
    /* dropped: a scan again, and the past keeps its own plan */
    await ix.dropIndex('k_1');
    assert.equal(await stage({ k: 1 }), 'COLLSCAN');
    assert.equal(await stage({ k: 1 }, mid), 'FETCH', 'the index existed at that snapshot');
    assert.deepEqual(await ids('late', { k: { $in: [1, 3] } }, mid), wantMid);
});

h.test('collStats, dbStats and drop count the secondary indexes', async () => {
    const sdb = client.db('idx_stats');
    const c = sdb.collection('s');
    await c.createIndexes([{ key: { a: 1 } }, { key: { b: -1 }, name: 'bee' }]);
    const st = await sdb.command({ collStats: 's' });
    assert.equal(st.nindexes, 3);
    assert.deepEqual(Object.keys(st.indexSizes), ['_id_', 'a_1', 'bee']);
    await sdb.collection('t').insertOne({ x: 1 });
    assert.equal((await sdb.command({ dbStats: 1 })).indexes, 4);
    const dropped = await sdb.command({ drop: 's' });
    assert.equal(dropped.nIndexesWas, 3);
    assert.equal((await sdb.command({ dbStats: 1 })).indexes, 1);
    await sdb.dropDatabase();
});

h.test('$indexStats has one document per index, as listIndexes lists them', async () => {
    const sdb = client.db('idx_istats');
    const c = sdb.collection('s');
    await c.createIndexes([{ key: { a: 1 }, unique: true }, { key: { b: -1, c: 1 }, name: 'bc' }]);
    const listed = await c.listIndexes().toArray();
    const before = Date.now();
    const stats = await c.aggregate([{ $indexStats: {} }]).toArray();
    assert.deepEqual(stats.map((s) => s.name), names(listed));
    for (const [i, s] of stats.entries()) {
        assert.deepEqual(s.key, listed[i].key);
        assert.deepEqual(s.spec, listed[i]);
        assert.equal(typeof s.host, 'string');
        assert.equal(Number(s.accesses.ops), 0);
        assert.ok(Math.abs(s.accesses.since.getTime() - before) < 60000);
    }
    assert.deepEqual(await sdb.collection('none').aggregate([{ $indexStats: {} }]).toArray(), []);
    await sdb.dropDatabase();
});

/* mongod's planner: a hint must name an existing index (by name or key pattern) or be
 * {$natural: 1 | -1}, else BadValue (2) "hint provided does not correspond to an
 * existing index"; $natural: -1 reads in reverse natural order. */
h.test('hint: an existing index by name or key pattern, $natural; anything else is 2', async () => {
    const hdb = client.db('idx_hint');
    const c = hdb.collection('h');
    await c.insertMany([{ _id: 1, a: 1 }, { _id: 2, a: 2 }, { _id: 3, a: 1 }]);
    await c.createIndex({ a: 1 });
    const { Double } = require('mongodb');
    const ids = (docs) => docs.map((d) => d._id);
    assert.deepEqual(ids(await c.find({ a: 1 }).hint('a_1').toArray()), [1, 3]);
    assert.deepEqual(ids(await c.find({ a: 1 }).hint({ a: new Double(1) }).toArray()), [1, 3], '1.0 is 1');
    assert.deepEqual(ids(await c.find({}).hint('_id_').toArray()), [1, 2, 3]);
    assert.deepEqual(ids(await c.find({}).hint({ $natural: -1 }).toArray()), [3, 2, 1]);
    assert.deepEqual(ids(await c.find({ a: 1 }).hint({ $natural: -1 }).toArray()), [3, 1]);
    assert.deepEqual(ids(await c.find({ _id: 2 }).hint({ $natural: 1 }).toArray()), [2]);
    const bad = (p) => assert.rejects(p, (e) => e.code === 2 && /hint provided does not correspond/.test(e.message));
    await bad(c.find({ a: 1 }).hint({ b: 1 }).toArray());
    await bad(c.find({ a: 1 }).hint({ a: -1 }).toArray());
    await bad(c.find({ a: 1 }).hint('nope').toArray());
    await bad(hdb.command({ count: 'h', query: {}, hint: 'nope' }));
    await bad(c.aggregate([{ $match: {} }], { hint: { zz: 1 } }).toArray());
    await bad(c.findOneAndUpdate({ a: 2 }, { $set: { x: 1 } }, { hint: 'nope' }));
    await assert.rejects(c.find({}).hint({ $natural: 2 }).toArray(), (e) => e.code === 2);
    const u = await hdb.command({ update: 'h', updates: [{ q: { a: 1 }, u: { $set: { y: 1 } }, hint: { b: 1 } },
                                                          { q: { a: 2 }, u: { $set: { y: 2 } }, hint: 'a_1' }],
                                  ordered: false });
    assert.equal(u.writeErrors.length, 1);
    assert.equal(u.writeErrors[0].index, 0);
    assert.equal(u.writeErrors[0].code, 2);
    assert.equal(u.nModified, 1, 'the statement with an existing hint ran');
    const d = await hdb.command({ delete: 'h', deletes: [{ q: { a: 2 }, limit: 1, hint: 'nope' }] });
    assert.equal(d.writeErrors[0].code, 2);
    assert.equal(await c.countDocuments(), 3, 'nothing deleted');
    /* a collection that does not exist: any well-formed hint is accepted */
    assert.deepEqual(await hdb.collection('none').find({}).hint('whatever').toArray(), []);
    await hdb.dropDatabase();
});

h.test('indexes and their enforcement survive a restart', async () => {
    await client.close();
    await srv.stop();
    srv = await h.startServer({ dbpath });
    await connect();
    const c = db.collection('users');
    assert.deepEqual(names(await c.indexes()), ['_id_', 'email_1']);
    const e = await fails(() => c.insertOne({ _id: 50, email: 'a@x' }));
    assert.equal(e.code, 11000);
    assert.deepEqual(names(await db.collection('people').indexes()), ['_id_', 'last_1_first_-1']);
    /* lookups after the restart: still what a scan sees, in natural order */
    const plan = await db.command({ explain: { find: 'inlookup', filter: { tag: { $in: ['c', 'a'] } } } });
    assert.equal(plan.queryPlanner.winningPlan.stage, 'FETCH');
    for (const q of [{ tag: { $in: ['c', 'a'] } }, { tag: { $in: ['a', 'c', 2] } }, { tag: 'a' }]) {
        const got = (await db.collection('inlookup').find(q).toArray()).map((d) => d._id);
        assert.deepEqual(got, (await db.collection('inlookup_plain').find(q).toArray()).map((d) => d._id));
    }
});

h.test('mongoose: a schema with unique: true creates its index and a duplicate save fails with 11000', async () => {
    const conn = mongoose.createConnection(`mongodb://127.0.0.1:${srv.port}/nedb_mongoose_idx`,
                                           { serverSelectionTimeoutMS: 3000 });
    try {
        await conn.asPromise();
        const schema = new mongoose.Schema({ username: { type: String, unique: true }, age: Number });
        const User = conn.model('User', schema);
        await User.init(); /* autoIndex: createIndexes */
        const specs = await conn.db.collection('users').indexes();
        const u = specs.find((s) => s.name === 'username_1');
        assert.ok(u, JSON.stringify(specs));
        assert.equal(u.unique, true);
        await User.create({ username: 'ada', age: 36 });
        const e = await fails(() => User.create({ username: 'ada', age: 37 }));
        assert.equal(e.code, 11000);
        assert.deepEqual(e.keyValue, { username: 'ada' });
        assert.equal(await User.countDocuments({}), 1);
    } finally {
        await conn.close();
    }
});

h.run();
