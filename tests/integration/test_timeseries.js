'use strict';
/*
 * test_timeseries.js: time-series and clustered collections through the node driver
 * against a real nedbd: create with timeseries options (defaults per granularity, custom
 * bucketing, expireAfterSeconds) and their validation codes, listCollections of the
 * collection and of its system.buckets collection, inserts (duplicate _ids, generated
 * ObjectIds, the time field's check in ordered and unordered batches), reads through
 * find / count / distinct / aggregate, deletes by any filter and updates of the metaField
 * as MongoDB 7.0 allows them (and its refusals, code 72), what else is refused
 * (findAndModify, indexes, rename), collMod expireAfterSeconds, drop; create with clusteredIndex, its
 * listCollections and listIndexes entries and its validation codes; and both kinds
 * surviving a checkpoint and a restart.
 * Expected results come from MongoDB 7.0's "Time Series", "Time Series Collection
 * Limitations" and "Clustered Collections" pages, the create command's reference, mongod's
 * messages for refused time-series updates (timeseries_update_delete_util.cpp), and
 * mongod's own jstests of these options
 * (jstests/core/timeseries/ddl/timeseries_create.js, bucket_span_and_rounding_seconds.js,
 * jstests/core/clustered/clustered_collection_creation.js).
 */
const assert = require('assert/strict');
const fs = require('fs');
const { MongoClient, MongoBulkWriteError, ObjectId } = require('mongodb');
const h = require('./lib/server');

let srv;
let firstDir = null; /* the first server's directory, kept across the restart */
let client;
let db;

async function connect() {
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('ts');
}

async function info(name) {
    const all = await db.listCollections({ name }).toArray();
    assert.equal(all.length, 1, `${name} listed once`);
    return all[0];
}

async function names() {
    return (await db.listCollections({}, { nameOnly: true }).toArray()).map((i) => i.name).sort();
}

const t0 = Date.parse('2021-05-18T00:00:00Z');
const at = (min) => new Date(t0 + min * 60000);

h.before(async () => {
    /* a checkpoint every 10 ops, so the restart below loads one */
    srv = await h.startServer({ args: ['--checkpointOps', '10'] });
    await connect();
});

h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) await srv.stop();
    if (firstDir && !process.env.NEDB_KEEP_TMP) fs.rmSync(firstDir, { recursive: true, force: true });
});

/* ---- time-series: create and listCollections ---- */

h.test('create with timeField, metaField, granularity and expireAfterSeconds; listCollections shows both entries', async () => {
    await db.createCollection('weather', {
        timeseries: { timeField: 'timestamp', metaField: 'metadata', granularity: 'hours' },
        expireAfterSeconds: 86400,
    });
    const ts = await info('weather');
    assert.equal(ts.type, 'timeseries');
    assert.deepEqual(ts.options, {
        timeseries: { timeField: 'timestamp', metaField: 'metadata', granularity: 'hours',
                      bucketMaxSpanSeconds: 2592000 },
        expireAfterSeconds: 86400,
    });
    assert.equal(ts.info.readOnly, false);
    const b = await info('system.buckets.weather');
    assert.equal(b.type, 'collection');
    assert.equal(b.options.clusteredIndex, true);
    assert.deepEqual(b.options.timeseries, ts.options.timeseries);
    assert.equal(b.options.expireAfterSeconds, 86400);
    const types = await db.listCollections({ type: 'timeseries' }, { nameOnly: true }).toArray();
    assert.deepEqual(types.map((i) => i.name), ['weather']);
});

h.test('defaults: granularity "seconds" with a one-hour span; custom bucketing has no granularity', async () => {
    await db.createCollection('plain', { timeseries: { timeField: 't' } });
    assert.deepEqual((await info('plain')).options,
                     { timeseries: { timeField: 't', granularity: 'seconds', bucketMaxSpanSeconds: 3600 } });
    await db.createCollection('minutes', { timeseries: { timeField: 't', granularity: 'minutes' } });
    assert.equal((await info('minutes')).options.timeseries.bucketMaxSpanSeconds, 86400);
    await db.createCollection('custom', { timeseries: { timeField: 't', bucketMaxSpanSeconds: 4000,
                                                        bucketRoundingSeconds: 4000 } });
    assert.deepEqual((await info('custom')).options.timeseries,
                     { timeField: 't', bucketRoundingSeconds: 4000, bucketMaxSpanSeconds: 4000 });
    /* a granularity with its own default span is accepted */
    await db.createCollection('hours2', { timeseries: { timeField: 't', granularity: 'hours',
                                                        bucketMaxSpanSeconds: 2592000 } });
    for (const n of ['plain', 'minutes', 'custom', 'hours2']) await db.collection(n).drop();
});

h.test('create again with identical options succeeds; different options or another kind is 48', async () => {
    await db.createCollection('again', { timeseries: { timeField: 't', metaField: 'm' } });
    await db.command({ create: 'again', timeseries: { timeField: 't', metaField: 'm' } });
    await h.expectCode(db.command({ create: 'again', timeseries: { timeField: 't' } }), 48);
    await h.expectCode(db.command({ create: 'again' }), 48);
    await db.createCollection('ordinary');
    await h.expectCode(db.command({ create: 'ordinary', timeseries: { timeField: 't' } }), 48);
    assert.ok(!(await names()).includes('system.buckets.ordinary'));
    await db.collection('again').drop();
    await db.collection('ordinary').drop();
});

h.test('invalid timeseries options get mongod\'s codes and create nothing', async () => {
    const bad = [
        [{ timeseries: '' }, 14],
        [{ timeseries: { timeField: 100 } }, 14],
        [{ timeseries: { timeField: 't', metaField: 100 } }, 14],
        [{ timeseries: {} }, 40414],
        [{ timeseries: { timeField: 't', invalidOption: {} } }, 40415],
        [{ timeseries: { timeField: 'sub.t' } }, 72],
        [{ timeseries: { timeField: 't', metaField: 'sub.m' } }, 72],
        [{ timeseries: { timeField: 't', metaField: 't' } }, 72],
        [{ timeseries: { timeField: '\0t' } }, 2],
        [{ timeseries: { timeField: 't', granularity: 'days' } }, 2],
        [{ timeseries: { timeField: 't', bucketMaxSpanSeconds: 10 } }, 72],
        [{ timeseries: { timeField: 't', bucketRoundingSeconds: 10 } }, 72],
        [{ timeseries: { timeField: 't', bucketMaxSpanSeconds: 100, bucketRoundingSeconds: 50 } }, 72],
        [{ timeseries: { timeField: 't', granularity: 'minutes', bucketMaxSpanSeconds: 3600 } }, 72],
        [{ timeseries: { timeField: 't', granularity: 'seconds', bucketMaxSpanSeconds: 3600,
                         bucketRoundingSeconds: 60 } }, 72],
        [{ timeseries: { timeField: 't', bucketMaxSpanSeconds: -1, bucketRoundingSeconds: -1 } }, 51024],
        [{ timeseries: { timeField: 't', bucketMaxSpanSeconds: 31536001,
                         bucketRoundingSeconds: 31536001 } }, 51024],
        [{ timeseries: { timeField: 't' }, expireAfterSeconds: -10 }, 72],
        [{ timeseries: { timeField: 't' }, expireAfterSeconds: '' }, 14],
        [{ timeseries: { timeField: 't' }, capped: true, size: 100 }, 72],
        [{ timeseries: { timeField: 't' }, validator: {} }, 72],
        [{ timeseries: { timeField: 't' }, viewOn: 'coll', pipeline: [] }, 72],
        [{ timeseries: { timeField: 't' }, clusteredIndex: true }, 72],
    ];
    for (const [opts, code] of bad)
        await h.expectCode(db.command({ create: 'bad', ...opts }), code);
    const all = await names();
    assert.ok(!all.includes('bad') && !all.includes('system.buckets.bad'), all.join());
});

/* ---- time-series: inserts and reads ---- */

h.test('insertMany keeps duplicate _ids and generates ObjectIds; reads return the measurements as inserted', async () => {
    const w = db.collection('weather');
    const docs = [
        { _id: 1, timestamp: at(0), metadata: { sensorId: 5578, type: 'temperature' }, temp: 12 },
        { _id: 1, timestamp: at(60), metadata: { sensorId: 5578, type: 'temperature' }, temp: 11 },
        { timestamp: at(120), metadata: { sensorId: 5579, type: 'temperature' }, temp: 13 },
        { timestamp: at(180), temp: 14 }, /* the metaField may be missing */
    ];
    const r = await w.insertMany(docs.map((d) => ({ ...d })));
    assert.equal(r.insertedCount, 4);
    const back = await w.find({}).sort({ timestamp: 1 }).toArray();
    assert.equal(back.length, 4);
    assert.deepEqual(back.slice(0, 2), docs.slice(0, 2));
    assert.ok(back[2]._id instanceof ObjectId && back[3]._id instanceof ObjectId);
    assert.deepEqual({ ...back[2], _id: undefined }, { ...docs[2], _id: undefined });
    assert.deepEqual(await w.find({ _id: 1 }, { projection: { _id: 0, temp: 1 } }).sort({ temp: 1 }).toArray(),
                     [{ temp: 11 }, { temp: 12 }]);
    assert.equal(await w.countDocuments({ 'metadata.sensorId': 5578 }), 2);
    assert.equal(await w.estimatedDocumentCount(), 4);
    assert.deepEqual((await w.distinct('metadata.sensorId')).sort(), [5578, 5579]);
    const agg = await w.aggregate([
        { $match: { timestamp: { $gte: at(60) } } },
        { $group: { _id: null, total: { $sum: '$temp' }, n: { $sum: 1 } } },
    ]).toArray();
    assert.deepEqual(agg, [{ _id: null, total: 38, n: 3 }]);
});

h.test('each measurement is one bucket document in system.buckets', async () => {
    const buckets = await db.collection('system.buckets.weather').find({}).toArray();
    assert.equal(buckets.length, 4);
    const b = buckets[0];
    assert.ok(b._id instanceof ObjectId);
    assert.deepEqual(b.control, { version: 1, min: { timestamp: at(0) }, max: { timestamp: at(0) } });
    assert.deepEqual(b.meta, { sensorId: 5578, type: 'temperature' });
    assert.deepEqual(b.data, { _id: 1, timestamp: at(0), metadata: { sensorId: 5578, type: 'temperature' }, temp: 12 });
    assert.ok(!('meta' in buckets[3]), 'no meta when the measurement has none');
});

h.test('the time field must be a date: write error 2, ordered stops, unordered goes on', async () => {
    const w = db.collection('weather');
    const before = await w.countDocuments({});
    let e = await h.expectCode(w.insertOne({ temp: 1 }), 2);
    assert.match(e.message, /'timestamp' must be present and contain a valid BSON UTC datetime value/);
    e = await h.expectCode(w.insertMany([{ timestamp: at(300), temp: 20 }, { timestamp: 'noon', temp: 21 },
                                       { timestamp: at(301), temp: 22 }]), 2);
    assert.ok(e instanceof MongoBulkWriteError);
    assert.equal(e.result.insertedCount, 1);
    assert.equal(e.writeErrors[0].index, 1);
    e = await h.expectCode(w.insertMany([{ timestamp: 5, temp: 23 }, { timestamp: at(302), temp: 24 }],
                                      { ordered: false }), 2);
    assert.equal(e.result.insertedCount, 1);
    assert.equal(await w.countDocuments({}), before + 2);
    assert.deepEqual((await w.find({ temp: { $gte: 20 } }).toArray()).map((d) => d.temp).sort(), [20, 24]);
});

h.test('findAndModify is 166 as on a view (7.0 runs it on collections only); index commands 238; listIndexes is empty; rename is 20', async () => {
    const w = db.collection('weather');
    const before = await w.find({}).sort({ timestamp: 1 }).toArray();
    for (const op of [() => w.findOneAndUpdate({}, { $set: { 'metadata.x': 1 } }),
                      () => w.findOneAndDelete({}), () => w.findOneAndReplace({}, { timestamp: at(0) })]) {
        const e = await h.expectCode(op(), 166);
        assert.match(e.message, /Namespace ts\.weather is a view, not a collection/);
    }
    const e = await h.expectCode(w.createIndex({ temp: 1 }), 238);
    assert.match(e.message, /time-series collection ts\.weather/);
    assert.deepEqual(await w.find({}).sort({ timestamp: 1 }).toArray(), before);
    assert.deepEqual((await db.command({ listIndexes: 'weather' })).cursor.firstBatch, []);
    await h.expectCode(client.db('admin').command({ renameCollection: 'ts.weather', to: 'ts.w2' }), 20);
    await h.expectCode(client.db('admin').command({ renameCollection: 'ts.system.buckets.weather',
                                                  to: 'ts.w2' }), 20);
});

/* ---- time-series: deletes and updates (MongoDB 7.0: deletes take any filter, deleteOne
 * included; updates only multi, no upsert, on the metaField with operators) ---- */

const sensorDocs = () => [
    { _id: 1, timestamp: at(0), metadata: { sensorId: 5578, type: 'temperature' }, temp: 12, unit: 'C' },
    { _id: 1, timestamp: at(60), metadata: { sensorId: 5578, type: 'temperature' }, temp: 11, unit: 'c' },
    { _id: 2, timestamp: at(120), metadata: { sensorId: 5578, type: 'temperature' }, temp: 11, unit: 'F' },
    { _id: 3, timestamp: at(180), metadata: { sensorId: 5579, type: 'temperature' }, temp: 12, unit: 'C' },
    { _id: 4, timestamp: at(240), metadata: { sensorId: 5579, type: 'temperature' }, temp: 15, unit: 'F' },
    { _id: 5, timestamp: at(300), metadata: { sensorId: 5580, type: 'humidity' }, temp: 40, unit: '%' },
];

async function sensors(opts = { timeField: 'timestamp', metaField: 'metadata' }) {
    await db.collection('sensors').drop().catch(() => {});
    await db.createCollection('sensors', { timeseries: opts });
    const s = db.collection('sensors');
    await s.insertMany(sensorDocs());
    return s;
}

const temps = async (s) => (await s.find({}).sort({ timestamp: 1 }).toArray()).map((d) => d.temp);

h.test('deleteMany with a filter on measurement fields removes exactly the matching measurements', async () => {
    const s = await sensors();
    let r = await s.deleteMany({ temp: { $lt: 12 } });
    assert.equal(r.deletedCount, 2);
    assert.deepEqual(await temps(s), [12, 12, 15, 40]);
    /* the time field and the metaField together */
    r = await s.deleteMany({ timestamp: { $gte: at(180) }, 'metadata.sensorId': 5579 });
    assert.equal(r.deletedCount, 2);
    assert.deepEqual(await temps(s), [12, 40]);
    /* one bucket per measurement: the buckets went with them */
    assert.equal(await db.collection('system.buckets.sensors').countDocuments({}), 2);
    r = await s.deleteMany({});
    assert.equal(r.deletedCount, 2);
    assert.equal(await s.countDocuments({}), 0);
    assert.equal(await db.collection('system.buckets.sensors').countDocuments({}), 0);
});

h.test('deleteMany counts measurements sharing an _id; deleteOne removes one; $expr and collation work', async () => {
    const s = await sensors();
    assert.equal((await s.deleteMany({ _id: 1 })).deletedCount, 2);
    assert.equal((await s.deleteOne({ 'metadata.sensorId': 5579 })).deletedCount, 1);
    assert.deepEqual(await temps(s), [11, 15, 40]);
    assert.equal((await s.deleteOne({ temp: 99 })).deletedCount, 0);
    assert.equal((await s.deleteMany({ $expr: { $gt: ['$temp', 20] } })).deletedCount, 1);
    assert.deepEqual(await temps(s), [11, 15]);
    /* strength 2: 'f' equals 'F' */
    await s.insertMany(sensorDocs());
    assert.equal((await s.deleteMany({ unit: 'f' }, { collation: { locale: 'en', strength: 2 } })).deletedCount, 4);
    assert.equal((await s.deleteMany({ unit: 'c' })).deletedCount, 1);
    assert.deepEqual(await temps(s), [12, 12, 40]);
});

h.test('delete statements: ordered stops at a bad statement, unordered goes on; n counts measurements', async () => {
    const s = await sensors();
    let r = await db.command({ delete: 'sensors', ordered: true, deletes: [
        { q: { temp: 11 }, limit: 0 }, { q: {}, limit: 5 }, { q: { temp: 12 }, limit: 0 }] }).catch((e) => e);
    assert.equal(r.n, 2);
    assert.equal(r.writeErrors.length, 1);
    assert.equal(r.writeErrors[0].index, 1);
    assert.equal(r.writeErrors[0].code, 9);
    assert.deepEqual(await temps(s), [12, 12, 15, 40]);
    r = await db.command({ delete: 'sensors', ordered: false, deletes: [
        { q: { temp: 15 }, limit: 1 }, { q: {}, limit: 5 }, { q: { temp: 12 }, limit: 0 }] });
    assert.equal(r.n, 3);
    assert.equal(r.writeErrors[0].index, 1);
    assert.deepEqual(await temps(s), [40]);
});

h.test('updateMany on the metaField updates the measurements and their buckets\' meta', async () => {
    const s = await sensors();
    let r = await s.updateMany({ 'metadata.sensorId': 5578 }, { $set: { 'metadata.type': 'temp' } });
    assert.equal(r.matchedCount, 3);
    assert.equal(r.modifiedCount, 3);
    const back = await s.find({ 'metadata.sensorId': 5578 }).sort({ timestamp: 1 }).toArray();
    const want = sensorDocs().slice(0, 3).map((d) => ({ ...d, metadata: { sensorId: 5578, type: 'temp' } }));
    assert.deepEqual(back, want);
    const b = await db.collection('system.buckets.sensors').find({ 'meta.sensorId': 5578 }).toArray();
    assert.equal(b.length, 3);
    for (const x of b) {
        assert.deepEqual(x.meta, { sensorId: 5578, type: 'temp' });
        assert.deepEqual(x.control.min, { timestamp: x.data.timestamp });
    }
    /* matched but unchanged */
    r = await s.updateMany({ 'metadata.sensorId': 5578 }, { $set: { 'metadata.type': 'temp' } });
    assert.equal(r.matchedCount, 3);
    assert.equal(r.modifiedCount, 0);
    /* $rename within the metaField, $and / $or over metaField paths */
    r = await s.updateMany({ $or: [{ 'metadata.sensorId': 5579 }, { metadata: { sensorId: 5580, type: 'humidity' } }] },
                           { $rename: { 'metadata.type': 'metadata.kind' } });
    assert.equal(r.modifiedCount, 3);
    assert.deepEqual((await s.findOne({ _id: 5 })).metadata, { sensorId: 5580, kind: 'humidity' });
    /* $unset of the whole metaField: the bucket has no meta any more */
    r = await s.updateMany({ 'metadata.sensorId': 5580 }, { $unset: { metadata: '' } });
    assert.equal(r.modifiedCount, 1);
    assert.ok(!('metadata' in (await s.findOne({ _id: 5 }))));
    const b5 = await db.collection('system.buckets.sensors').findOne({ 'data._id': 5 });
    assert.ok(!('meta' in b5));
    assert.deepEqual(await temps(s), [12, 11, 11, 12, 15, 40]);
});

h.test('updates 7.0 refuses are write errors 72 with mongod\'s messages and change nothing', async () => {
    const s = await sensors();
    const before = await s.find({}).sort({ timestamp: 1 }).toArray();
    const refused = [
        [() => s.updateOne({ 'metadata.sensorId': 5578 }, { $set: { 'metadata.type': 't' } }),
         /Cannot perform a non-multi update on a time-series collection/],
        [() => s.replaceOne({ 'metadata.sensorId': 5578 }, { timestamp: at(0) }),
         /Cannot perform a non-multi update on a time-series collection/],
        [() => s.updateMany({ 'metadata.sensorId': 1 }, { $set: { 'metadata.type': 't' } }, { upsert: true }),
         /Cannot perform an upsert on a time-series collection/],
        [() => s.updateMany({ temp: 12 }, { $set: { 'metadata.type': 't' } }),
         /when querying on a field that is not the metaField 'metadata'/],
        [() => s.updateMany({ $and: [{ 'metadata.sensorId': 5578 }, { temp: 12 }] }, { $set: { 'metadata.type': 't' } }),
         /when querying on a field that is not the metaField 'metadata'/],
        [() => s.updateMany({ $expr: { $eq: ['$metadata.sensorId', 5578] } }, { $set: { 'metadata.type': 't' } }),
         /Cannot use \$expr when performing an update or delete on a time-series collection/],
        [() => s.updateMany({ $where: 'true' }, { $set: { 'metadata.type': 't' } }),
         /Cannot use \$where when performing an update or delete on a time-series collection/],
        [() => s.updateMany({ 'metadata.sensorId': 5578 }, [{ $set: { 'metadata.type': 't' } }]),
         /using a pipeline update/],
        [() => s.updateMany({}, { $set: { temp: 0 } }),
         /which updates a field that is not the metaField 'metadata'/],
        [() => s.updateMany({}, { $set: { timestamp: at(1) } }),
         /which updates a field that is not the metaField 'metadata'/],
        [() => s.updateMany({}, { $rename: { 'metadata.type': 'kind' } }),
         /which updates a field that is not the metaField 'metadata'/],
    ];
    for (const [op, msg] of refused) {
        const e = await h.expectCode(op(), 72);
        assert.match(e.message, msg);
    }
    /* a replacement with multi: true, sent as a raw command */
    let r = await db.command({ update: 'sensors', updates: [{ q: {}, u: { timestamp: at(0) }, multi: true }] });
    assert.equal(r.writeErrors[0].code, 72);
    assert.match(r.writeErrors[0].errmsg, /using a replacement document/);
    /* ordered stops at the refused statement, unordered goes on */
    const upd = (id, multi) => ({ q: { 'metadata.sensorId': id }, u: { $set: { 'metadata.seen': true } }, multi });
    r = await db.command({ update: 'sensors', updates: [upd(5578, true), upd(5579, false), upd(5580, true)] });
    assert.equal(r.n, 3);
    assert.equal(r.nModified, 3);
    assert.equal(r.writeErrors.length, 1);
    assert.equal(r.writeErrors[0].index, 1);
    assert.equal(r.writeErrors[0].code, 72);
    assert.equal(await s.countDocuments({ 'metadata.seen': true }), 3);
    r = await db.command({ update: 'sensors', ordered: false,
                           updates: [upd(5578, true), upd(5579, false), upd(5580, true)] });
    assert.equal(r.n, 4);
    assert.equal(r.nModified, 1);
    assert.equal(await s.countDocuments({ 'metadata.seen': true }), 4);
    const after = (await s.find({}).sort({ timestamp: 1 }).toArray())
        .map((d) => { const m = { ...d.metadata }; delete m.seen; return { ...d, metadata: m }; });
    assert.deepEqual(after, before);
});

h.test('a time-series collection without a metaField refuses every update (72) and deletes by any filter', async () => {
    const s = await sensors({ timeField: 'timestamp' });
    const e = await h.expectCode(s.updateMany({}, { $set: { temp: 0 } }), 72);
    assert.match(e.message, /Cannot perform an update on a time-series collection that does not have a metaField/);
    assert.equal((await s.deleteMany({ 'metadata.sensorId': 5578 })).deletedCount, 3);
    assert.equal(await s.countDocuments({}), 3);
    await s.drop();
});

h.test('collMod sets expireAfterSeconds on the collection and its buckets; bucketing changes are 238', async () => {
    await db.command({ collMod: 'weather', expireAfterSeconds: 3600 });
    assert.equal((await info('weather')).options.expireAfterSeconds, 3600);
    assert.equal((await info('system.buckets.weather')).options.expireAfterSeconds, 3600);
    await h.expectCode(db.command({ collMod: 'weather', expireAfterSeconds: -1 }), 72);
    await h.expectCode(db.command({ collMod: 'weather', timeseries: { granularity: 'hours' } }), 238);
    await h.expectCode(db.command({ collMod: 'weather', validator: {} }), 72);
});

/* ---- clustered collections ---- */

h.test('create with clusteredIndex: listCollections shows the option, listIndexes the clustered index', async () => {
    await db.createCollection('orders', { clusteredIndex: { key: { _id: 1 }, unique: true } });
    const o = await info('orders');
    assert.equal(o.type, 'collection');
    assert.deepEqual(o.options, { clusteredIndex: { key: { _id: 1 }, unique: true, name: '_id_', v: 2 } });
    assert.ok(!('idIndex' in o), 'a clustered collection has no separate _id index');
    await db.createCollection('named', { clusteredIndex: { key: { _id: 1 }, unique: true, name: 'by id', v: 2 },
                                         expireAfterSeconds: 60 });
    const n = await info('named');
    assert.deepEqual(n.options.clusteredIndex, { key: { _id: 1 }, unique: true, name: 'by id', v: 2 });
    assert.equal(n.options.expireAfterSeconds, 60);
    await db.collection('named').createIndex({ a: 1 });
    const idx = await db.collection('named').listIndexes().toArray();
    assert.deepEqual(idx, [{ v: 2, key: { _id: 1 }, name: 'by id', unique: true, clustered: true },
                           { v: 2, key: { a: 1 }, name: 'a_1' }]);
    await db.collection('named').drop();
});

h.test('a clustered collection stores and finds by _id like any other; duplicates are 11000', async () => {
    const o = db.collection('orders');
    await o.insertMany([{ _id: 3, item: 'c' }, { _id: 1, item: 'a' }]);
    await h.expectCode(o.insertOne({ _id: 1, item: 'dup' }), 11000);
    assert.deepEqual(await o.findOne({ _id: 1 }), { _id: 1, item: 'a' });
    await o.updateOne({ _id: 3 }, { $set: { item: 'C' } });
    assert.deepEqual(await o.find({}).sort({ _id: 1 }).toArray(), [{ _id: 1, item: 'a' }, { _id: 3, item: 'C' }]);
});

h.test('invalid clusteredIndex options get mongod\'s codes', async () => {
    const ci = (spec, extra = {}) => db.command({ create: 'badc', clusteredIndex: spec, ...extra });
    await h.expectCode(ci({ key: { _id: 1 }, unique: false }), 5979700);
    await h.expectCode(ci({ key: { _id: 1 } }), 40414);
    await h.expectCode(ci({ unique: true }), 40414);
    await h.expectCode(ci({ key: { a: 1 }, unique: true }), 197);
    await h.expectCode(ci({ key: { _id: -1 }, unique: true }), 197);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true, randField: 1 }), 40415);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true, v: 12345 }), 5979704);
    await h.expectCode(ci('yes'), 5979702);
    await h.expectCode(ci(true), 5979703);
    await h.expectCode(db.command({ create: 'system.buckets.badc', clusteredIndex: { key: { _id: 1 }, unique: true } }),
                     5979703);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true }, { viewOn: 'orders' }), 6026500);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true }, { autoIndexId: false }), 6026501);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true }, { expireAfterSeconds: -10 }), 72);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true }, { size: 10 }), 6049200);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true }, { capped: true, max: 10 }), 6049204);
    await h.expectCode(ci({ key: { _id: 1 }, unique: true }, { capped: true }), 6049201);
    await h.expectCode(ci(false, { expireAfterSeconds: 5 }), 72);
    await h.expectCode(db.command({ create: 'badc', expireAfterSeconds: 5 }), 72);
    assert.ok(!(await names()).includes('badc'));
    /* clusteredIndex: false is an ordinary collection */
    await db.command({ create: 'unclustered', clusteredIndex: false });
    assert.deepEqual((await info('unclustered')).options, {});
    assert.equal((await db.collection('unclustered').listIndexes().toArray())[0].name, '_id_');
});

/* ---- durability, drop ---- */

h.test('time-series and clustered collections survive checkpoints and a restart', async () => {
    const before = await db.collection('weather').find({}).sort({ timestamp: 1 }).toArray();
    const tsInfo = await info('weather');
    const ck = (await client.db('admin').command({ serverStatus: 1 })).nedb.checkpoints;
    assert.ok(Number(ck.written) >= 1, 'a checkpoint was written');
    await client.close();
    await srv.stop({ keep: true });
    firstDir = srv.dir;
    srv = await h.startServer({ dbpath: srv.dbpath });
    await connect();
    assert.deepEqual(await info('weather'), tsInfo);
    assert.deepEqual(await db.collection('weather').find({}).sort({ timestamp: 1 }).toArray(), before);
    await db.collection('weather').insertOne({ timestamp: at(400), temp: 30 });
    assert.equal(await db.collection('weather').countDocuments({}), before.length + 1);
    assert.deepEqual((await info('orders')).options.clusteredIndex,
                     { key: { _id: 1 }, unique: true, name: '_id_', v: 2 });
    assert.equal((await db.collection('orders').listIndexes().toArray())[0].clustered, true);
});

h.test('drop of a time-series collection drops its buckets too', async () => {
    assert.equal(await db.collection('weather').drop(), true);
    const all = await names();
    assert.ok(!all.includes('weather') && !all.includes('system.buckets.weather'), all.join());
    assert.deepEqual(await db.collection('weather').find({}).toArray(), []);
    /* the name is free for an ordinary collection again */
    await db.collection('weather').insertOne({ _id: 1 });
    assert.equal((await info('weather')).type, 'collection');
});

h.run();
