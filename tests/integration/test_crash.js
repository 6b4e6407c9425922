'use strict';
/*
 * test_crash.js: the crash test of the NEDB store. Each cycle starts nedbd on the same data
 * directory, runs concurrent acknowledged inserts (single documents and small batches) from
 * several clients, kills nedbd with SIGKILL at a random moment, restarts it, and checks:
 *   - every write the server acknowledged is there (acknowledged = durable);
 *   - every document present is whole (its fields agree with each other), so nothing
 *     unacknowledged was half-applied;
 *   - the chain verifies, live ({nedbVerify: 1}) and offline (`nedb verify`) at the end.
 * NEDB_CRASH_CYCLES sets the number of cycles (default 20). The random schedule is seeded
 * from NEDB_CRASH_SEED (printed) so a failing run can be replayed.
 */
const assert = require('assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');

const CYCLES = Number(process.env.NEDB_CRASH_CYCLES || 20);
const WRITERS = 8;
let seed = Number(process.env.NEDB_CRASH_SEED || Date.now() % 1000000);
h.comment(`crash test seed ${seed} (NEDB_CRASH_SEED to replay)`);
function rand() { /* xorshift, deterministic from the seed */
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed / 4294967296;
}

const dbpath = fs.mkdtempSync(path.join(os.tmpdir(), 'nedb-crash-'));
const acked = new Map(); /* _id -> document the server acknowledged */

function makeDoc(cycle, w, i) {
    const _id = `${cycle}-${w}-${i}`;
    return { _id, cycle, w, i, pad: 'p'.repeat(50 + ((cycle * 31 + w * 7 + i) % 200)), check: `${cycle}:${w}:${i}` };
}

async function writer(port, cycle, w, stop) {
    const client = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`,
                                   { serverSelectionTimeoutMS: 2000, maxPoolSize: 1, retryWrites: false });
    let i = 0;
    try {
        await client.connect();
        const c = client.db('crash').collection('docs');
        while (!stop.now) {
            if (i % 5 === 4) {
                const batch = [0, 1, 2].map((k) => makeDoc(cycle, w, i + k));
                await c.insertMany(batch);
                for (const d of batch) acked.set(d._id, d);
                i += 3;
            } else {
                const d = makeDoc(cycle, w, i);
                await c.insertOne(d);
                acked.set(d._id, d);
                i += 1;
            }
        }
    } catch (e) {
        /* the kill cut this writer off: whatever was not acknowledged may or may not be there */
    } finally {
        client.close().catch(() => {});
    }
}

async function checkAll(port) {
    const client = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`,
                                   { serverSelectionTimeoutMS: 5000 });
    await client.connect();
    try {
        const docs = await client.db('crash').collection('docs').find({}).toArray();
        const present = new Map(docs.map((d) => [d._id, d]));
        let missing = 0;
        for (const id of acked.keys()) if (!present.has(id)) missing++;
        assert.equal(missing, 0, `${missing} acknowledged writes are missing`);
        for (const d of docs) {
            const want = makeDoc(d.cycle, d.w, d.i);
            assert.deepEqual(d, want, `document ${d._id} is not whole`);
        }
        const v = await client.db('admin').command({ nedbVerify: 1 });
        assert.equal(v.valid, true, `chain invalid: ${JSON.stringify(v)}`);
        return docs.length;
    } finally {
        await client.close();
    }
}

for (let cycle = 0; cycle < CYCLES; cycle++) {
    h.test(`cycle ${cycle}: acknowledged inserts survive SIGKILL`, async () => {
        const srv = await h.startServer({ dbpath, logLevel: 0 });
        if (cycle > 0) await checkAll(srv.port); /* recovery of the previous kill */
        const stop = { now: false };
        const writers = Array.from({ length: WRITERS }, (_, w) => writer(srv.port, cycle, w, stop));
        await h.sleep(150 + Math.floor(rand() * 600));
        srv.proc.kill('SIGKILL');
        await srv.exited;
        stop.now = true;
        await Promise.all(writers);
        assert.ok(acked.size > 0, 'no write was acknowledged at all');
    }, { timeoutMs: 60000 });
}

h.test('after the last kill: everything acknowledged is there and the chain verifies offline', async () => {
    const srv = await h.startServer({ dbpath, logLevel: 0 });
    const n = await checkAll(srv.port);
    assert.ok(n >= acked.size);
    h.comment(`${acked.size} acknowledged writes over ${CYCLES} kills, ${n} documents present`);
    await srv.stop();
    const tool = h.nedbToolPath();
    assert.ok(tool, 'the nedb tool is built');
    const v = spawnSync(tool, ['verify', dbpath], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stdout + v.stderr);
    fs.rmSync(dbpath, { recursive: true, force: true });
}, { timeoutMs: 60000 });

h.run();
