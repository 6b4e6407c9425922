'use strict';
/*
 * test_explain.js: the explain command for find, count, distinct, update, delete and
 * findAndModify through the node driver (and mongosh's .explain()) against a real nedbd:
 * mongod's reply shape (queryPlanner.namespace / parsedQuery / winningPlan, executionStats
 * at the verbosities that ask for it), the plans NEDB really runs (IDHACK for an _id
 * equality, FETCH over IXSCAN for an equality or $in on a field with a single-field index,
 * COLLSCAN, SORT / SKIP / LIMIT / PROJECTION_DEFAULT, COUNT, UPDATE, DELETE),
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

/* The IXSCAN of a plan (under FETCH), and its fields as MongoDB's "Explain Results" page
 * lists them for a single-field index. */
function ixscanOf(plan) {
    let p = plan;
    while (p && p.stage !== 'FETCH') p = p.inputStage;
    assert.ok(p, `no FETCH in ${JSON.stringify(plan)}`);
    assert.equal(p.inputStage.stage, 'IXSCAN');
    return { fetch: p, ix: p.inputStage };
}

h.test('find on a field with a single-field index: FETCH over IXSCAN in mongod\'s shape', async () => {
    const ic = db.collection('indexed');
    const docs = [];
    for (let i = 0; i < N; i++) docs.push({ _id: i, qty: i % 10, tag: i % 2 ? 'odd' : 'even' });
    await ic.insertMany(docs);
    await ic.createIndex({ qty: 1 });
    const r = await explain({ find: 'indexed', filter: { qty: 3 } }, 'executionStats');
    const { fetch, ix } = ixscanOf(r.queryPlanner.winningPlan);
    assert.equal(r.queryPlanner.winningPlan.stage, 'FETCH');
    assert.equal(fetch.filter, undefined, 'the index answers the whole filter');
    assert.deepEqual(ix.keyPattern, { qty: 1 });
    assert.equal(ix.indexName, 'qty_1');
    assert.equal(ix.isMultiKey, false);
    assert.deepEqual(ix.multiKeyPaths, { qty: [] });
    assert.equal(ix.isUnique, false);
    assert.equal(ix.isSparse, false);
    assert.equal(ix.isPartial, false);
    assert.equal(ix.indexVersion, 2);
    assert.equal(ix.direction, 'forward');
    assert.deepEqual(ix.indexBounds, { qty: ['[3, 3]'] });
    const want = docs.filter((d) => d.qty === 3).length;
    const es = r.executionStats;
    assert.equal(es.nReturned, want);
    assert.equal(es.totalKeysExamined, want);
    assert.equal(es.totalDocsExamined, want, 'only the documents under the key are read');
    const st = ixscanOf(es.executionStages);
    assert.equal(st.ix.keysExamined, want);
    assert.equal(st.ix.nReturned, want);
    assert.equal(st.fetch.docsExamined, want);
    assert.equal(st.fetch.nReturned, want);

    /* the rest of the filter is FETCH's; the same plan under $eq */
    const rest = await explain({ find: 'indexed', filter: { tag: 'odd', qty: { $eq: 3 } } }, 'executionStats');
    const rr = ixscanOf(rest.queryPlanner.winningPlan);
    assert.deepEqual(rr.fetch.filter, { tag: { $eq: 'odd' } });
    assert.deepEqual(rest.queryPlanner.parsedQuery, { $and: [{ tag: { $eq: 'odd' } }, { qty: { $eq: 3 } }] });
    assert.equal(rest.executionStats.totalDocsExamined, want);
    assert.equal(rest.executionStats.nReturned, docs.filter((d) => d.qty === 3 && d.tag === 'odd').length);

    /* no index on tag: COLLSCAN; an absent key: an IXSCAN that finds nothing */
    assert.equal((await explain({ find: 'indexed', filter: { tag: 'odd' } })).queryPlanner.winningPlan.stage,
                 'COLLSCAN');
    const none = await explain({ find: 'indexed', filter: { qty: 42 } }, 'executionStats');
    assert.equal(ixscanOf(none.queryPlanner.winningPlan).ix.indexName, 'qty_1');
    assert.equal(none.executionStats.totalKeysExamined, 0);
    assert.equal(none.executionStats.totalDocsExamined, 0);
    /* a null or a range is not an equality the index looks up here */
    assert.equal((await explain({ find: 'indexed', filter: { qty: null } })).queryPlanner.winningPlan.stage,
                 'COLLSCAN');
    assert.equal((await explain({ find: 'indexed', filter: { qty: { $gt: 8 } } })).queryPlanner.winningPlan.stage,
                 'COLLSCAN');
});

h.test('$in on an indexed field: one point interval per distinct value, in index order', async () => {
    const r = await explain({ find: 'indexed', filter: { qty: { $in: [7, 3, 7, 3.0, 42] } } }, 'executionStats');
    const { fetch, ix } = ixscanOf(r.queryPlanner.winningPlan);
    assert.equal(fetch.filter, undefined);
    assert.deepEqual(ix.indexBounds, { qty: ['[3, 3]', '[7, 7]', '[42, 42]'] });
    const want = await db.collection('items').countDocuments({ qty: { $in: [7, 3] } }); /* the unindexed copy */
    assert.equal(r.executionStats.nReturned, want);
    assert.equal(r.executionStats.totalKeysExamined, want);
    assert.equal(r.executionStats.totalDocsExamined, want);
    const s = await explain({ find: 'indexed', filter: { tag: { $in: ['odd', 'even'] } } }, 'queryPlanner');
    assert.equal(s.queryPlanner.winningPlan.stage, 'COLLSCAN', 'no index on tag');
    await db.collection('indexed').createIndex({ tag: -1 }, { name: 'tag_desc' });
    const d = await explain({ find: 'indexed', filter: { tag: { $in: ['even', 'odd', 'a"b'] } } }, 'queryPlanner');
    const di = ixscanOf(d.queryPlanner.winningPlan).ix;
    assert.equal(di.indexName, 'tag_desc');
    assert.deepEqual(di.keyPattern, { tag: -1 });
    assert.deepEqual(di.indexBounds, { tag: ['["odd", "odd"]', '["even", "even"]', '["a\\"b", "a\\"b"]'] },
                     'a descending index lists its intervals from the highest');
    /* $in with a regex or null is not looked up */
    for (const v of [/o/, null]) {
        const x = await explain({ find: 'indexed', filter: { qty: { $in: [1, v] } } }, 'queryPlanner');
        assert.equal(x.queryPlanner.winningPlan.stage, 'COLLSCAN', String(v));
    }
});

h.test('count, update and delete through an index: COUNT / UPDATE / DELETE over FETCH over IXSCAN', async () => {
    const ic = db.collection('indexed');
    const c = await explain({ count: 'indexed', query: { qty: { $in: [1, 2] } } }, 'executionStats');
    assert.deepEqual(stages(c.queryPlanner.winningPlan), ['COUNT', 'FETCH', 'IXSCAN']);
    assert.equal(c.executionStats.executionStages.nCounted, await ic.countDocuments({ qty: { $in: [1, 2] } }));
    assert.equal(c.executionStats.totalDocsExamined, await ic.countDocuments({ qty: { $in: [1, 2] } }));
    const u = await explain({ update: 'indexed', updates: [{ q: { qty: 4 }, u: { $set: { x: 1 } }, multi: true }] },
                            'executionStats');
    assert.deepEqual(stages(u.queryPlanner.winningPlan), ['UPDATE', 'FETCH', 'IXSCAN']);
    assert.equal(u.executionStats.executionStages.nMatched, await ic.countDocuments({ qty: 4 }));
    const del = await explain({ delete: 'indexed', deletes: [{ q: { qty: 5, tag: 'odd' }, limit: 0 }] },
                              'executionStats');
    assert.deepEqual(stages(del.queryPlanner.winningPlan), ['DELETE', 'FETCH', 'IXSCAN']);
    assert.equal(del.executionStats.executionStages.nWouldDelete, await ic.countDocuments({ qty: 5, tag: 'odd' }));
    /* with a sort, the SORT stage sits over FETCH */
    const s = await explain({ find: 'indexed', filter: { qty: 6 }, sort: { _id: -1 } }, 'executionStats');
    assert.deepEqual(stages(s.queryPlanner.winningPlan), ['SORT', 'FETCH', 'IXSCAN']);
    assert.equal(s.executionStats.nReturned, await ic.countDocuments({ qty: 6 }));
});

h.test('IXSCAN flags: multikey paths, unique and sparse indexes', async () => {
    const mc = db.collection('ixflags');
    await mc.insertMany([{ _id: 1, a: { b: [1, 2] }, u: 1 }, { _id: 2, a: { b: 3 }, u: 2 }, { _id: 3, s: 1, u: 3 }]);
    await mc.createIndex({ 'a.b': 1 });
    await mc.createIndex({ u: 1 }, { unique: true });
    await mc.createIndex({ s: 1 }, { sparse: true });
    const m = await explain({ find: 'ixflags', filter: { 'a.b': { $in: [2, 1] } } }, 'executionStats');
    const mi = ixscanOf(m.queryPlanner.winningPlan).ix;
    assert.equal(mi.isMultiKey, true);
    assert.deepEqual(mi.multiKeyPaths, { 'a.b': ['a.b'] });
    assert.deepEqual(mi.indexBounds, { 'a.b': ['[1, 1]', '[2, 2]'] });
    /* document 1 has both keys: two keys examined, one document */
    assert.equal(m.executionStats.totalKeysExamined, 2);
    assert.equal(m.executionStats.totalDocsExamined, 1);
    assert.equal(m.executionStats.nReturned, 1);
    const st = ixscanOf(m.executionStats.executionStages).ix;
    assert.equal(st.dupsDropped, 1);
    const u = ixscanOf((await explain({ find: 'ixflags', filter: { u: 2 } })).queryPlanner.winningPlan).ix;
    assert.equal(u.isUnique, true);
    assert.equal(u.isSparse, false);
    const sp = ixscanOf((await explain({ find: 'ixflags', filter: { s: 1 } })).queryPlanner.winningPlan).ix;
    assert.equal(sp.isSparse, true);
    assert.equal(sp.isUnique, false);
    assert.deepEqual(sp.multiKeyPaths, { s: [] });
});

h.test('no IXSCAN when the index may not be used: hidden, a collation, a snapshot before the index', async () => {
    const hc = db.collection('ixhidden');
    await hc.insertMany([{ _id: 1, k: 'x' }, { _id: 2, k: 'X' }, { _id: 3, k: 'y' }]);
    const before = await db.command({ insert: 'ixhidden', documents: [{ _id: 4, k: 'x' }] });
    await hc.createIndex({ k: 1 });
    const plan = async (cmd) => (await explain(cmd, 'queryPlanner')).queryPlanner.winningPlan;
    assert.equal((await plan({ find: 'ixhidden', filter: { k: 'x' } })).stage, 'FETCH');
    await db.command({ collMod: 'ixhidden', index: { name: 'k_1', hidden: true } });
    assert.equal((await plan({ find: 'ixhidden', filter: { k: 'x' } })).stage, 'COLLSCAN', 'hidden');
    assert.equal((await plan({ find: 'ixhidden', filter: { k: { $in: ['x', 'y'] } } })).stage, 'COLLSCAN');
    await db.command({ collMod: 'ixhidden', index: { name: 'k_1', hidden: false } });
    assert.equal((await plan({ find: 'ixhidden', filter: { k: 'x' } })).stage, 'FETCH');
    const coll8 = await explain({ find: 'ixhidden', filter: { k: 'x' }, collation: { locale: 'en', strength: 2 } },
                                'executionStats');
    assert.equal(coll8.queryPlanner.winningPlan.stage, 'COLLSCAN', 'a collation compares otherwise than the index');
    assert.equal(coll8.executionStats.nReturned, 3);
    const old = await explain({ find: 'ixhidden', filter: { k: 'x' }, asOf: Number(before.seqs[0]) },
                              'executionStats');
    assert.equal(old.queryPlanner.winningPlan.stage, 'COLLSCAN', 'the index did not exist then');
    assert.equal(old.executionStats.nReturned, 2);
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
