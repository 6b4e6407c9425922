'use strict';
/*
 * test_timeseries.js: time-series and clustered collections through the node driver
 * against a real nedbd: create with timeseries options (defaults per granularity, custom
 * bucketing, expireAfterSeconds) and their validation codes, listCollections of the
 * collection and of its system.buckets collection, inserts (duplicate _ids, generated
 * ObjectIds, the time field's check in ordered and unordered batches), reads through
 * find / count / distinct / aggregate, what is refused (update, delete, findAndModify,
 * indexes, rename), collMod expireAfterSeconds, drop; create with clusteredIndex, its
 * listCollections and listIndexes entries and its validation codes; and both kinds
 * surviving a checkpoint and a restart.
 * Expected results come from MongoDB 7.0's "Time Series" and "Clustered Collections"
 * pages, the create command's reference, and mongod's own jstests of these options
 * (jstests/core/timeseries/ddl/timeseries_create.js, bucket_span_and_rounding_seconds.js,
 * jstests/core/clustered/clustered_collection_creation.js).
 */
const assert = require('assert/strict');
const fs = require('fs');
const { MongoClient, MongoServerError, MongoBulkWriteError, ObjectId } = require('mongodb');
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

async function expectCode(promise, code) {
    let caught;
    try {
        await promise;
    } catch (e) {
        caught = e;
    }
    assert.ok(caught, `expected error ${code}, got success`);
    assert.ok(caught instanceof MongoServerError, `unexpected error ${caught}`);
    assert.equal(caught.code, code, caught.message);
    return caught;
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
    await expectCode(db.command({ create: 'again', timeseries: { timeField: 't' } }), 48);
    await expectCode(db.command({ create: 'again' }), 48);
    await db.createCollection('ordinary');
    await expectCode(db.command({ create: 'ordinary', timeseries: { timeField: 't' } }), 48);
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
        await expectCode(db.command({ create: 'bad', ...opts }), code);
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
    let e = await expectCode(w.insertOne({ temp: 1 }), 2);
    assert.match(e.message, /'timestamp' must be present and contain a valid BSON UTC datetime value/);
    e = await expectCode(w.insertMany([{ timestamp: at(300), temp: 20 }, { timestamp: 'noon', temp: 21 },
                                       { timestamp: at(301), temp: 22 }]), 2);
    assert.ok(e instanceof MongoBulkWriteError);
    assert.equal(e.result.insertedCount, 1);
    assert.equal(e.writeErrors[0].index, 1);
    e = await expectCode(w.insertMany([{ timestamp: 5, temp: 23 }, { timestamp: at(302), temp: 24 }],
                                      { ordered: false }), 2);
    assert.equal(e.result.insertedCount, 1);
    assert.equal(await w.countDocuments({}), before + 2);
    assert.deepEqual((await w.find({ temp: { $gte: 20 } }).toArray()).map((d) => d.temp).sort(), [20, 24]);
});

h.test('update, delete, findAndModify and index commands answer 238; listIndexes is empty; rename is 20', async () => {
    const w = db.collection('weather');
    const before = await w.countDocuments({});
    for (const op of [() => w.updateOne({}, { $set: { x: 1 } }), () => w.deleteMany({}),
                      () => w.findOneAndUpdate({}, { $set: { x: 1 } }), () => w.createIndex({ temp: 1 })]) {
        const e = await expectCode(op(), 238);
        assert.match(e.message, /time-series collection ts\.weather/);
    }
    assert.equal(await w.countDocuments({}), before);
    assert.deepEqual((await db.command({ listIndexes: 'weather' })).cursor.firstBatch, []);
    await expectCode(client.db('admin').command({ renameCollection: 'ts.weather', to: 'ts.w2' }), 20);
    await expectCode(client.db('admin').command({ renameCollection: 'ts.system.buckets.weather',
                                                  to: 'ts.w2' }), 20);
});

h.test('collMod sets expireAfterSeconds on the collection and its buckets; bucketing changes are 238', async () => {
    await db.command({ collMod: 'weather', expireAfterSeconds: 3600 });
    assert.equal((await info('weather')).options.expireAfterSeconds, 3600);
    assert.equal((await info('system.buckets.weather')).options.expireAfterSeconds, 3600);
    await expectCode(db.command({ collMod: 'weather', expireAfterSeconds: -1 }), 72);
    await expectCode(db.command({ collMod: 'weather', timeseries: { granularity: 'hours' } }), 238);
    await expectCode(db.command({ collMod: 'weather', validator: {} }), 72);
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
    await expectCode(o.insertOne({ _id: 1, item: 'dup' }), 11000);
    assert.deepEqual(await o.findOne({ _id: 1 }), { _id: 1, item: 'a' });
    await o.updateOne({ _id: 3 }, { $set: { item: 'C' } });
    assert.deepEqual(await o.find({}).sort({ _id: 1 }).toArray(), [{ _id: 1, item: 'a' }, { _id: 3, item: 'C' }]);
});

h.test('invalid clusteredIndex options get mongod\'s codes', async () => {
    const ci = (spec, extra = {}) => db.command({ create: 'badc', clusteredIndex: spec, ...extra });
    await expectCode(ci({ key: { _id: 1 }, unique: false }), 5979700);
    await expectCode(ci({ key: { _id: 1 } }), 40414);
    await expectCode(ci({ unique: true }), 40414);
    await expectCode(ci({ key: { a: 1 }, unique: true }), 197);
    await expectCode(ci({ key: { _id: -1 }, unique: true }), 197);
    await expectCode(ci({ key: { _id: 1 }, unique: true, randField: 1 }), 40415);
    await expectCode(ci({ key: { _id: 1 }, unique: true, v: 12345 }), 5979704);
    await expectCode(ci('yes'), 5979702);
    await expectCode(ci(true), 5979703);
    await expectCode(db.command({ create: 'system.buckets.badc', clusteredIndex: { key: { _id: 1 }, unique: true } }),
                     5979703);
    await expectCode(ci({ key: { _id: 1 }, unique: true }, { viewOn: 'orders' }), 6026500);
    await expectCode(ci({ key: { _id: 1 }, unique: true }, { autoIndexId: false }), 6026501);
    await expectCode(ci({ key: { _id: 1 }, unique: true }, { expireAfterSeconds: -10 }), 72);
    await expectCode(ci({ key: { _id: 1 }, unique: true }, { size: 10 }), 6049200);
    await expectCode(ci({ key: { _id: 1 }, unique: true }, { capped: true, max: 10 }), 6049204);
    await expectCode(ci({ key: { _id: 1 }, unique: true }, { capped: true }), 6049201);
    await expectCode(ci(false, { expireAfterSeconds: 5 }), 72);
    await expectCode(db.command({ create: 'badc', expireAfterSeconds: 5 }), 72);
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
