'use strict';
/*
 * test_crud.js: everyday CRUD through the node driver against a real nedbd, and what the
 * NEDB store adds under it: durability across a restart, cursors that keep their snapshot
 * across getMore, provenance fields validated and sealed, time travel with asOf, and the
 * chain verified by {nedbVerify: 1} and by the offline `nedb verify`.
 * Expected results follow MongoDB's documented behaviour (reply shapes of insert, update,
 * delete, findAndModify, count, distinct, listCollections; error codes 11000, 73, 43).
 */
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { MongoClient, MongoServerError, MongoBulkWriteError, Long, Double } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let db;
const dbpath = fs.mkdtempSync(path.join(require('os').tmpdir(), 'nedb-crud-'));

/* countDocuments() runs an aggregation (a later issue): count with the count command. */
async function count(c, query = {}, extra = {}) {
    return (await client.db(c.dbName).command({ count: c.collectionName, query, ...extra })).n;
}

async function connect() {
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('crud');
}

h.before(async () => {
    srv = await h.startServer({ dbpath });
    await connect();
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
    fs.rmSync(dbpath, { recursive: true, force: true });
});

h.test('insertOne/insertMany then find returns the documents in insertion order', async () => {
    const c = db.collection('people');
    const r1 = await c.insertOne({ _id: 1, name: 'ada', age: 36 });
    assert.equal(r1.insertedId, 1);
    const r2 = await c.insertMany([{ _id: 2, name: 'bob', age: 25 }, { _id: 3, name: 'cy', age: 41 }]);
    assert.equal(r2.insertedCount, 2);
    const all = await c.find({}).toArray();
    assert.deepEqual(all.map((d) => d._id), [1, 2, 3]);
    assert.deepEqual(all[0], { _id: 1, name: 'ada', age: 36 });
});

h.test('insert without _id generates an ObjectId placed first', async () => {
    const c = db.collection('gen');
    const r = await c.insertOne({ x: 1 });
    assert.equal(r.insertedId._bsontype, 'ObjectId');
    const raw = await db.command({ find: 'gen', filter: {} });
    const doc = raw.cursor.firstBatch[0];
    assert.deepEqual(Object.keys(doc), ['_id', 'x']);
});

h.test('filters with comparison operators select the right documents', async () => {
    const c = db.collection('people');
    assert.deepEqual((await c.find({ age: { $gt: 30 } }).toArray()).map((d) => d._id), [1, 3]);
    assert.deepEqual((await c.find({ name: { $in: ['bob', 'zed'] } }).toArray()).map((d) => d._id), [2]);
    assert.equal((await c.findOne({ _id: 3 })).name, 'cy');
    assert.equal(await c.findOne({ _id: 99 }), null);
});

h.test('sort, skip, limit and projection', async () => {
    const c = db.collection('people');
    const docs = await c.find({}, { sort: { age: -1 }, skip: 1, limit: 1, projection: { name: 1, _id: 0 } }).toArray();
    assert.deepEqual(docs, [{ name: 'ada' }]);
});

h.test('duplicate _id is write error 11000 with keyPattern and keyValue', async () => {
    const c = db.collection('people');
    await assert.rejects(c.insertOne({ _id: 1, name: 'again' }), (e) => {
        assert.equal(e.code, 11000);
        assert.deepEqual(e.keyPattern, { _id: 1 });
        assert.deepEqual(e.keyValue, { _id: 1 });
        return true;
    });
    // 1 and 1.0 are the same _id to MongoDB
    await assert.rejects(c.insertOne({ _id: 1.0 }), (e) => e.code === 11000);
});

h.test('ordered insertMany stops at the first error; unordered goes on', async () => {
    const c = db.collection('batch');
    await assert.rejects(c.insertMany([{ _id: 1 }, { _id: 1 }, { _id: 2 }], { ordered: true }),
        (e) => { assert.ok(e instanceof MongoBulkWriteError); assert.equal(e.result.insertedCount, 1); return true; });
    assert.equal(await count(c, {}), 1);
    await assert.rejects(c.insertMany([{ _id: 3 }, { _id: 1 }, { _id: 4 }], { ordered: false }),
        (e) => { assert.equal(e.result.insertedCount, 2); assert.equal(e.writeErrors.length ?? 1, 1); return true; });
    assert.deepEqual((await c.find({}).toArray()).map((d) => d._id), [1, 3, 4]);
});

h.test('updateOne $set/$inc/$unset, updateMany, replaceOne and upsert', async () => {
    const c = db.collection('upd');
    await c.insertMany([{ _id: 1, a: 1, b: 'x' }, { _id: 2, a: 2 }, { _id: 3, a: 3 }]);
    let r = await c.updateOne({ _id: 1 }, { $set: { b: 'y' }, $inc: { a: 10 } });
    assert.equal(r.matchedCount, 1);
    assert.equal(r.modifiedCount, 1);
    assert.deepEqual(await c.findOne({ _id: 1 }), { _id: 1, a: 11, b: 'y' });
    r = await c.updateOne({ _id: 1 }, { $set: { b: 'y' } });
    assert.equal(r.matchedCount, 1);
    assert.equal(r.modifiedCount, 0, 'a no-op update modifies nothing');
    r = await c.updateMany({ a: { $lt: 5 } }, { $unset: { a: '' } });
    assert.equal(r.matchedCount, 2);
    assert.equal(r.modifiedCount, 2);
    assert.deepEqual(await c.findOne({ _id: 2 }), { _id: 2 });
    r = await c.replaceOne({ _id: 3 }, { z: 1 });
    assert.deepEqual(await c.findOne({ _id: 3 }), { _id: 3, z: 1 });
    r = await c.updateOne({ _id: 7 }, { $set: { k: 1 } }, { upsert: true });
    assert.equal(r.upsertedId, 7);
    assert.equal(r.upsertedCount, 1);
    assert.deepEqual(await c.findOne({ _id: 7 }), { _id: 7, k: 1 });
});

h.test('modifying _id is error 66 ImmutableField', async () => {
    const c = db.collection('upd');
    await assert.rejects(c.updateOne({ _id: 1 }, { $set: { _id: 5 } }), (e) => e.code === 66);
});

h.test('deleteOne and deleteMany', async () => {
    const c = db.collection('del');
    await c.insertMany([{ _id: 1, t: 'a' }, { _id: 2, t: 'a' }, { _id: 3, t: 'b' }]);
    assert.equal((await c.deleteOne({ t: 'a' })).deletedCount, 1);
    assert.equal((await c.deleteMany({})).deletedCount, 2);
    assert.equal(await count(c, {}), 0);
});

h.test('findOneAndUpdate returns the pre- or post-image; findOneAndDelete removes', async () => {
    const c = db.collection('fam');
    await c.insertMany([{ _id: 1, n: 1 }, { _id: 2, n: 2 }]);
    let v = await c.findOneAndUpdate({ _id: 1 }, { $inc: { n: 1 } }, { returnDocument: 'before' });
    assert.deepEqual(v, { _id: 1, n: 1 });
    v = await c.findOneAndUpdate({ _id: 1 }, { $inc: { n: 1 } }, { returnDocument: 'after' });
    assert.deepEqual(v, { _id: 1, n: 3 });
    v = await c.findOneAndDelete({}, { sort: { n: -1 } });
    assert.deepEqual(v, { _id: 1, n: 3 });
    assert.equal(await count(c, {}), 1);
    v = await c.findOneAndUpdate({ _id: 9 }, { $set: { n: 9 } }, { upsert: true, returnDocument: 'after' });
    assert.deepEqual(v, { _id: 9, n: 9 });
});

h.test('count and distinct', async () => {
    const c = db.collection('cd');
    await c.insertMany([{ k: 'a', t: [1, 2] }, { k: 'b', t: 2 }, { k: 'a', t: 3 }]);
    assert.equal(await count(c, { k: 'a' }), 2);
    const r = await db.command({ count: 'cd', query: { k: 'a' } });
    assert.equal(r.n, 2);
    assert.deepEqual((await c.distinct('k')).sort(), ['a', 'b']);
    assert.deepEqual((await c.distinct('t')).sort(), [1, 2, 3]);
});

h.test('distinct over many values: each once, equal numbers of different types once', async () => {
    const c = db.collection('cd_many');
    const docs = [];
    for (let i = 0; i < 6000; i++) docs.push({ v: i % 3000, s: `s${i % 1500}` });
    docs.push({ v: 7.0 }, { v: new Long(7) }, { v: new Double(2999) });
    await c.insertMany(docs);
    const v = await c.distinct('v');
    assert.equal(v.length, 3000);
    assert.deepEqual([...new Set(v.map(Number))].length, 3000);
    assert.equal((await c.distinct('s')).length, 1500);
    assert.equal((await c.distinct('s', { v: { $lt: 10 } })).length, 10);
});

h.test('distinct past 16 MiB of values fails with 17217', async () => {
    const c = db.collection('cd_big');
    const big = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 17; i++) await c.insertOne({ s: `${i}${big}` });
    await assert.rejects(c.distinct('s'), (e) => e.code === 17217);
    // '0…', '1…' and '10…' to '16…'
    assert.equal((await c.distinct('s', { s: { $lt: '2' } })).length, 9);
});

h.test('a cursor keeps its snapshot across getMore', async () => {
    const c = db.collection('cur');
    await c.insertMany(Array.from({ length: 250 }, (_, i) => ({ _id: i })));
    const cursor = c.find({}, { batchSize: 20 });
    const first = await cursor.next();
    assert.equal(first._id, 0);
    await c.insertMany(Array.from({ length: 50 }, (_, i) => ({ _id: 1000 + i })));
    await c.deleteMany({ _id: { $lt: 100 } });
    let n = 1;
    while (await cursor.hasNext()) { await cursor.next(); n++; }
    assert.equal(n, 250, 'writes after the cursor opened are invisible to it');
    assert.equal(await count(c, {}), 200);
});

h.test('getMore on an unknown cursor is error 43 CursorNotFound', async () => {
    await assert.rejects(db.command({ getMore: Long.fromNumber(123456789), collection: 'cur' }),
        (e) => e.code === 43 && e.codeName === 'CursorNotFound');
});

h.test('invalid collection names are error 73 InvalidNamespace', async () => {
    await assert.rejects(db.command({ insert: 'a$b', documents: [{}] }), (e) => e.code === 73);
    await assert.rejects(db.command({ insert: '', documents: [{}] }), (e) => e.code === 73);
    await assert.rejects(db.command({ insert: 'system.foo', documents: [{}] }), (e) => e.code === 73);
});

h.test('catalog: create, listCollections, rename, drop, dropDatabase, listDatabases', async () => {
    const cat = client.db('cat');
    await cat.createCollection('c1', { capped: true, size: 4096 });
    await assert.rejects(cat.createCollection('c1'), (e) => e.code === 48);
    await cat.collection('c2').insertOne({ x: 1 });
    let names = (await cat.listCollections().toArray()).map((c) => c.name).sort();
    assert.deepEqual(names, ['c1', 'c2']);
    const info = (await cat.listCollections({ name: 'c1' }).toArray())[0];
    assert.equal(info.options.capped, true);
    await cat.collection('c2').rename('c3');
    names = (await cat.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name).sort();
    assert.deepEqual(names, ['c1', 'c3']);
    assert.equal((await cat.collection('c3').findOne({})).x, 1);
    assert.equal(await cat.collection('c1').drop(), true);
    const dbs = (await client.db('admin').command({ listDatabases: 1 })).databases.map((d) => d.name);
    assert.ok(dbs.includes('cat') && dbs.includes('crud'));
    await cat.dropDatabase();
    const after = (await client.db('admin').command({ listDatabases: 1, nameOnly: true })).databases.map((d) => d.name);
    assert.ok(!after.includes('cat'));
    const idx = await db.collection('people').listIndexes().toArray();
    assert.deepEqual(idx.map((i) => i.name), ['_id_']);
});

h.test('provenance fields are validated, kept as fields and sealed into the op', async () => {
    const c = db.collection('prov');
    const src = await db.command({ insert: 'prov', documents: [{ _id: 'msg', text: 'hi', _evidence: 'user_message' }] });
    assert.equal(src.seqs.length, 1);
    const seq = src.seqs[0];
    const r = await db.command({ insert: 'prov', documents: [{ _id: 'fact', _caused_by: [{ coll: 'prov', _id: 'msg' }], _evidence: 'inference', _confidence: 0.5 }] });
    assert.equal(r.n, 1);
    const fact = await c.findOne({ _id: 'fact' });
    assert.deepEqual(fact._caused_by.map(Number), [Number(seq)], 'references resolve to the seq of the cause');
    assert.equal(fact._confidence, 0.5);
    for (const bad of [{ _evidence: 'rumour' }, { _confidence: 1.5 }, { _confidence: 'high' },
                       { _caused_by: [999999] }, { _caused_by: 'x' }, { _caused_by: [{ coll: 'prov', _id: 'nope' }] }]) {
        const res = await db.command({ insert: 'prov', documents: [{ _id: 'bad', ...bad }] });
        assert.equal(res.n, 0, JSON.stringify(bad));
        assert.equal(res.writeErrors[0].code, 2, JSON.stringify(bad));
        assert.match(res.writeErrors[0].errmsg, /_evidence|_confidence|_caused_by/);
    }
    assert.equal(await c.findOne({ _id: 'bad' }), null, 'nothing of a refused document is written');
});

h.test('time travel: find with asOf reads the state as of an op', async () => {
    const c = db.collection('tt');
    const r1 = await db.command({ insert: 'tt', documents: [{ _id: 1, v: 'old' }] });
    await c.updateOne({ _id: 1 }, { $set: { v: 'new' } });
    await c.deleteOne({ _id: 1 });
    const past = await db.command({ find: 'tt', filter: { _id: 1 }, asOf: r1.seqs[0] });
    assert.deepEqual(past.cursor.firstBatch, [{ _id: 1, v: 'old' }]);
    const now = await db.command({ find: 'tt', filter: {} });
    assert.deepEqual(now.cursor.firstBatch, []);
    assert.equal(now.operationTime._bsontype, 'Timestamp');
});

h.test('positional $ in updates and projections; {$meta: "seq"} gives the version\'s seq', async () => {
    const c = db.collection('pos');
    await c.insertOne({ _id: 1, grades: [80, 85, 90] });
    await c.updateOne({ _id: 1, grades: 85 }, { $set: { 'grades.$': 86 } });
    assert.deepEqual((await c.findOne({ _id: 1 })).grades, [80, 86, 90]);
    const proj = await c.find({ grades: { $gt: 85 } }, { projection: { 'grades.$': 1 } }).toArray();
    assert.deepEqual(proj, [{ _id: 1, grades: [86] }]);
    const w = await db.command({ update: 'pos', updates: [{ q: { _id: 1 }, u: { $set: { v: 1 } } }] });
    const r = await db.command({ find: 'pos', filter: { _id: 1 }, projection: { s: { $meta: 'seq' }, v: 1 } });
    assert.equal(Number(r.cursor.firstBatch[0].s), Number(w.seqs[0]));
});

h.test('serverStatus reports the committed seq, chain head and sequencer batches', async () => {
    const w = await db.command({ insert: 'status', documents: [{ a: 1 }, { a: 2 }] });
    const st = await client.db('admin').command({ serverStatus: 1 });
    const v = await client.db('admin').command({ nedbVerify: 1 });
    assert.equal(Number(st.nedb.committedSeq), Number(w.seqs[1]), 'no other writer runs here');
    assert.equal(st.nedb.chainHead, v.headHash);
    assert.equal(Number(v.records), Number(st.nedb.committedSeq) + 1);
    assert.ok(Number(st.nedb.sequencer.batches) > 0);
    assert.ok(Number(st.nedb.sequencer.ops) >= Number(st.nedb.sequencer.batches));
    assert.equal(st.nedb.readOnly, false);
    assert.equal(typeof st.nedb.checkpoints, 'object');
    assert.ok(Number(st.nedb.checkpoints.failed) === 0);
    assert.ok(Number(st.nedb.checkpoints.seq) <= Number(st.nedb.committedSeq));
    assert.ok(Number(st.nedb.checkpoints.replayedAtOpen) <= Number(st.nedb.committedSeq) + 1);
});

h.test('$expr in find, count and update filters compares fields of the same document', async () => {
    const c = db.collection('expr');
    await c.insertMany([{ _id: 1, budget: 400, spent: 450 }, { _id: 2, budget: 100, spent: 65 },
                        { _id: 3, budget: 500, spent: 550 }]);
    const over = await c.find({ $expr: { $gt: ['$spent', '$budget'] } }).toArray();
    assert.deepEqual(over.map((d) => d._id), [1, 3]);
    assert.equal(await count(c, { $expr: { $lt: ['$spent', '$budget'] } }), 1);
    const r = await c.updateMany({ $expr: { $gt: ['$spent', '$budget'] } }, { $set: { over: true } });
    assert.equal(r.modifiedCount, 2);
    await assert.rejects(c.find({ $expr: { $nope: 1 } }).toArray(), (e) => e.code === 168);
    // an evaluation error fails the command, as in mongod, on every read and write path
    const div0 = { $expr: { $gt: [{ $divide: [1, { $subtract: ['$budget', 100] }] }, 0] } };
    const isDiv0 = (e) => e.code === 16608;
    await assert.rejects(c.find(div0).toArray(), isDiv0);
    await assert.rejects(c.find(div0).sort({ spent: 1 }).toArray(), isDiv0);
    await assert.rejects(count(c, div0), isDiv0);
    await assert.rejects(c.distinct('spent', div0), isDiv0);
    await assert.rejects(c.updateMany(div0, { $set: { x: 1 } }), isDiv0);
    assert.equal(await count(c, { x: 1 }), 0);
});

h.test('collation: find, sort, count, distinct, update and delete compare strings by it', async () => {
    const c = db.collection('collation');
    await c.insertMany([{ _id: 1, s: 'ping', n: '10' }, { _id: 2, s: 'PING', n: '9' },
                        { _id: 3, s: 'pong', n: '100' }, { _id: 4, s: 'café', n: '2' }]);
    const ci = { locale: 'en', strength: 2 };
    assert.deepEqual((await c.find({ s: 'ping' }).toArray()).map((d) => d._id), [1]);
    assert.deepEqual((await c.find({ s: 'ping' }, { collation: ci }).toArray()).map((d) => d._id), [1, 2]);
    assert.deepEqual((await c.find({ s: 'cafe' }, { collation: { locale: 'fr', strength: 1 } }).toArray())
        .map((d) => d._id), [4]);
    const byNum = await c.find({}).sort({ n: 1 }).collation({ locale: 'en', numericOrdering: true }).toArray();
    assert.deepEqual(byNum.map((d) => d.n), ['2', '9', '10', '100']);
    assert.equal(await count(c, { s: 'PING' }, { collation: ci }), 2);
    assert.deepEqual((await c.distinct('s', { _id: { $lte: 3 } }, { collation: ci })).length, 2);
    const u = await c.updateMany({ s: 'Ping' }, { $set: { hit: true } }, { collation: ci });
    assert.equal(u.modifiedCount, 2);
    const d = await c.deleteOne({ s: 'PONG' }, { collation: ci });
    assert.equal(d.deletedCount, 1);
    await assert.rejects(c.find({}, { collation: { strength: 2 } }).toArray(), (e) => e.code === 40414);
    await assert.rejects(c.find({}, { collation: { locale: 'xx_NOPE' } }).toArray(), (e) => e.code === 2);
});

h.test('an _id of null is a value like any other (raw insert: the node driver would replace it)', async () => {
    const r = await db.command({ insert: 'nullid', documents: [{ _id: null, a: 1 }] });
    assert.equal(r.n, 1);
    assert.deepEqual(await db.collection('nullid').find({ _id: null }).toArray(), [{ _id: null, a: 1 }]);
    const dup = await db.command({ insert: 'nullid', documents: [{ _id: null }] });
    assert.equal(dup.writeErrors[0].code, 11000);
});

h.test('nedbVerify walks the live chain', async () => {
    const r = await client.db('admin').command({ nedbVerify: 1 });
    assert.equal(r.valid, true);
    assert.ok(r.records > 10);
    assert.match(r.headHash, /^[0-9a-f]{64}$/);
});

h.test('acknowledged writes survive a restart, and the chain verifies offline', async () => {
    const c = db.collection('durable');
    await c.insertMany(Array.from({ length: 100 }, (_, i) => ({ _id: i, v: i * 2 })));
    await c.updateOne({ _id: 5 }, { $set: { v: 'changed' } });
    const before = await client.db('admin').command({ nedbVerify: 1 });
    await client.close();
    await srv.stop();
    const tool = h.nedbToolPath();
    if (tool) {
        const v = spawnSync(tool, ['verify', dbpath], { encoding: 'utf8' });
        assert.equal(v.status, 0, v.stdout + v.stderr);
        assert.ok(v.stdout.includes(before.headHash), 'offline head hash matches the live one');
    }
    srv = await h.startServer({ dbpath });
    await connect();
    const c2 = db.collection('durable');
    assert.equal(await count(c2, {}), 100);
    assert.equal((await c2.findOne({ _id: 5 })).v, 'changed');
    assert.equal((await c2.findOne({ _id: 7 })).v, 14);
    const people = await db.collection('people').find({}).toArray();
    assert.equal(people.length, 3);
});

h.test('checkpoints are logged at log level 2 with the seq serverStatus reports', async () => {
    const s2 = await h.startServer({ logLevel: 2, args: ['--checkpointOps', '20'] });
    const c2 = new MongoClient(`mongodb://127.0.0.1:${s2.port}/?directConnection=true`);
    try {
        await c2.connect();
        const coll = c2.db('ck').collection('c');
        for (let i = 0; i < 50; i++) await coll.insertOne({ i });
        let ck;
        for (let t = 0; t < 100; t++) {
            ck = (await c2.db('admin').command({ serverStatus: 1 })).nedb.checkpoints;
            if (Number(ck.written) >= 1) break;
            await new Promise((r) => setTimeout(r, 50));
        }
        assert.ok(Number(ck.written) >= 1, 'a checkpoint after 20 ops');
        const lines = fs.readFileSync(s2.logPath, 'utf8').split('\n')
            .filter((l) => /checkpoint at seq \d+ written in [0-9.]+ ms/.test(l));
        assert.equal(lines.length, Number(ck.written));
        assert.ok(lines.some((l) => l.includes(`checkpoint at seq ${ck.seq} written`)), lines.join('\n'));
    } finally {
        await c2.close();
        await s2.stop();
    }
});

h.run();
