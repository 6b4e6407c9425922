'use strict';
/*
 * test_command_fuzz.js: every command nedbd lists, sent with arguments of the wrong types,
 * odd values and stray fields (DESIGN.md section 8: bad input gets an error reply, never a
 * crash). Each reply must be a reply: ok 1, or ok 0 with a numeric code and a codeName;
 * and the server must answer a ping after every command. Under the ASan build (scripts/
 * test runs the integration files there too) this doubles as a memory-safety sweep of
 * every handler's argument parsing.
 *
 * The values come from a seeded generator, so a failure names the seed and the command to
 * replay: NEDB_FUZZ_SEED=<n> NEDB_IT_ONLY=<command> node tests/integration/test_command_fuzz.js.
 * Left out: commands that would stop the rest of the run on purpose (fsync's lock holds
 * every later write until an unlock; configureFailPoint exists only with test commands).
 */
const assert = require('assert/strict');
const { MongoClient, Long, Double, Int32, Decimal128, ObjectId, Binary, Timestamp, MinKey,
        MaxKey, BSONRegExp, Code } = require('mongodb');
const h = require('./lib/server');

const SEED = Number(process.env.NEDB_FUZZ_SEED || 20261207);
const PER_COMMAND = 40;
const SKIP = new Set(['fsync', 'fsyncUnlock', 'configureFailPoint']);

let srv;
let client;

/* mulberry32: small, seedable, good enough to pick shapes */
function rng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function value(r, depth = 0) {
    const pick = Math.floor(r() * (depth > 2 ? 16 : 20));
    switch (pick) {
    case 0: return null;
    case 1: return true;
    case 2: return new Int32(Math.floor(r() * 10) - 3);
    case 3: return Long.fromString(r() < 0.5 ? '9223372036854775807' : '-9223372036854775808');
    case 4: return new Double(r() < 0.3 ? NaN : r() < 0.5 ? Infinity : -0.0);
    case 5: return Decimal128.fromString(r() < 0.5 ? 'NaN' : '1E+6144');
    case 6: return '';
    case 7: return r() < 0.5 ? '$x' : 'a.b.$[]';
    case 8: return 'x'.repeat(Math.floor(r() * 300));
    case 9: return new ObjectId();
    case 10: return new Date(r() < 0.5 ? 8.64e15 : -8.64e15);
    case 11: return new Binary(Buffer.from([1, 2, 3]), 4);
    case 12: return new Timestamp({ t: 0, i: 0 });
    case 13: return r() < 0.5 ? new MinKey() : new MaxKey();
    case 14: return new BSONRegExp('(', 'i');
    case 15: return new Code('function(){}');
    case 16: return [value(r, depth + 1), value(r, depth + 1)];
    case 17: return {};
    case 18: return { $eq: value(r, depth + 1), [r() < 0.5 ? '$bogus' : 'a']: value(r, depth + 1) };
    default: return { [r() < 0.5 ? 'a' : '$set']: value(r, depth + 1) };
    }
}

/* The fields commands commonly read, with random values, plus one stray field. */
const FIELDS = ['filter', 'query', 'projection', 'sort', 'limit', 'skip', 'batchSize', 'documents',
    'updates', 'deletes', 'pipeline', 'cursor', 'key', 'indexes', 'index', 'collation', 'let',
    'update', 'remove', 'new', 'upsert', 'fields', 'viewOn', 'to', 'hint', 'readConcern',
    'writeConcern', 'maxTimeMS', 'ordered', 'validator', 'comment', 'asOf', 'lsid', 'full',
    'scale', 'op', 'was', 'slowms', 'nameOnly', 'verbosity', 'explain', 'collection', 'ids'];

function command(name, r) {
    const cmd = { [name]: r() < 0.5 ? 'fuzz' : value(r) };
    const n = Math.floor(r() * 4);
    for (let i = 0; i < n; i++) cmd[FIELDS[Math.floor(r() * FIELDS.length)]] = value(r);
    if (r() < 0.3) cmd.stray = value(r);
    return cmd;
}

h.before(async () => {
    srv = await h.startServer();
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 5000 });
    await client.connect();
    await client.db('fuzz').collection('fuzz').insertMany([{ _id: 1, a: [1, { b: 2 }] }, { _id: 2, a: 'x' }]);
});

h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) await srv.stop();
});

h.test('every listed command answers malformed arguments with a reply, and the server lives', async () => {
    const list = await client.db('admin').command({ listCommands: 1 });
    const names = Object.keys(list.commands).filter((n) => !SKIP.has(n));
    assert.ok(names.length > 40, `only ${names.length} commands listed`);
    const r = rng(SEED);
    let sent = 0;
    for (const name of names) {
        for (let i = 0; i < PER_COMMAND; i++) {
            const cmd = command(name, r);
            const dbName = r() < 0.5 ? 'admin' : 'fuzz';
            let reply;
            try {
                reply = await client.db(dbName).command(cmd, { raw: false });
            } catch (e) {
                /* a server error: it must have the shape of one */
                if (e.name === 'MongoServerError') {
                    assert.equal(typeof e.code, 'number', `${name}: ${e.message}`);
                    assert.ok(e.codeName, `${name}: an error without a codeName: ${e.message}`);
                } else if (!/BSON|serializ|Invalid|must|cannot|not/i.test(e.message)) {
                    /* the driver refused to send it (a client-side check): fine; anything
                     * else (a closed connection, a timeout) is a failure */
                    assert.fail(`${name} (seed ${SEED}, #${i}) ${JSON.stringify(cmd, (k, v) => (typeof v === 'bigint' ? String(v) : v))}: ${e.name}: ${e.message}`);
                }
            }
            if (reply) assert.equal(reply.ok, 1, `${name}: a reply without ok`);
            sent++;
        }
        const ping = await client.db('admin').command({ ping: 1 });
        assert.equal(ping.ok, 1, `the server stopped answering after ${name}`);
    }
    assert.ok(srv.alive(), 'nedbd is still running');
    console.log(`# ${sent} commands over ${names.length} names, seed ${SEED}`);
});

h.run();
