'use strict';
/*
 * test_ttl.js: the TTL monitor (wire/wire_ttl.c) through the node driver and mongoose, with
 * nedbd started with --setParameter ttlMonitorSleepSecs=1. What expires is MongoDB 7.0's
 * rule ("TTL Indexes"): a date, or an array holding dates (the earliest counts), at or
 * before now - expireAfterSeconds; a missing field or a value that is not a date never
 * expires; a partial TTL index deletes only what its filter covers; a hidden one still
 * deletes; collMod changes the delay; time-series collections expire measurements by their
 * timeField and clustered collections by a date _id. The deletes are ordinary ops: history
 * (asOf before them) still shows the documents. serverStatus metrics.ttl counts passes and
 * deleted documents; setParameter ttlMonitorEnabled: false stops the passes.
 *
 * Timing: nothing is asserted tighter than "after N more passes" (serverStatus
 * metrics.ttl.passes), with generous time limits: the machines are noisy.
 */
const assert = require('assert/strict');
const { MongoClient, Long } = require('mongodb');
const mongoose = require('mongoose');
const h = require('./lib/server');

let srv;
let client;
let db;
let admin;

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
const ago = (ms) => new Date(Date.now() - ms);
const ahead = (ms) => new Date(Date.now() + ms);

async function ttlMetrics() {
    const s = await admin.command({ serverStatus: 1 }, { promoteLongs: false });
    return s.metrics.ttl;
}

/* Waits until the monitor has run `n` more whole passes than now (a pass that is under way
 * when this is called does not count as one of them, so the documents written before the
 * call have been looked at by at least n - 1 passes that started after them). */
async function passes(n = 3) {
    const start = Number((await ttlMetrics()).passes);
    const deadline = Date.now() + 60000 + n * 5000;
    for (;;) {
        const now = Number((await ttlMetrics()).passes);
        if (now >= start + n) return now;
        if (Date.now() > deadline) assert.fail(`the TTL monitor ran ${now - start} of ${n} passes in time`);
        await h.sleep(200);
    }
}

const ids = async (c) => (await c.find({}, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()).map((d) => d._id);

async function fails(p) {
    try {
        await p;
    } catch (e) {
        return e;
    }
    assert.fail('expected an error');
}

h.before(async () => {
    srv = await h.startServer({ args: ['--setParameter', 'ttlMonitorSleepSecs=1'] });
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('ttl');
    admin = client.db('admin');
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
});

h.test('getParameter shows the command line (ttlMonitorSleepSecs 1) and the default ttlMonitorEnabled', async () => {
    const r = await admin.command({ getParameter: 1, ttlMonitorSleepSecs: 1, ttlMonitorEnabled: 1 });
    assert.equal(r.ttlMonitorSleepSecs, 1);
    assert.equal(r.ttlMonitorEnabled, true);
    const all = await admin.command({ getParameter: '*' });
    assert.equal(all.ttlMonitorSleepSecs, 1);
});

h.test('serverStatus metrics.ttl has deletedDocuments and passes as int64, and passes go up', async () => {
    const m = await ttlMetrics();
    assert.ok(m.deletedDocuments instanceof Long, 'deletedDocuments is an int64');
    assert.ok(m.passes instanceof Long, 'passes is an int64');
    const before = Number(m.passes);
    const after = await passes(2);
    assert.ok(after >= before + 2);
});

h.test('expired dates go; future dates, missing fields and non-dates stay', async () => {
    const c = db.collection('sessions');
    await c.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 });
    await c.insertMany([
        { _id: 1, expiresAt: ago(60 * 1000) },           // expired a minute ago
        { _id: 2, expiresAt: ahead(DAY) },               // tomorrow
        { _id: 3 },                                      // no field
        { _id: 4, expiresAt: ago(DAY).toISOString() },   // a string, not a date
        { _id: 5, expiresAt: ago(DAY).getTime() },       // a number
        { _id: 6, expiresAt: null },
        { _id: 7, expiresAt: ago(DAY) },
    ]);
    await passes(3);
    assert.deepEqual(await ids(c), [2, 3, 4, 5, 6]);
});

h.test('expireAfterSeconds counts from the date: an hour-long TTL keeps 10 minutes old, not 2 hours old', async () => {
    const c = db.collection('events');
    await c.createIndex({ at: 1 }, { expireAfterSeconds: 3600 });
    await c.insertMany([{ _id: 1, at: ago(2 * HOUR) }, { _id: 2, at: ago(10 * 60 * 1000) }]);
    await passes(3);
    assert.deepEqual(await ids(c), [2]);
});

h.test('arrays: the earliest date counts; an array without a date never expires', async () => {
    const c = db.collection('arrays');
    await c.createIndex({ d: 1 }, { expireAfterSeconds: 60 });
    await c.insertMany([
        { _id: 1, d: [ahead(DAY), ago(HOUR)] },          // the earliest is expired
        { _id: 2, d: [ahead(DAY), ahead(2 * DAY)] },
        { _id: 3, d: ['x', 5, ago(HOUR)] },              // holds one expired date
        { _id: 4, d: [] },
        { _id: 5, d: ['2000-01-01', 1] },
        { _id: 6, d: [[ago(HOUR)]] },                    // a nested array is not a date key
    ]);
    await passes(3);
    assert.deepEqual(await ids(c), [2, 4, 5, 6]);
});

h.test('a dotted path reaches dates in subdocuments and arrays of them', async () => {
    const c = db.collection('nested');
    await c.createIndex({ 'a.b': 1 }, { expireAfterSeconds: 0 });
    await c.insertMany([
        { _id: 1, a: { b: ago(HOUR) } },
        { _id: 2, a: [{ b: ahead(DAY) }, { b: ago(HOUR) }] },
        { _id: 3, a: [{ b: ahead(DAY) }] },
        { _id: 4, a: { c: ago(HOUR) } },
    ]);
    await passes(3);
    assert.deepEqual(await ids(c), [3, 4]);
});

h.test('a partial TTL index deletes only what its filter covers', async () => {
    const c = db.collection('partial');
    await c.createIndex({ t: 1 }, { expireAfterSeconds: 0, partialFilterExpression: { kind: 'temp' } });
    await c.insertMany([
        { _id: 1, kind: 'temp', t: ago(HOUR) },
        { _id: 2, kind: 'keep', t: ago(HOUR) },
        { _id: 3, t: ago(HOUR) },
        { _id: 4, kind: 'temp', t: ahead(DAY) },
    ]);
    await passes(3);
    assert.deepEqual(await ids(c), [2, 3, 4]);
});

h.test('a hidden TTL index still expires documents; a compound index ignores expireAfterSeconds', async () => {
    const hidden = db.collection('hidden');
    await hidden.createIndex({ t: 1 }, { expireAfterSeconds: 0, hidden: true });
    const listed = (await hidden.listIndexes().toArray()).find((i) => i.name === 't_1');
    assert.equal(listed.hidden, true);
    await hidden.insertMany([{ _id: 1, t: ago(HOUR) }, { _id: 2, t: ahead(DAY) }]);
    const compound = db.collection('compound');
    await compound.createIndex({ t: 1, u: 1 }, { expireAfterSeconds: 0 });
    await compound.insertMany([{ _id: 1, t: ago(HOUR), u: 1 }]);
    await passes(3);
    assert.deepEqual(await ids(hidden), [2]);
    assert.deepEqual(await ids(compound), [1]);
});

h.test('collMod lowering expireAfterSeconds expires what the old value kept', async () => {
    const c = db.collection('collmod');
    await c.createIndex({ t: 1 }, { expireAfterSeconds: 3600 });
    await c.insertMany([{ _id: 1, t: ago(10 * 60 * 1000) }, { _id: 2, t: ahead(DAY) }]);
    await passes(3);
    assert.deepEqual(await ids(c), [1, 2]);
    const r = await db.command({ collMod: 'collmod', index: { keyPattern: { t: 1 }, expireAfterSeconds: 60 } });
    assert.equal(r.expireAfterSeconds_old, 3600);
    assert.equal(r.expireAfterSeconds_new, 60);
    await passes(3);
    assert.deepEqual(await ids(c), [2]);
});

h.test('a time-series collection with expireAfterSeconds expires measurements by their timeField', async () => {
    await db.createCollection('weather', {
        timeseries: { timeField: 'ts', metaField: 'sensor' },
        expireAfterSeconds: 3600,
    });
    const c = db.collection('weather');
    await c.insertMany([
        { _id: 1, ts: ago(2 * HOUR), sensor: 'a', temp: 10 },
        { _id: 2, ts: ago(60 * 1000), sensor: 'a', temp: 11 },
        { _id: 3, ts: ago(3 * HOUR), sensor: 'b', temp: 12 },
    ]);
    await passes(3);
    assert.deepEqual((await c.find().toArray()).map((d) => d.temp), [11]);
    // collMod lowers it: the minute-old one goes too
    await db.command({ collMod: 'weather', expireAfterSeconds: 1 });
    await passes(3);
    assert.equal(await c.countDocuments(), 0);
});

h.test('a clustered collection with expireAfterSeconds expires by a date _id', async () => {
    await db.createCollection('clustered', {
        clusteredIndex: { key: { _id: 1 }, unique: true },
        expireAfterSeconds: 60,
    });
    const c = db.collection('clustered');
    const old = ago(HOUR);
    const fresh = ahead(DAY);
    await c.insertMany([{ _id: old }, { _id: fresh }, { _id: 7 }]);
    await passes(3);
    const left = await ids(c);
    assert.deepEqual(left.map((v) => (v instanceof Date ? v.getTime() : v)), [7, fresh.getTime()]);
});

h.test('history keeps the expired documents: asOf before the delete still shows them', async () => {
    const c = db.collection('history');
    await c.createIndex({ t: 1 }, { expireAfterSeconds: 0 });
    await c.insertMany([{ _id: 1, t: ago(HOUR), note: 'gone' }, { _id: 2, t: ahead(DAY) }]);
    const seq = Number((await admin.command({ serverStatus: 1 })).nedb.committedSeq);
    await passes(3);
    assert.deepEqual(await ids(c), [2]);
    const past = await db.command({ find: 'history', filter: {}, sort: { _id: 1 }, asOf: seq });
    assert.deepEqual(past.cursor.firstBatch.map((d) => d._id), [1, 2]);
    assert.equal(past.cursor.firstBatch[0].note, 'gone');
    // the delete was an ordinary op, sealed in the chain: it verifies
    const v = await admin.command({ nedbVerify: 1 });
    assert.equal(v.valid, true);
});

h.test('metrics.ttl.deletedDocuments counts exactly the documents deleted', async () => {
    const c = db.collection('counted');
    await c.createIndex({ t: 1 }, { expireAfterSeconds: 0 });
    await passes(2); // whatever earlier tests left has been looked at
    const before = Number((await ttlMetrics()).deletedDocuments);
    const docs = [];
    for (let i = 0; i < 25; i++) docs.push({ _id: i, t: i % 5 === 0 ? ahead(DAY) : ago(HOUR) });
    await c.insertMany(docs);
    await passes(3);
    assert.equal(await c.countDocuments(), 5);
    const after = Number((await ttlMetrics()).deletedDocuments);
    assert.equal(after - before, 20);
});

h.test('setParameter: was, errors as mongod (72, 20, 2, 13), and ttlMonitorEnabled: false stops the passes', async () => {
    let r = await admin.command({ setParameter: 1, ttlMonitorSleepSecs: 2 });
    assert.equal(r.was, 1);
    r = await admin.command({ setParameter: 1, ttlMonitorSleepSecs: 1 });
    assert.equal(r.was, 2);
    let e = await fails(admin.command({ setParameter: 1, noSuchParameter: 1 }));
    assert.equal(e.code, 72);
    assert.match(e.message, /attempted to set unrecognized parameter \[noSuchParameter\]/);
    e = await fails(admin.command({ setParameter: 1 }));
    assert.equal(e.code, 72);
    e = await fails(admin.command({ setParameter: 1, enableTestCommands: 1 }));
    assert.equal(e.code, 20);
    e = await fails(admin.command({ setParameter: 1, ttlMonitorSleepSecs: 0 }));
    assert.equal(e.code, 2);
    e = await fails(admin.command({ setParameter: 1, ttlMonitorSleepSecs: 'x' }));
    assert.equal(e.code, 2);
    e = await fails(admin.command({ setParameter: 1, ttlMonitorEnabled: 'maybe' }));
    assert.equal(e.code, 2);
    e = await fails(db.command({ setParameter: 1, ttlMonitorEnabled: false }));
    assert.equal(e.code, 13);
    // a refused setParameter changed nothing
    r = await admin.command({ getParameter: 1, ttlMonitorSleepSecs: 1, ttlMonitorEnabled: 1 });
    assert.equal(r.ttlMonitorSleepSecs, 1);
    assert.equal(r.ttlMonitorEnabled, true);

    r = await admin.command({ setParameter: 1, ttlMonitorEnabled: false });
    assert.equal(r.was, true);
    await h.sleep(1500); // a pass under way when it was switched off ends
    const c = db.collection('disabled');
    await c.createIndex({ t: 1 }, { expireAfterSeconds: 0 });
    await c.insertOne({ _id: 1, t: ago(HOUR) });
    const p0 = Number((await ttlMetrics()).passes);
    await h.sleep(4000); // four sleep intervals
    assert.equal(Number((await ttlMetrics()).passes), p0, 'no pass while disabled');
    assert.deepEqual(await ids(c), [1]);
    r = await admin.command({ setParameter: 1, ttlMonitorEnabled: true });
    assert.equal(r.was, false);
    await passes(3);
    assert.deepEqual(await ids(c), []);
});

h.test('an update moving the date into the future before the pass keeps the document', async () => {
    const c = db.collection('updated');
    await c.createIndex({ t: 1 }, { expireAfterSeconds: 0 });
    await admin.command({ setParameter: 1, ttlMonitorEnabled: false });
    await h.sleep(1500);
    await c.insertMany([{ _id: 1, t: ago(HOUR) }, { _id: 2, t: ago(HOUR) }]);
    await c.updateOne({ _id: 1 }, { $set: { t: ahead(DAY) } });
    await admin.command({ setParameter: 1, ttlMonitorEnabled: true });
    await passes(3);
    assert.deepEqual(await ids(c), [1]);
});

h.test("mongoose's `expires` schema option makes a TTL index that the monitor honours", async () => {
    const conn = mongoose.createConnection(`mongodb://127.0.0.1:${srv.port}/ttl_mongoose`, {
        serverSelectionTimeoutMS: 3000,
    });
    try {
        await conn.asPromise();
        const Session = conn.model('Session', new mongoose.Schema({
            sid: String,
            createdAt: { type: Date, expires: 60 },
        }));
        await Session.init(); // builds the schema's indexes
        const idx = (await Session.collection.listIndexes().toArray()).find((i) => i.key.createdAt === 1);
        assert.equal(idx.expireAfterSeconds, 60);
        await Session.create([{ sid: 'old', createdAt: ago(HOUR) }, { sid: 'new', createdAt: new Date() }]);
        await passes(3);
        assert.deepEqual((await Session.find().lean()).map((s) => s.sid), ['new']);
    } finally {
        await conn.close();
    }
});

h.test('nedbd refuses a bad --setParameter ttlMonitorSleepSecs or ttlMonitorEnabled at startup', () => {
    for (const p of ['ttlMonitorSleepSecs=0', 'ttlMonitorSleepSecs=x', 'ttlMonitorEnabled=maybe']) {
        const r = h.runNedbdSync(['--port', '0', '--dbpath', '/nonexistent-never-created', '--setParameter', p]);
        assert.ok(h.refused(r), `${p}: ${r.what}`);
        assert.match(r.stderr, /bad value/);
    }
});

h.test('a server started with ttlMonitorEnabled=false runs no pass', async () => {
    const other = await h.startServer({ args: ['--setParameter', 'ttlMonitorEnabled=false',
                                               '--setParameter', 'ttlMonitorSleepSecs=1'] });
    const c2 = new MongoClient(`mongodb://127.0.0.1:${other.port}/?directConnection=true`,
                               { serverSelectionTimeoutMS: 3000 });
    try {
        await c2.connect();
        const a2 = c2.db('admin');
        assert.equal((await a2.command({ getParameter: 1, ttlMonitorEnabled: 1 })).ttlMonitorEnabled, false);
        const c = c2.db('ttl').collection('off');
        await c.createIndex({ t: 1 }, { expireAfterSeconds: 0 });
        await c.insertOne({ _id: 1, t: ago(HOUR) });
        await h.sleep(3000);
        const m = (await a2.command({ serverStatus: 1 })).metrics.ttl;
        assert.equal(Number(m.passes), 0);
        assert.equal(await c.countDocuments(), 1);
    } finally {
        await c2.close();
        await other.stop();
    }
});

h.test('nedbd exits 0 on SIGTERM with the monitor running', async () => {
    await passes(1);
    await srv.stop();
    srv = null;
});

h.run();
