'use strict';
/*
 * test_trace.js: causal provenance through the node driver (DESIGN.md section 7): writes
 * carrying _caused_by (seqs taken from the write replies, and {coll, _id} references the
 * server resolves to the current version's seq), then the $trace stage in both
 * directions: each input document gets an array of {seq, ns, depth, doc} where doc is the
 * version written at that seq, breadth first (depth, then seq), every op once (a diamond
 * is reached along two paths), maxDepth, causes in another collection, forward counting
 * every version of the source, a snapshot in the past (asOf) hiding later ops, spec and
 * namespace errors, and the same answers after a clean restart (checkpoint) and after a
 * kill (checkpoint plus replay of the log after it).
 *
 * The causal graph (seqs from the replies; arrows point from an effect to its causes):
 *
 *   A notes n1  (user_message)          U  update of n1 (no provenance of its own)
 *   B notes n2  -> A                    G  facts f3 -> {notes, n1}  (resolves to U)
 *   C facts f1  -> {notes, n1} (= A)
 *   D facts f2  -> B, C                 (A is reached twice from D: a diamond)
 *   E notes n3  -> D
 */
const assert = require('assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let db;
const dbpath = fs.mkdtempSync(path.join(os.tmpdir(), 'nedb-trace-'));
const S = {};       /* seq of each op above, by letter */
const V = {};       /* the document each op wrote, as the server stores it, by letter */

async function connect() {
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('trace');
}

async function restart({ kill = false } = {}) {
    await client.close();
    if (kill) srv.kill();
    else await srv.stop();
    srv = await h.startServer({ dbpath });
    await connect();
}

/* An insert through the raw command, so the reply's seqs are visible; returns the seq. */
async function insert(letter, coll, doc) {
    const r = await db.command({ insert: coll, documents: [doc] });
    assert.equal(r.n, 1, JSON.stringify(r));
    assert.equal(r.seqs.length, 1);
    S[letter] = Number(r.seqs[0]);
    V[letter] = await db.collection(coll).findOne({ _id: doc._id });
    return S[letter];
}

/* The trace of the one document with _id `id` in coll. */
async function trace(coll, id, spec, cmdExtra = {}) {
    const pipeline = [{ $match: { _id: id } }, { $trace: { as: 't', ...spec } }];
    const r = await db.command({ aggregate: coll, pipeline, cursor: {}, ...cmdExtra });
    const docs = r.cursor.firstBatch;
    assert.equal(docs.length, 1, JSON.stringify(docs));
    return docs[0].t.map((e) => ({ ...e, seq: Number(e.seq) }));
}

/* What DESIGN.md section 7 says an entry is: the op's seq, its namespace, its distance
 * from the document, and the version that op wrote. */
const entry = (letter, ns, depth) => ({ seq: S[letter], ns: `trace.${ns}`, depth, doc: V[letter] });

function expectedBackwardFromE() {
    /* E -> D (depth 1); D -> B, C (depth 2); B -> A and C -> A: A once, at depth 3 */
    return [entry('D', 'facts', 1), entry('B', 'notes', 2), entry('C', 'facts', 2),
            entry('A', 'notes', 3)];
}

function expectedForwardFromN1() {
    /* n1's versions are A and U: A caused B and C, U caused G (depth 1, in seq order);
     * B and C both caused D (once, depth 2); D caused E (depth 3) */
    return [entry('B', 'notes', 1), entry('C', 'facts', 1), entry('G', 'facts', 1),
            entry('D', 'facts', 2), entry('E', 'notes', 3)];
}

h.before(async () => {
    srv = await h.startServer({ dbpath });
    await connect();
});

h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) await srv.stop();
    fs.rmSync(dbpath, { recursive: true, force: true });
});

h.test('writes with _caused_by: seqs from replies and {coll, _id} references', async () => {
    await insert('A', 'notes', { _id: 'n1', text: 'user said', _evidence: 'user_message' });
    await insert('B', 'notes', { _id: 'n2', text: 'inferred', _caused_by: [S.A], _evidence: 'inference', _confidence: 0.5 });
    await insert('C', 'facts', { _id: 'f1', v: 1, _caused_by: [{ coll: 'notes', _id: 'n1' }], _evidence: 'tool_result' });
    await insert('D', 'facts', { _id: 'f2', v: 2, _caused_by: [S.B, S.C] });
    await insert('E', 'notes', { _id: 'n3', text: 'decided', _caused_by: [S.D] });
    assert.ok(S.A < S.B && S.B < S.C && S.C < S.D && S.D < S.E);
    assert.deepEqual(V.C._caused_by.map(Number), [S.A], 'the reference resolves to n1\'s seq');
});

h.test('backward: breadth first, ns of each cause, the version written, the diamond once', async () => {
    assert.deepEqual(await trace('notes', 'n3', { direction: 'backward' }), expectedBackwardFromE());
    /* from a document of the other collection */
    assert.deepEqual(await trace('facts', 'f2', { direction: 'backward' }),
                     [entry('B', 'notes', 1), entry('C', 'facts', 1), entry('A', 'notes', 2)]);
    /* a document without causes */
    assert.deepEqual(await trace('notes', 'n1', { direction: 'backward' }), []);
});

h.test('maxDepth bounds both directions', async () => {
    assert.deepEqual(await trace('notes', 'n3', { direction: 'backward', maxDepth: 1 }), [entry('D', 'facts', 1)]);
    assert.deepEqual(await trace('notes', 'n3', { direction: 'backward', maxDepth: 2 }),
                     expectedBackwardFromE().slice(0, 3));
    assert.deepEqual(await trace('notes', 'n1', { direction: 'forward', maxDepth: 1 }),
                     [entry('B', 'notes', 1), entry('C', 'facts', 1)]);
});

h.test('forward: what a document caused, the diamond once', async () => {
    assert.deepEqual(await trace('notes', 'n1', { direction: 'forward' }),
                     [entry('B', 'notes', 1), entry('C', 'facts', 1), entry('D', 'facts', 2),
                      entry('E', 'notes', 3)]);
    assert.deepEqual(await trace('notes', 'n3', { direction: 'forward' }), [], 'nothing names n3');
});

h.test('an update writes a new version: forward counts every version, backward shows the version at the seq', async () => {
    const r = await db.command({ update: 'notes', updates: [{ q: { _id: 'n1' }, u: { $set: { text: 'user said again' } } }] });
    assert.equal(r.nModified, 1);
    S.U = Number(r.seqs[0]);
    V.U = await db.collection('notes').findOne({ _id: 'n1' });
    assert.equal(V.U.text, 'user said again');
    await insert('G', 'facts', { _id: 'f3', v: 3, _caused_by: [{ coll: 'notes', _id: 'n1' }] });
    assert.deepEqual(V.G._caused_by.map(Number), [S.U], 'a reference names the current version');
    assert.deepEqual(await trace('notes', 'n1', { direction: 'forward' }), expectedForwardFromN1());
    /* G was caused by the update's version; the update itself sealed no causes */
    assert.deepEqual(await trace('facts', 'f3', { direction: 'backward' }), [entry('U', 'notes', 1)]);
    /* n2's cause is still the first version of n1, with its old text */
    const back = await trace('notes', 'n2', { direction: 'backward' });
    assert.deepEqual(back, [entry('A', 'notes', 1)]);
    assert.equal(back[0].doc.text, 'user said');
});

h.test('a snapshot in the past (asOf) does not see later ops', async () => {
    /* as of E: the update and G do not exist yet */
    assert.deepEqual(await trace('notes', 'n1', { direction: 'forward' }, { asOf: S.E }),
                     [entry('B', 'notes', 1), entry('C', 'facts', 1), entry('D', 'facts', 2),
                      entry('E', 'notes', 3)]);
    assert.deepEqual(await trace('notes', 'n1', { direction: 'forward' }, { asOf: S.D }),
                     [entry('B', 'notes', 1), entry('C', 'facts', 1), entry('D', 'facts', 2)]);
});

h.test('$trace beside other stages, and on every document of a collection', async () => {
    const r = await db.collection('notes').aggregate([
        { $trace: { direction: 'backward', as: 'why' } },
        { $project: { _id: 1, n: { $size: '$why' }, seqs: '$why.seq' } },
        { $sort: { _id: 1 } },
    ]).toArray();
    assert.deepEqual(r.map((d) => ({ ...d, seqs: d.seqs.map(Number) })), [
        { _id: 'n1', n: 0, seqs: [] },
        { _id: 'n2', n: 1, seqs: [S.A] },
        { _id: 'n3', n: 4, seqs: [S.D, S.B, S.C, S.A] },
    ]);
});

h.test('bad specs and a pipeline without a collection are errors', async () => {
    const notes = db.collection('notes');
    await h.expectCode(notes.aggregate([{ $trace: { direction: 'sideways', as: 't' } }]).toArray(), 2);
    await h.expectCode(notes.aggregate([{ $trace: { direction: 'backward' } }]).toArray(), 9);
    await h.expectCode(notes.aggregate([{ $trace: { as: 't' } }]).toArray(), 9);
    await h.expectCode(notes.aggregate([{ $trace: { direction: 'backward', as: 't', maxDepth: 0 } }]).toArray(), 2);
    await h.expectCode(notes.aggregate([{ $trace: { direction: 'backward', as: 't', depth: 2 } }]).toArray(), 9);
    await h.expectCode(notes.aggregate([{ $trace: 'backward' }]).toArray(), 9);
    /* {aggregate: 1} needs a first stage that makes its own documents (mongod: 73) */
    await h.expectCode(db.aggregate([{ $trace: { direction: 'backward', as: 't' } }]).toArray(), 73);
    /* a cause that names no op at the snapshot (put there by the pipeline itself) */
    await h.expectCode(notes.aggregate([{ $match: { _id: 'n1' } }, { $set: { _caused_by: [S.G + 1000] } },
                                      { $trace: { direction: 'backward', as: 't' } }]).toArray(), 2);
});

async function allTraces() {
    return {
        backE: await trace('notes', 'n3', { direction: 'backward' }),
        fwdN1: await trace('notes', 'n1', { direction: 'forward' }),
        backG: await trace('facts', 'f3', { direction: 'backward' }),
    };
}

/* serverStatus.nedb.checkpoints: {seq, replayedAtOpen, ...} */
async function checkpoints() {
    const st = await client.db('admin').command({ serverStatus: 1 });
    return { seq: Number(st.nedb.checkpoints.seq), replayed: Number(st.nedb.checkpoints.replayedAtOpen),
             committed: Number(st.nedb.committedSeq) };
}

h.test('provenance survives a restart (from the checkpoint written at shutdown)', async () => {
    await restart();
    const ck = await checkpoints();
    assert.deepEqual(ck, { seq: S.G, replayed: 0, committed: S.G }, 'opened from the shutdown checkpoint');
    assert.deepEqual(await allTraces(), {
        backE: expectedBackwardFromE(),
        fwdN1: expectedForwardFromN1(),
        backG: [entry('U', 'notes', 1)],
    });
});

h.test('provenance survives a kill (checkpoint plus replay of the log after it)', async () => {
    /* ops after the checkpoint, then SIGKILL: the next open replays them from the log */
    await insert('H', 'facts', { _id: 'f4', v: 4, _caused_by: [S.G, S.E] });
    await restart({ kill: true });
    assert.deepEqual(await checkpoints(), { seq: S.G, replayed: 1, committed: S.H },
                     'the checkpoint at G, then H replayed from the log');
    const t = await allTraces();
    assert.deepEqual(t.backE, expectedBackwardFromE());
    /* H names E (depth 4 from n1 via A) and G (depth 2 via U): once, at depth 2 */
    assert.deepEqual(t.fwdN1, [...expectedForwardFromN1().slice(0, 4), entry('H', 'facts', 2),
                               entry('E', 'notes', 3)]);
    assert.deepEqual(await trace('facts', 'f4', { direction: 'backward' }),
                     [entry('E', 'notes', 1), entry('G', 'facts', 1), entry('D', 'facts', 2),
                      entry('U', 'notes', 2), entry('B', 'notes', 3), entry('C', 'facts', 3),
                      entry('A', 'notes', 4)]);
});

h.test('nedbd exits 0 on SIGTERM', async () => {
    await client.close();
    client = null;
    await srv.stop();
});

h.run();
