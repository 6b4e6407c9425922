#!/usr/bin/env node
'use strict';
/*
 * tests/spec/unified.js: runs MongoDB unified-format spec tests against a real nedbd.
 *
 *   node tests/spec/unified.js [options] [dir-or-file ...]
 *
 * Starts its own nedbd ($NEDBD, default build/spec/nedbd of this checkout) on a free
 * loopback port with a fresh temporary --dbpath, runs every *.json file of the given
 * directories (default: crud/tests/unified, collection-management/tests,
 * index-management/tests, run-command/tests/unified, versioned-api/tests, sessions/tests,
 * retryable-reads/tests/unified and unified-test-format/tests/valid-pass under $NEDB_SPECS, default ../shared/specs/source
 * next to this checkout; the retryable-writes, transactions and change-streams suites
 * need a replica set and would only skip), prints one line per test (`ok`, `not ok`, `skip`, each `<file> :: <test>`,
 * with the reason after `  # `), then exactly one final line `N passed, N failed, N skipped`.
 *
 * tests/spec/expected-failures.txt lists the tests known to fail, one per line:
 *     <file> :: <test description>  # one-line reason
 * (<file> relative to the specs directory). Exit status 1 when a test fails that is not
 * listed, or when a listed test passes (the list only shrinks: remove the line, or
 * regenerate it). A listed test that is now skipped is reported but not fatal.
 *
 * Options:
 *   --update-expected   rewrite expected-failures.txt from this run: the failing tests, with
 *                       the reasons of lines already there, "not yet implemented: <error>"
 *                       for new ones; lines for files not run this time are kept.
 *   --self-test         run the matcher's unit checks (tests/spec/test_matcher.js) only.
 *   --filter <text>     only tests whose `<file> :: <description>` contains <text>.
 *   --verbose           also print skip reasons for whole files and the server log tail
 *                       on failures.
 * Environment: NEDBD, NEDB_SPECS, NEDB_SPEC_TIMEOUT (seconds per test, default 30).
 */
const fs = require('fs');
const path = require('path');

const HERE = __dirname;
const ROOT = path.resolve(HERE, '..', '..');
const EXPECTED = path.join(HERE, 'expected-failures.txt');
const DEFAULT_DIRS = ['crud/tests/unified', 'collection-management/tests', 'index-management/tests',
                      'run-command/tests/unified', 'versioned-api/tests', 'sessions/tests',
                      'retryable-reads/tests/unified', 'unified-test-format/tests/valid-pass'];

function usage(msg) {
    if (msg) process.stderr.write(`unified.js: ${msg}\n`);
    process.stderr.write('usage: node tests/spec/unified.js [--update-expected] [--self-test] ' +
                         '[--filter text] [--verbose] [dir-or-file ...]\n');
    process.exit(2);
}

function parseArgs(argv) {
    const o = { update: false, selfTest: false, filter: null, verbose: false, paths: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === '--update-expected') o.update = true;
        else if (a === '--self-test') o.selfTest = true;
        else if (a === '--verbose' || a === '-v') o.verbose = true;
        else if (a === '--filter') {
            if (i + 1 >= argv.length) usage('--filter needs a value');
            o.filter = argv[++i];
        } else if (a === '--help' || a === '-h') usage();
        else if (a.startsWith('-')) usage(`unknown option ${a}`);
        else o.paths.push(a);
    }
    return o;
}

/* ------------------------------------------------------------ expected-failures.txt */

const SEP = '  # ';
/* The suites configure fail points (configureFailPoint), a test-only command. */
const TEST_ARGS = ['--setParameter', 'enableTestCommands=1'];

function readExpected() {
    const entries = new Map(); // key -> reason
    let text = '';
    try {
        text = fs.readFileSync(EXPECTED, 'utf8');
    } catch (e) {
        return entries;
    }
    for (const raw of text.split('\n')) {
        const line = raw.trimEnd();
        if (!line || line.startsWith('#')) continue;
        const i = line.indexOf(' :: ');
        if (i < 0) continue;
        const j = line.indexOf(SEP, i + 4);
        const key = (j < 0 ? line : line.slice(0, j)).trim();
        entries.set(key, j < 0 ? '' : line.slice(j + SEP.length).trim());
    }
    return entries;
}

function fileOfKey(key) {
    return key.slice(0, key.indexOf(' :: '));
}

function oneLine(s, max = 160) {
    const t = String(s).replace(/\s+/g, ' ').replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:<port>').trim();
    return t.length > max ? `${t.slice(0, max - 3)}...` : t;
}

function writeExpected(entries) {
    const keys = [...entries.keys()].sort();
    const lines = [
        '# Unified-format spec tests that fail against nedbd today: `<file> :: <test>  # reason`.',
        '# tests/spec/unified.js exits non-zero when a test fails that is not listed here, or when a',
        '# listed test passes. Regenerate with: node tests/spec/unified.js --update-expected',
        ...keys.map((k) => `${k}${SEP}${entries.get(k) || 'failing'}`),
    ];
    fs.writeFileSync(EXPECTED, `${lines.join('\n')}\n`);
}

/* ------------------------------------------------------------ files */

function specsRoot() {
    return path.resolve(process.env.NEDB_SPECS || path.join(ROOT, '..', 'shared', 'specs', 'source'));
}

function collectFiles(paths, specs) {
    const out = [];
    const add = (p) => {
        const st = fs.statSync(p);
        if (st.isDirectory()) {
            for (const f of fs.readdirSync(p).sort()) {
                if (f.endsWith('.json')) out.push(path.join(p, f));
            }
        } else {
            out.push(p);
        }
    };
    for (const p of paths) {
        const abs = fs.existsSync(p) ? path.resolve(p) : path.resolve(specs, p);
        if (!fs.existsSync(abs)) throw new Error(`no such file or directory: ${p}`);
        add(abs);
    }
    return out;
}

function displayName(file, specs) {
    const rel = path.relative(specs, file);
    return rel.startsWith('..') || path.isAbsolute(rel) ? path.basename(file) : rel.split(path.sep).join('/');
}

/* ------------------------------------------------------------ main */

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    if (opts.selfTest) {
        const { runSelfTest } = require('./test_matcher');
        return (await runSelfTest()) ? 0 : 1;
    }
    if (!process.env.NEDBD) {
        const def = path.join(ROOT, 'build', 'spec', 'nedbd');
        if (fs.existsSync(def)) process.env.NEDBD = def;
    }
    const { EJSON } = require('mongodb').BSON;
    const { startServer } = require('../integration/lib/server');
    const { Runner } = require('./lib/runner');
    const { setExactTypes } = require('./lib/operations');

    const specs = specsRoot();
    const files = collectFiles(opts.paths.length ? opts.paths : DEFAULT_DIRS, specs);
    const expected = readExpected();

    let srv = await startServer({ args: TEST_ARGS });
    const runner = new Runner({ uri: srv.uri });
    await runner.init();
    console.log(`# nedbd ${runner.version.join('.')} (${runner.topology}) on port ${srv.port}; ` +
                `${files.length} file(s) from ${displayName(specs, ROOT)}`);

    const counts = { ok: 0, fail: 0, skip: 0 };
    const failures = new Map();   // key -> message
    const ran = new Map();        // key -> status of every test run
    const filesRun = new Set();
    const seen = new Map();       // key -> occurrences (duplicate descriptions)

    for (const file of files) {
        const name = displayName(file, specs);
        let json;
        try {
            json = EJSON.parse(fs.readFileSync(file, 'utf8'), { relaxed: false });
        } catch (e) {
            console.log(`not ok ${name} :: (file)${SEP}cannot parse: ${oneLine(e.message)}`);
            counts.fail++;
            failures.set(`${name} :: (file)`, `cannot parse: ${e.message}`);
            continue;
        }
        filesRun.add(name);
        // Test keys, made unique within the file by a " (2)" suffix on repeated descriptions.
        const keys = (Array.isArray(json.tests) ? json.tests : []).map((t) => {
            const key = `${name} :: ${oneLine(t.description, 1000)}`;
            const n = (seen.get(key) || 0) + 1;
            seen.set(key, n);
            return n > 1 ? `${key} (${n})` : key;
        });
        const select = (i) => !opts.filter || keys[i].includes(opts.filter);
        let index = 0;
        setExactTypes(!name.includes('retryable-reads')); /* why: lib/operations.js */
        for await (const res of runner.runFile(json, select, path.basename(file))) {
            const key = keys[index++];
            if (res.status === 'filtered') continue;
            ran.set(key, res.status);
            if (res.status === 'ok') {
                counts.ok++;
                console.log(`ok ${key}${expected.has(key) ? `${SEP}LISTED IN expected-failures.txt BUT PASSES` : ''}`);
            } else if (res.status === 'skip') {
                counts.skip++;
                console.log(`skip ${key}${SEP}${oneLine(res.message, 300)}`);
            } else {
                counts.fail++;
                failures.set(key, res.message);
                const tag = expected.has(key) ? 'expected failure: ' : '';
                console.log(`not ok ${key}${SEP}${tag}${oneLine(res.message, 400)}`);
                if (opts.verbose) for (const l of srv.logTail(10).split('\n')) console.log(`#   ${l}`);
            }
            if (!srv.alive()) {
                console.log(`# nedbd died (${srv.exit.signal || `code ${srv.exit.code}`}); log tail:`);
                for (const l of srv.logTail(30).split('\n')) console.log(`#   ${l}`);
                srv = await startServer({ args: TEST_ARGS });
                await runner.restart(srv.uri);
                console.log(`# restarted nedbd on port ${srv.port}`);
            }
        }
    }

    await runner.close();
    try {
        await srv.stop();
    } catch (e) {
        console.log(`# warning: ${oneLine(e.message, 300)}`);
    }

    const unexpected = [...failures.keys()].filter((k) => !expected.has(k));
    const passing = [...expected.keys()].filter((k) => ran.get(k) === 'ok');
    const skippedListed = [...expected.keys()].filter((k) => ran.get(k) === 'skip');
    const stale = [...expected.keys()].filter((k) => filesRun.has(fileOfKey(k)) && !ran.has(k) && !opts.filter);

    let status = 0;
    if (opts.update) {
        const next = new Map();
        for (const [k, reason] of expected) {
            if (!filesRun.has(fileOfKey(k)) || opts.filter && !ran.has(k)) next.set(k, reason);
        }
        for (const [k, msg] of failures) {
            next.set(k, expected.get(k) || `not yet implemented: ${oneLine(msg, 140)}`);
        }
        writeExpected(next);
        console.log(`# wrote ${path.relative(ROOT, EXPECTED)}: ${next.size} test(s) ` +
                    `(${unexpected.length} added, ${[...expected.keys()].filter((k) => !next.has(k)).length} removed)`);
    } else {
        for (const k of unexpected) console.log(`# UNEXPECTED FAILURE: ${k}`);
        for (const k of passing) console.log(`# NOW PASSES (remove it from expected-failures.txt): ${k}`);
        for (const k of skippedListed) console.log(`# note: listed but skipped now: ${k}`);
        for (const k of stale) console.log(`# note: listed but no such test: ${k}`);
        if (unexpected.length || passing.length) {
            console.log(`# ${unexpected.length} unexpected failure(s), ${passing.length} listed test(s) passing; ` +
                        'fix them or run with --update-expected');
            status = 1;
        } else if (failures.size) {
            console.log(`# all ${failures.size} failure(s) are listed in ${path.relative(ROOT, EXPECTED)}`);
        }
    }
    console.log(`${counts.ok} passed, ${counts.fail} failed, ${counts.skip} skipped`);
    return status;
}

main().then((code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 200).unref();
}, (e) => {
    console.error(e && e.stack ? e.stack : String(e));
    console.log('0 passed, 1 failed, 0 skipped');
    process.exit(1);
});
