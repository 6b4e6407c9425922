'use strict';
/*
 * test_explain.js: the explain command for find, count, distinct, update, delete and
 * findAndModify through the node driver (and mongosh's .explain()) against a real nedbd:
 * mongod's reply shape (queryPlanner.namespace / parsedQuery / winningPlan, executionStats
 * at the verbosities that ask for it), the plans NEDB really runs (IDHACK for an _id
 * equality, COLLSCAN, SORT / SKIP / LIMIT / PROJECTION_DEFAULT, COUNT, UPDATE, DELETE),
 * counters that follow the data, writes that are explained but never executed, and
 * explain through a view.
 * Expected shapes come from MongoDB's "Explain Results" and explain command reference pages.
 */
const assert = require('assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { MongoClient, MongoServerError } = require('mongodb');
const h = require('./lib/server');

const MONGOSH = path.join(h.ROOT, 'node_modules', '.bin', 'mongosh');
const N = 50;
let srv;
let client;
let db;
let coll;

h.before(async () => {
    srv = await h.startServer();
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('explain');
    coll = db.collection('items');
    const docs = [];
    for (let i = 0; i < N; i++) docs.push({ _id: i, qty: i % 10, tag: i % 2 ? 'odd' : 'even' });
    await coll.insertMany(docs);
});

h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) await srv.stop();
});

async function explain(cmd, verbosity) {
    const c = { explain: cmd };
    if (verbosity) c.verbosity = verbosity;
    return db.command(c);
}

/* The chain of stage names from the winning plan down. */
function stages(plan) {
    const out = [];
    for (let p = plan; p; p = p.inputStage) out.push(p.stage);
    return out;
}

h.test('find: queryPlanner with namespace, parsedQuery and a COLLSCAN carrying the filter', async () => {
    const r = await explain({ find: 'items', filter: { qty: 3, tag: 'odd' } }, 'queryPlanner');
    assert.equal(r.ok, 1);
    assert.equal(r.queryPlanner.namespace, 'explain.items');
    assert.deepEqual(r.queryPlanner.parsedQuery, { $and: [{ qty: { $eq: 3 } }, { tag: { $eq: 'odd' } }] });
    assert.equal(r.queryPlanner.winningPlan.stage, 'COLLSCAN');
    assert.deepEqual(r.queryPlanner.winningPlan.filter, r.queryPlanner.parsedQuery);
    assert.equal(r.queryPlanner.winningPlan.direction, 'forward');
    assert.equal(r.executionStats, undefined, 'queryPlanner verbosity has no executionStats');
    assert.deepEqual(r.command.filter, { qty: 3, tag: 'odd' });
});

h.test('find: executionStats counts what the query returns and examines', async () => {
    const r = await explain({ find: 'items', filter: { qty: { $gte: 8 } } }, 'executionStats');
    const expected = await coll.countDocuments({ qty: { $gte: 8 } });
    const es = r.executionStats;
    assert.equal(es.executionSuccess, true);
    assert.equal(es.nReturned, expected);
    assert.equal(es.totalDocsExamined, await coll.estimatedDocumentCount());
    assert.equal(es.totalKeysExamined, 0);
    assert.equal(typeof es.executionTimeMillis, 'number');
    assert.equal(es.executionStages.stage, 'COLLSCAN');
    assert.equal(es.executionStages.docsExamined, N);
    assert.deepEqual(r.queryPlanner.parsedQuery, { qty: { $gte: 8 } });
});

h.test('find by _id uses IDHACK and examines one document', async () => {
    const r = await explain({ find: 'items', filter: { _id: 7 } }, 'executionStats');
    assert.equal(r.queryPlanner.winningPlan.stage, 'IDHACK');
    assert.equal(r.executionStats.nReturned, 1);
    assert.equal(r.executionStats.totalDocsExamined, 1);
    const miss = await explain({ find: 'items', filter: { _id: 1000 } }, 'executionStats');
    assert.equal(miss.executionStats.nReturned, 0);
    assert.equal(miss.executionStats.totalDocsExamined, 0);
});

h.test('find with sort, skip, limit and projection: the stages of the plan', async () => {
    const cmd = { find: 'items', filter: { tag: 'even' }, sort: { qty: -1 }, skip: 2, limit: 3,
                  projection: { qty: 1 } };
    const r = await explain(cmd, 'executionStats');
    assert.deepEqual(stages(r.queryPlanner.winningPlan), ['PROJECTION_DEFAULT', 'SKIP', 'SORT', 'COLLSCAN']);
    const sort = r.queryPlanner.winningPlan.inputStage.inputStage;
    assert.deepEqual(sort.sortPattern, { qty: -1 });
    assert.equal(sort.limitAmount, 5);
    assert.equal(r.queryPlanner.winningPlan.inputStage.skipAmount, 2);
    const real = await coll.find({ tag: 'even' }).sort({ qty: -1 }).skip(2).limit(3).toArray();
    assert.equal(r.executionStats.nReturned, real.length);
    /* without a sort, an unsorted limit stops the scan early */
    const lim = await explain({ find: 'items', filter: { qty: 9 }, limit: 2 }, 'executionStats');
    assert.deepEqual(stages(lim.queryPlanner.winningPlan), ['LIMIT', 'COLLSCAN']);
    assert.equal(lim.executionStats.nReturned, 2);
    assert.equal(lim.executionStats.totalDocsExamined, 20); /* qty 9 at _id 9 and 19 */
});

h.test('explain defaults to allPlansExecution', async () => {
    const r = await explain({ find: 'items', filter: {} });
    assert.ok(Array.isArray(r.executionStats.allPlansExecution));
    assert.equal(r.executionStats.nReturned, N);
    await assert.rejects(explain({ find: 'items' }, 'loud'), (e) => e.code === 2);
});

h.test('count and distinct', async () => {
    const c = await explain({ count: 'items', query: { tag: 'odd' } }, 'executionStats');
    assert.deepEqual(stages(c.queryPlanner.winningPlan), ['COUNT', 'COLLSCAN']);
    assert.equal(c.executionStats.executionStages.nCounted, await coll.countDocuments({ tag: 'odd' }));
    const fast = await explain({ count: 'items' }, 'queryPlanner');
    assert.equal(fast.queryPlanner.winningPlan.stage, 'RECORD_STORE_FAST_COUNT');
    const d = await explain({ distinct: 'items', key: 'qty', query: { qty: { $lt: 2 } } }, 'executionStats');
    assert.equal(d.queryPlanner.namespace, 'explain.items');
    assert.equal(d.executionStats.totalDocsExamined, N);
    assert.equal(d.executionStats.nReturned, await coll.countDocuments({ qty: { $lt: 2 } }));
});

h.test('update, delete and findAndModify are explained, never executed', async () => {
    const before = await coll.find({}).sort({ _id: 1 }).toArray();
    const u = await explain({ update: 'items', updates: [{ q: { qty: 4 }, u: { $set: { x: 1 } }, multi: true }] },
                            'executionStats');
    assert.deepEqual(stages(u.queryPlanner.winningPlan), ['UPDATE', 'COLLSCAN']);
    assert.equal(u.executionStats.executionStages.nMatched, await coll.countDocuments({ qty: 4 }));
    const one = await explain({ update: 'items', updates: [{ q: { qty: 4 }, u: { $set: { x: 1 } } }] },
                              'executionStats');
    assert.equal(one.executionStats.executionStages.nMatched, 1);
    assert.equal(one.executionStats.totalDocsExamined, 5); /* stops at the first match, _id 4 */
    const byId = await explain({ update: 'items', updates: [{ q: { _id: 3 }, u: { $set: { x: 1 } } }] });
    assert.deepEqual(stages(byId.queryPlanner.winningPlan), ['UPDATE', 'IDHACK']);
    const del = await explain({ delete: 'items', deletes: [{ q: { tag: 'odd' }, limit: 0 }] }, 'executionStats');
    assert.deepEqual(stages(del.queryPlanner.winningPlan), ['DELETE', 'COLLSCAN']);
    assert.equal(del.executionStats.executionStages.nWouldDelete, await coll.countDocuments({ tag: 'odd' }));
    const fam = await explain({ findAndModify: 'items', query: { qty: 2 }, sort: { _id: -1 }, remove: true },
                              'executionStats');
    assert.deepEqual(stages(fam.queryPlanner.winningPlan), ['DELETE', 'SORT', 'COLLSCAN']);
    await assert.rejects(explain({ delete: 'items', deletes: [{ q: {}, limit: 0 }, { q: {}, limit: 0 }] }),
                         (e) => e instanceof MongoServerError);
    assert.deepEqual(await coll.find({}).sort({ _id: 1 }).toArray(), before);
});

h.test('explain errors: bad filter, unknown command', async () => {
    await assert.rejects(explain({ find: 'items', filter: { qty: { $bogus: 1 } } }), (e) => e.code === 2);
    await assert.rejects(explain({ frobnicate: 'items' }), (e) => e.code === 59);
});

h.test('explain of a find on a view is the explain of its aggregation', async () => {
    await db.createCollection('evens', { viewOn: 'items', pipeline: [{ $match: { tag: 'even' } }] });
    const r = await explain({ find: 'evens', filter: { qty: 2 } }, 'queryPlanner');
    assert.ok(Array.isArray(r.stages), JSON.stringify(r));
    assert.deepEqual(r.stages[0].$cursor.queryPlanner.parsedQuery, { tag: 'even' });
    assert.deepEqual(r.stages[1], { $match: { qty: 2 } });
    const c = await explain({ count: 'evens', query: { qty: 2 } }, 'queryPlanner');
    assert.deepEqual(c.stages.slice(1), [{ $match: { qty: 2 } }, { $count: 'count' }]);
    const d = await explain({ distinct: 'evens', key: 'qty' }, 'queryPlanner');
    assert.deepEqual(Object.keys(d.stages[d.stages.length - 1]), ['$group']);
    await assert.rejects(explain({ delete: 'evens', deletes: [{ q: {}, limit: 0 }] }), (e) => e.code === 166);
});

/* mongosh's cursor.explain() and collection.explain().count() read our reply. */
function mongosh(script) {
    return new Promise((resolve, reject) => {
        const home = fs.mkdtempSync(path.join(os.tmpdir(), 'nedb-it-mongosh-'));
        const p = spawn(MONGOSH, [`mongodb://127.0.0.1:${srv.port}/explain`, '--quiet', '--eval', script], {
            env: { ...process.env, HOME: home, MONGOSH_FORCE_DISABLE_TELEMETRY_FOR_TESTING: '1', NO_COLOR: '1', CI: '1' },
        });
        let out = '';
        let errOut = '';
        p.stdout.on('data', (d) => { out += d; });
        p.stderr.on('data', (d) => { errOut += d; });
        p.on('error', reject);
        p.on('close', (code) => {
            fs.rmSync(home, { recursive: true, force: true });
            resolve({ code, out, errOut });
        });
    });
}

h.test('mongosh: find().explain() and explain("executionStats").count()', async () => {
    if (!fs.existsSync(MONGOSH)) throw new Error(`mongosh not installed at ${MONGOSH} (npm ci)`);
    const r = await mongosh(
        'const a = db.items.find({qty: 5}).explain();' +
        'const b = db.items.explain("executionStats").count({tag: "odd"});' +
        'print("RESULT " + JSON.stringify({ns: a.queryPlanner.namespace, st: a.queryPlanner.winningPlan.stage,' +
        ' counted: b.executionStats.executionStages.nCounted}))');
    assert.equal(r.code, 0, r.errOut + r.out);
    const line = r.out.split('\n').find((l) => l.startsWith('RESULT '));
    assert.ok(line, r.out);
    assert.deepEqual(JSON.parse(line.slice(7)), { ns: 'explain.items', st: 'COLLSCAN',
                                                  counted: await coll.countDocuments({ tag: 'odd' }) });
});

h.run();
