'use strict';
/*
 * test_aggregate.js: every aggregation case file, against a live nedbd through the node
 * driver. The same files run in-process in the C unit tests (tests/aggregation/
 * test_agg_pipeline.c and test_agg_expr.c, whose header comments define the formats).
 *
 *   tests/aggregation/stages/*.json   {name, docs, collections, indexes, pipeline, let,
 *                                      collation, result | error, unordered, serverOnly,
 *                                      expectCollections}:
 *                                      "docs" go into "coll" and "collections" into theirs,
 *                                      "indexes": {name: [index spec]} are created on them,
 *                                      in a fresh database "test" per case; the pipeline runs as
 *                                      aggregate on "coll" (aggregate: 1 without "docs"),
 *                                      with the case's "let" and "collation" as the command's;
 *                                      "expectCollections": {name: [docs]} are compared
 *                                      (unordered) with those collections afterwards.
 *   tests/aggregation/expr/*.json     {expr, doc, result | missing | error}: evaluated as
 *                                      aggregate: 1 [{$documents: [doc]},
 *                                      {$project: {_id: 0, r: expr}}]; "missing": no r. The
 *                                      document goes in as {$literal: [doc]}, so that it is
 *                                      data, not an expression (it may hold "a.b" keys).
 *                                      Numbers, booleans, null and documents that are not
 *                                      operators mean something else as a $project value
 *                                      (inclusion, sub-projection), so those are written
 *                                      {$let: {vars: {}, in: expr}}, which evaluates expr
 *                                      as an expression.
 *
 * Values are compared type-strictly (lib/ejson_typed.js): numbers in the files keep
 * libbson's types, replies are read with promoteValues: false, NaN equals NaN, and
 * Decimal128 values compare by value (4.5 equals 4.500), as in-process.
 *
 * tests/aggregation/expected-failures.txt lists the cases known to fail
 * (`<file> :: <case>  # reason`); this file fails on a failure that is not listed and on
 * a listed case that passes. `--update-expected` rewrites the list from this run (keeping
 * the reasons of lines that stay). Output: per-file counts, a line per unexpected result,
 * and `N passed, N failed, N skipped` (skipped: listed failures, cases the driver
 * cannot send: duplicate keys, BSON undefined, dates beyond a JS Date's range, and cases
 * marked "inProcessOnly": "<why>" because a live server cannot reproduce their setup:
 * $$NOW fixed at 2020-01-01, documents a real collection would not store as given).
 *
 *   NEDBD=build/dev/nedbd node tests/integration/test_aggregate.js [--update-expected] [word...]
 */
const fs = require('fs');
const path = require('path');
const bson = require('bson');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');
const E = require('./lib/ejson_typed');

const ROOT = path.resolve(__dirname, '..', '..');
const CASES = path.join(ROOT, 'tests', 'aggregation');
const EXPECTED = path.join(CASES, 'expected-failures.txt');
const SEP = '  # ';
const READ = { promoteValues: false, promoteLongs: false, promoteBuffers: false, bsonRegExp: true };

const args = process.argv.slice(2);
const update = args.includes('--update-expected');
const words = args.filter((a) => !a.startsWith('--'));

/* ------------------------------------------------------------ expected failures */

function readExpected() {
    const m = new Map();
    let text = '';
    try {
        text = fs.readFileSync(EXPECTED, 'utf8');
    } catch (e) {
        return m;
    }
    for (const raw of text.split('\n')) {
        const line = raw.trimEnd();
        if (!line || line.startsWith('#') || !line.includes(' :: ')) continue;
        const j = line.indexOf(SEP, line.indexOf(' :: ') + 4);
        m.set((j < 0 ? line : line.slice(0, j)).trim(), j < 0 ? '' : line.slice(j + SEP.length).trim());
    }
    return m;
}

function writeExpected(m) {
    const lines = [
        '# Aggregation cases (tests/aggregation/*/*.json) that fail against nedbd today:',
        '# `<file> :: <case>  # reason`. tests/integration/test_aggregate.js fails on a failure',
        '# that is not listed and on a listed case that passes. Regenerate with:',
        '# node tests/integration/test_aggregate.js --update-expected',
        ...[...m.keys()].sort().map((k) => `${k}${SEP}${m.get(k) || 'failing'}`),
    ];
    fs.writeFileSync(EXPECTED, `${lines.join('\n')}\n`);
}

const oneLine = (s, max = 150) => {
    const t = String(s).replace(/\s+/g, ' ').trim();
    return t.length > max ? `${t.slice(0, max - 3)}...` : t;
};

/* ------------------------------------------------------------ running commands */

let client;

/* Runs a cursor command and drains it through getMore; returns the documents (tagged). */
async function drain(db, cmd) {
    const r = await db.command(cmd, READ);
    const out = r.cursor.firstBatch.map(E.fromDriver);
    let id = r.cursor.id;
    const coll = r.cursor.ns.slice(r.cursor.ns.indexOf('.') + 1);
    while (id && !(typeof id === 'object' ? id.isZero() : id === 0)) {
        const m = await db.command({ getMore: id, collection: coll }, READ);
        out.push(...m.cursor.nextBatch.map(E.fromDriver));
        id = m.cursor.nextBatch.length || m.cursor.id ? m.cursor.id : 0;
    }
    return out;
}

async function insertAll(db, name, docs) {
    if (docs.v.length === 0) {
        await db.command({ create: name });
        return;
    }
    const r = await db.command({ insert: name, documents: docs.v.map(E.toDriver),
                                 writeConcern: { j: false } });
    if (r.writeErrors && r.writeErrors.length)
        throw new Error(`inserting into ${name}: ${r.writeErrors[0].errmsg}`);
}

function sameDocs(got, want, unordered) {
    if (got.length !== want.length) return false;
    if (!unordered) return got.every((g, i) => E.equal(g, want[i]));
    const used = new Array(want.length).fill(false);
    return got.every((g) => {
        const i = want.findIndex((w, j) => !used[j] && E.equal(g, w));
        if (i < 0) return false;
        used[i] = true;
        return true;
    });
}

const showDocs = (docs) => `[${docs.slice(0, 20).map(E.show).join(', ')}${docs.length > 20 ? ', ...' : ''}]`;

/* ------------------------------------------------------------ stage cases */

/* Returns null when the case passes, else what went wrong. */
async function runStageCase(c) {
    const pipeline = E.get(c, 'pipeline');
    const docs = E.get(c, 'docs');
    const colls = E.get(c, 'collections');
    const let_ = E.get(c, 'let');
    const result = E.get(c, 'result');
    const error = E.get(c, 'error');
    const unordered = E.get(c, 'unordered');
    const expectColls = E.get(c, 'expectCollections');
    if (!pipeline || (!result && !error)) return 'malformed case (no pipeline, or neither result nor error)';
    /* the files are written for the database "test" (names such as "test.coll" appear in
     * results): drop it so every case starts from nothing */
    const db = client.db('test');
    await db.command({ dropDatabase: 1, writeConcern: { j: false } });
    if (docs) await insertAll(db, 'coll', docs);
    if (colls && colls.t === 'doc')
        for (const [name, d] of colls.v) if (d.t === 'array') await insertAll(db, name, d);
    const indexes = E.get(c, 'indexes');
    if (indexes && indexes.t === 'doc')
        for (const [name, specs] of indexes.v)
            await db.command({ createIndexes: name, indexes: E.toDriver(specs) });
    /* the command itself is a plain object (the driver adds its own fields to it); what
     * it holds keeps its key order as Maps */
    const cmd = { aggregate: docs ? 'coll' : 1, pipeline: E.toDriver(pipeline), cursor: {} };
    if (let_) cmd.let = E.toDriver(let_);
    const collation = E.get(c, 'collation');
    if (collation) cmd.collation = E.toDriver(collation);
    let got;
    try {
        got = await drain(db, cmd);
    } catch (e) {
        if (error && Number(e.code) === Number(error.v)) return null;
        if (error) return `expected error ${error.v}, got error ${Number(e.code)}: ${e.message}`;
        return `error ${Number(e.code)}: ${e.message}`;
    }
    if (error) return `expected error ${error.v}, got ${got.length} document(s): ${showDocs(got)}`;
    if (!sameDocs(got, result.v, unordered && unordered.v === true))
        return `got ${got.length} document(s): ${showDocs(got)}`;
    if (expectColls && expectColls.t === 'doc') {
        for (const [name, want] of expectColls.v) {
            const have = await drain(db, { find: name, filter: {}, batchSize: 1000 });
            if (!sameDocs(have, want.v, true))
                return `collection ${name} holds ${have.length} document(s): ${showDocs(have)}`;
        }
    }
    return null;
}

/* ------------------------------------------------------------ expression cases */

function exprSpec(expr) {
    const operatorDoc = expr.t === 'doc' && expr.v.length > 0 && expr.v[0][0].startsWith('$');
    if (expr.t === 'string' || expr.t === 'array' || operatorDoc) return E.toDriver(expr);
    return new Map([['$let', new Map([['vars', new Map()], ['in', E.toDriver(expr)]])]]);
}

async function runExprCase(c) {
    const expr = E.get(c, 'expr');
    const doc = E.get(c, 'doc') || { t: 'doc', v: [] };
    const result = E.get(c, 'result');
    const missing = E.get(c, 'missing');
    const error = E.get(c, 'error');
    if (!expr || (!result && !missing && !error)) return 'malformed case';
    const db = client.db('agg_expr');
    const pipeline = [new Map([['$documents', new Map([['$literal', [E.toDriver(doc)]]])]]),
        new Map([['$project', new Map([['_id', new bson.Int32(0)], ['r', exprSpec(expr)]])]])];
    let got;
    try {
        got = await drain(db, { aggregate: 1, pipeline, cursor: {} });
    } catch (e) {
        if (error && Number(e.code) === Number(error.v)) return null;
        if (error) return `expected error ${error.v}, got error ${Number(e.code)}: ${e.message}`;
        return `error ${Number(e.code)}: ${e.message}`;
    }
    if (got.length !== 1) return `got ${got.length} document(s): ${showDocs(got)}`;
    const r = E.get(got[0], 'r');
    if (error) return `expected error ${error.v}, got ${r ? E.show(r) : 'no r'}`;
    if (missing && missing.v === true) return r ? `expected no r, got ${E.show(r)}` : null;
    if (!r) return `expected ${E.show(result)}, got no r: ${E.show(got[0])}`;
    return E.equal(r, result) ? null : `expected ${E.show(result)}, got ${E.show(r)}`;
}

/* ------------------------------------------------------------ main */

function caseKey(dir, file, c, idx, seen) {
    const name = E.get(c, 'name');
    let base = `${dir}/${file} :: ${name && name.t === 'string' ? name.v : oneLine(c.source, 200)}`;
    if (seen.has(base)) base = `${base} (#${idx})`;
    seen.add(base);
    return base;
}

async function main() {
    const expected = readExpected();
    const srv = await h.startServer();
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 5000 });
    await client.connect();
    let passed = 0, failed = 0, skipped = 0;
    const failures = new Map(); // key -> message
    const ran = new Map();      // key -> 'ok' | 'fail' | 'skip'
    for (const dir of ['stages', 'expr']) {
        const files = fs.readdirSync(path.join(CASES, dir)).filter((f) => f.endsWith('.json')).sort()
            .filter((f) => words.length === 0 || words.some((w) => `${dir}/${f}`.includes(w)));
        for (const file of files) {
            const text = fs.readFileSync(path.join(CASES, dir, file), 'utf8');
            let cases;
            try {
                cases = E.parseAll(text);
            } catch (e) {
                console.log(`not ok - ${dir}/${file}: ${e.message}`);
                failed++;
                continue;
            }
            const seen = new Set();
            const st = { ok: 0, fail: 0, listed: 0, skip: 0 };
            for (let i = 0; i < cases.length; i++) {
                const c = cases[i];
                const key = caseKey(dir, file, c, i + 1, seen);
                const inProcess = E.get(c, 'inProcessOnly');
                if (inProcess) {
                    console.log(`# skip ${key}: in-process only: ${inProcess.v}`);
                    st.skip++;
                    skipped++;
                    ran.set(key, 'skip');
                    continue;
                }
                const why = ['docs', 'collections', 'pipeline', 'let', 'collation', 'expr', 'doc']
                    .map((k) => E.get(c, k)).filter(Boolean).map(E.unsendable).find(Boolean);
                if (why) {
                    console.log(`# skip ${key}: the node driver cannot send ${why}`);
                    st.skip++;
                    skipped++;
                    ran.set(key, 'skip');
                    continue;
                }
                let msg;
                try {
                    msg = dir === 'stages' ? await runStageCase(c) : await runExprCase(c);
                } catch (e) {
                    msg = `runner error: ${e.message}`;
                }
                if (!srv.alive()) {
                    console.log(`not ok - ${key}: nedbd died running this case\n#   case: ` +
                                `${oneLine(c.source, 600)}\n# --- log tail:\n${srv.logTail(15).replace(/^/gm, '# ')}`);
                    console.log(`${passed} passed, ${failed + 1} failed`);
                    process.exit(1);
                }
                if (msg === null) {
                    ran.set(key, 'ok');
                    if (expected.has(key)) {
                        console.log(`not ok - ${key}: LISTED IN expected-failures.txt BUT PASSES`);
                        failed++;
                        st.fail++;
                    } else {
                        passed++;
                        st.ok++;
                    }
                } else {
                    ran.set(key, 'fail');
                    failures.set(key, msg);
                    if (expected.has(key)) {
                        skipped++;
                        st.listed++;
                    } else {
                        console.log(`not ok - ${key}\n#   case: ${oneLine(c.source, 600)}\n#   ${oneLine(msg, 800)}`);
                        failed++;
                        st.fail++;
                    }
                }
            }
            console.log(`# ${`${dir}/${file}`.padEnd(34)} ${String(cases.length).padStart(4)} cases: ` +
                        `${st.ok} passed, ${st.fail} failed, ${st.listed} expected failures` +
                        `${st.skip ? `, ${st.skip} not sendable` : ''}`);
        }
    }
    await client.close();
    await srv.stop();
    if (update) {
        const next = new Map();
        for (const [k, msg] of failures) next.set(k, expected.get(k) || oneLine(msg, 140));
        if (words.length) /* a partial run keeps the lines of files it did not run */
            for (const [k, r] of expected) if (!ran.has(k)) next.set(k, r);
        writeExpected(next);
        console.log(`# wrote ${next.size} line(s) to ${path.relative(ROOT, EXPECTED)}`);
    } else {
        const stale = [...expected.keys()].filter((k) => !ran.has(k) && words.length === 0);
        for (const k of stale) console.log(`# listed but not found (remove it): ${k}`);
    }
    if (failed === 0) fs.rmSync(srv.dir, { recursive: true, force: true });
    console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
    process.exitCode = failed && !update ? 1 : 0;
}

main().catch((e) => {
    console.log(`not ok - runner: ${e.stack || e}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
});
