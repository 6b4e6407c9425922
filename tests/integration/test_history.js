'use strict';
/*
 * test_history.js: old document versions after a restart (DESIGN.md sections 5 and 6).
 * A checkpoint keeps only the newest version of each document; older ones are read back
 * from the log when a time-travel read reaches them. Reads as of every earlier op give
 * what they gave before the restart, and a log record damaged on disk after the
 * checkpoint makes the read that needs it fail with DataCorruptionDetected (301), never
 * a silently missing document; nedbVerify names that op.
 */
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');

const dbpath = fs.mkdtempSync(path.join(require('os').tmpdir(), 'nedb-history-'));
let srv;
let client;
let db;

async function start() {
    srv = await h.startServer({ dbpath });
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`);
    await client.connect();
    db = client.db('hist');
}

h.before(start);
h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) await srv.stop();
    fs.rmSync(dbpath, { recursive: true, force: true });
});

const seqs = [];
const before = new Map(); /* seq -> what find returned as of it */

h.test('reads as of every op are the same after a restart from a checkpoint', async () => {
    const put = async (cmd) => seqs.push(...(await db.command(cmd)).seqs.map(Number));
    await put({ insert: 'h', documents: [{ _id: 1, v: 'MARK_OLD_ONE' }, { _id: 2, v: 'two' }] });
    for (let k = 0; k < 5; k++) await put({ update: 'h', updates: [{ q: { _id: 2 }, u: { $set: { v: `two-${k}` } } }] });
    await put({ update: 'h', updates: [{ q: { _id: 1 }, u: { $set: { v: 'one-new' } } }] });
    await put({ delete: 'h', deletes: [{ q: { _id: 2 }, limit: 1 }] });
    for (const s of seqs) before.set(s, await db.command({ find: 'h', asOf: s }));
    await client.close();
    await srv.stop(); /* a clean stop writes a checkpoint */
    await start();
    const st = (await client.db('admin').command({ serverStatus: 1 })).nedb.checkpoints;
    assert.equal(Number(st.replayedAtOpen), 0, 'opened from the shutdown checkpoint');
    for (const s of seqs) {
        const r = await db.command({ find: 'h', asOf: s });
        assert.deepEqual(r.cursor.firstBatch, before.get(s).cursor.firstBatch, `as of ${s}`);
        const a = await db.command({ aggregate: 'h', pipeline: [{ $sort: { _id: 1 } }], cursor: {}, asOf: s });
        assert.deepEqual(a.cursor.firstBatch, before.get(s).cursor.firstBatch, `aggregate as of ${s}`);
    }
    assert.deepEqual(await db.collection("h").find().toArray(), [{ _id: 1, v: "one-new" }]);
});

h.test('a damaged old version: the read that needs it fails with 301, others still work', async () => {
    await client.close();
    await srv.stop();
    /* change one byte of the first version of _id 1 inside its log record (still BSON) */
    const logdir = path.join(dbpath, 'log');
    let hit = false;
    for (const f of fs.readdirSync(logdir)) {
        const p = path.join(logdir, f);
        const buf = fs.readFileSync(p);
        const at = buf.indexOf('MARK_OLD_ONE');
        if (at >= 0) {
            buf[at] = 'N'.charCodeAt(0);
            fs.writeFileSync(p, buf);
            hit = true;
        }
    }
    assert.ok(hit, 'the old version is in the log');
    await start();
    const first = seqs[0];
    const err = async (p) => assert.rejects(p, (e) => e.code === 301 && /hash|corrupt/i.test(e.message));
    await err(db.command({ find: 'h', asOf: first }));
    await err(db.command({ find: 'h', filter: { _id: 1 }, asOf: first }));
    await err(db.command({ aggregate: 'h', pipeline: [], cursor: {}, asOf: first }));
    await err(db.command({ count: 'h', query: { v: { $exists: true } }, asOf: first }));
    /* the damaged version is not needed here */
    assert.deepEqual((await db.command({ find: 'h', filter: { _id: 2 }, asOf: seqs[1] })).cursor.firstBatch,
                     [{ _id: 2, v: 'two' }]);
    assert.deepEqual(await db.collection('h').find().toArray(), [{ _id: 1, v: 'one-new' }]);
    const v = await client.db('admin').command({ nedbVerify: 1 });
    assert.equal(v.valid, false);
    assert.equal(Number(v.firstBadSeq), first);
});

h.run();
