'use strict';
/*
 * test_collstats.js: the collStats command and the $collStats stage through the node
 * driver. Their storage figures come from one server function, so the stage's
 * storageStats must equal the command's reply less ns (and the reply envelope) for the
 * same collection and scale; both are also checked against what the client knows
 * independently: the documents' BSON sizes (bson.calculateObjectSize), the indexes it
 * created, the capped options it gave. A missing collection: the stage fails with 26 and
 * mongod's "Unable to retrieve storageStats in $collStats stage :: caused by :: ..." while
 * the command answers zeroed figures with ok: 1 (mongod since 5.0, DOCSP-17199). On a
 * view the stage reports on the view (storageStats refused with 166, as the command is);
 * on a time-series collection storageStats describe its buckets.
 */
const assert = require('assert/strict');
const bson = require('bson');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let db;
const READ = { promoteValues: false, promoteLongs: false };

/* Runs fn, which must fail; returns the error. */
async function fails(fn) {
    try {
        await fn();
    } catch (e) {
        return e;
    }
    assert.fail('expected an error');
}

/* The command's reply without the fields every reply carries and without ns. */
async function collStatsCmd(name, scale) {
    const cmd = scale === undefined ? { collStats: name } : { collStats: name, scale };
    const r = await db.command(cmd, READ);
    const out = { ...r };
    for (const k of ['ok', 'operationTime', '$clusterTime', 'ns']) delete out[k];
    return { ns: r.ns, stats: out };
}

async function stageStats(name, spec) {
    const docs = await db.collection(name).aggregate([{ $collStats: spec }], READ).toArray();
    assert.equal(docs.length, 1);
    return docs[0];
}

const num = (v) => Number(v && typeof v === 'object' && 'value' in v ? v.value : v);

h.before(async () => {
    srv = await h.startServer();
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('cstats');
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
});

h.test('storageStats equal the collStats command for the same collection and scale', async () => {
    const c = db.collection('people');
    const docs = [];
    for (let i = 0; i < 25; i++) docs.push({ _id: i, name: `person ${i}`, tags: ['a', 'b'].slice(0, i % 3) });
    await c.insertMany(docs);
    await c.createIndexes([{ key: { name: 1 } }, { key: { tags: 1 }, name: 'by_tag' }]);
    const bytes = docs.reduce((n, d) => n + bson.calculateObjectSize(d), 0);
    for (const scale of [undefined, 1, 7, 1024]) {
        const cmd = await collStatsCmd('people', scale);
        const st = await stageStats('people', scale === undefined ? { storageStats: {} } : { storageStats: { scale } });
        assert.equal(cmd.ns, 'cstats.people');
        assert.equal(st.ns, 'cstats.people');
        assert.deepEqual(st.storageStats, cmd.stats, `scale ${scale}`);
        assert.deepEqual(Object.keys(st.storageStats), Object.keys(cmd.stats), 'same field order');
        const s = scale || 1;
        assert.equal(num(st.storageStats.scaleFactor), s);
        assert.equal(num(st.storageStats.size), Math.floor(bytes / s));
        assert.equal(num(st.storageStats.count), docs.length);
        assert.equal(num(st.storageStats.avgObjSize), Math.floor(bytes / docs.length), 'avgObjSize is not scaled');
        assert.equal(num(st.storageStats.nindexes), 3);
        assert.deepEqual(Object.keys(st.storageStats.indexSizes), ['_id_', 'name_1', 'by_tag']);
        assert.equal(st.storageStats.capped, false);
    }
});

h.test('storageStats follow writes, the same as the command', async () => {
    const c = db.collection('people');
    await c.deleteMany({ _id: { $gte: 20 } });
    await c.updateOne({ _id: 0 }, { $set: { note: 'x'.repeat(100) } });
    const all = await c.find({}).toArray();
    const bytes = all.reduce((n, d) => n + bson.calculateObjectSize(d), 0);
    const cmd = await collStatsCmd('people');
    const st = await stageStats('people', { storageStats: {}, count: {} });
    assert.deepEqual(st.storageStats, cmd.stats);
    assert.equal(num(st.storageStats.size), bytes);
    assert.equal(num(st.storageStats.count), all.length);
    assert.equal(num(st.count), all.length);
});

h.test('a capped collection reports capped, max and maxSize (scaled)', async () => {
    await db.createCollection('ring', { capped: true, size: 8192, max: 50 });
    await db.collection('ring').insertMany([{ _id: 1 }, { _id: 2 }]);
    for (const scale of [1, 4]) {
        const cmd = await collStatsCmd('ring', scale);
        const st = await stageStats('ring', { storageStats: { scale } });
        assert.deepEqual(st.storageStats, cmd.stats);
        assert.equal(st.storageStats.capped, true);
        assert.equal(num(st.storageStats.max), 50);
        assert.equal(num(st.storageStats.maxSize), 8192 / scale);
    }
});

h.test('a missing collection: the stage fails with 26, the command answers zeros', async () => {
    const e = await fails(() => db.collection('nope').aggregate([{ $collStats: { storageStats: {} } }]).toArray());
    assert.equal(e.code, 26);
    assert.match(e.message, /Unable to retrieve storageStats in \$collStats stage :: caused by :: Collection \[cstats\.nope\] not found\./);
    const ec = await fails(() => db.collection('nope').aggregate([{ $collStats: { count: {} } }]).toArray());
    assert.equal(ec.code, 26);
    assert.match(ec.message, /Unable to retrieve count in \$collStats stage :: caused by :: Collection \[cstats\.nope\] not found\./);
    const r = await db.command({ collStats: 'nope' });
    assert.equal(r.ok, 1);
    assert.equal(r.ns, 'cstats.nope');
    assert.equal(r.count, 0);
    assert.equal(r.size, 0);
    assert.equal(r.nindexes, 0);
    assert.deepEqual(r.indexSizes, {});
    /* the sections that need no collection still answer */
    const st = await stageStats('nope', { latencyStats: {}, queryExecStats: {} });
    assert.deepEqual(Object.keys(st), ['ns', 'host', 'localTime', 'latencyStats', 'queryExecStats']);
});

h.test('scale errors: 51024 below 1, 14 for a non-number, for the stage and the command', async () => {
    for (const [scale, code] of [[0, 51024], [-1, 51024], ['1024', 14], [0.5, 51024]]) {
        const e1 = await fails(() => db.collection('people').aggregate([{ $collStats: { storageStats: { scale } } }]).toArray());
        assert.equal(e1.code, code, `stage scale ${scale}`);
        const e2 = await fails(() => db.command({ collStats: 'people', scale }));
        assert.equal(e2.code, code, `command scale ${scale}`);
    }
});

h.test('latencyStats and localTime as Compass reads them', async () => {
    const before = Date.now();
    const st = await stageStats('people', { latencyStats: { histograms: true }, storageStats: {} });
    assert.deepEqual(Object.keys(st), ['ns', 'host', 'localTime', 'latencyStats', 'storageStats']);
    assert.ok(Math.abs(st.localTime.getTime() - before) < 60000);
    assert.deepEqual(Object.keys(st.latencyStats), ['reads', 'writes', 'commands', 'transactions']);
    for (const v of Object.values(st.latencyStats)) {
        assert.ok(Array.isArray(v.histogram));
        assert.equal(v.latency._bsontype, 'Long');
        assert.equal(v.ops._bsontype, 'Long');
    }
});

h.test('on a view: $collStats reports on the view itself, whose storageStats are refused (166) like the command', async () => {
    await db.createCollection('people_v', { viewOn: 'people', pipeline: [{ $match: { _id: { $lt: 5 } } }] });
    const e1 = await fails(() => db.command({ collStats: 'people_v' }));
    assert.equal(e1.code, 166);
    const e2 = await fails(() => db.collection('people_v').aggregate([{ $collStats: { storageStats: {} } }]).toArray());
    assert.equal(e2.code, 166);
    const e3 = await fails(() => db.collection('people_v').aggregate([{ $collStats: { count: {} } }]).toArray());
    assert.equal(e3.code, 166);
    const st = await stageStats('people_v', { latencyStats: {} });
    assert.equal(st.ns, 'cstats.people_v', 'not the source collection');
});

h.test('a time-series collection: storageStats describe its buckets, the same as the command', async () => {
    await db.createCollection('weather', { timeseries: { timeField: 't', metaField: 'm' } });
    const ms = [1, 2, 3].map((i) => ({ t: new Date(Date.UTC(2024, 0, 1, i)), m: { s: i % 2 }, v: i }));
    await db.collection('weather').insertMany(ms);
    const buckets = await db.collection('system.buckets.weather').find({}).toArray();
    const bytes = buckets.reduce((n, d) => n + bson.calculateObjectSize(d), 0);
    const cmd = await collStatsCmd('weather');
    const st = await stageStats('weather', { storageStats: {} });
    assert.equal(st.ns, 'cstats.weather');
    assert.deepEqual(st.storageStats, cmd.stats);
    assert.equal(st.storageStats.timeseries.bucketsNs, 'cstats.system.buckets.weather');
    assert.equal(num(st.storageStats.timeseries.bucketCount), buckets.length);
    assert.equal(num(st.storageStats.size), bytes);
    assert.equal(st.storageStats.count, undefined, 'a timeseries document in place of count');
});

h.run();
