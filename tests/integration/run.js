#!/usr/bin/env node
'use strict';
/*
 * tests/integration/run.js: runs every integration test file against a real nedbd.
 *
 *   NEDBD=build/dev/nedbd [NEDB_TOOL=build/dev/nedb] node tests/integration/run.js [filter...]
 *
 * Finds tests/integration/test_*.js, test_*.py and test_*.sh (sorted by name; with filter
 * arguments, only files whose name contains one of them), runs each as its own child process
 * (node / python3 / bash) one after the other, streams its output, and parses the last
 * `N passed, N failed[, N skipped]` line it prints (lib/server.js and lib/server.py print it).
 * At the end: one line per file, then exactly `N passed, N failed` (plus `, N skipped` when
 * some were). Exit status 1 if any test failed or any file crashed (non-zero exit without a
 * failure), timed out, or printed no count line; each of those counts as one failure.
 *
 * Environment: NEDBD, NEDB_TOOL (made absolute and passed on), NEDB_PYTHON (default
 * /usr/bin/python3: Debian's python3-pymongo lives there), NEDB_IT_TIMEOUT (seconds per
 * file, default 300).
 */
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');

const HERE = __dirname;
const ROOT = path.resolve(HERE, '..', '..');
const TIMEOUT_S = Number(process.env.NEDB_IT_TIMEOUT || 300);
const PYTHON = process.env.NEDB_PYTHON || '/usr/bin/python3';
let current = null; // the child running now, killed with its group if we are interrupted
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
        if (current) {
            try { process.kill(-current.pid, 'SIGTERM'); } catch (e) { /* already gone */ }
        }
        process.exit(130);
    });
}
const COUNT_RE = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$/;

function interpreter(file) {
    if (file.endsWith('.js')) return process.execPath;
    if (file.endsWith('.py')) return PYTHON;
    if (file.endsWith('.sh')) return 'bash';
    return null;
}

function discover(filters) {
    return fs.readdirSync(HERE)
        .filter((f) => /^test_.*\.(js|py|sh)$/.test(f))
        .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
        .sort();
}

function childEnv() {
    const env = { ...process.env, PYTHONUNBUFFERED: '1' };
    for (const k of ['NEDBD', 'NEDB_TOOL'])
        if (env[k]) env[k] = path.resolve(env[k]);
    return env;
}

/* Runs one file; resolves {file, passed, failed, skipped, problem}. */
function runFile(file) {
    return new Promise((resolve) => {
        const t0 = Date.now();
        const child = spawn(interpreter(file), [path.join(HERE, file)], {
            cwd: ROOT,
            env: childEnv(),
            stdio: ['ignore', 'pipe', 'pipe'],
            detached: true, // its own process group, so a timeout kills servers it started too
        });
        current = child;
        let lastCount = null;
        let pending = '';
        const onLine = (line) => {
            process.stdout.write(`  ${line}\n`);
            const m = line.match(COUNT_RE);
            if (m) lastCount = { passed: +m[1], failed: +m[2], skipped: +(m[3] || 0) };
        };
        child.stdout.on('data', (d) => {
            pending += d.toString();
            const lines = pending.split('\n');
            pending = lines.pop();
            lines.forEach(onLine);
        });
        child.stderr.on('data', (d) => {
            for (const line of d.toString().split('\n'))
                if (line.length) process.stdout.write(`  [stderr] ${line}\n`);
        });
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            try { process.kill(-child.pid, 'SIGKILL'); } catch (e) { child.kill('SIGKILL'); }
        }, TIMEOUT_S * 1000);
        child.on('error', (e) => {
            onLine(`(could not start: ${e.message})`);
        });
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            if (pending) onLine(pending);
            const r = { file, passed: 0, failed: 0, skipped: 0, problem: null, ms: Date.now() - t0 };
            if (lastCount) Object.assign(r, lastCount);
            if (timedOut) r.problem = `timed out after ${TIMEOUT_S} s`;
            else if (!lastCount) r.problem = `printed no count line (exit ${signal || code})`;
            else if (code !== 0 && r.failed === 0) r.problem = `crashed (exit ${signal || code})`;
            if (r.problem) r.failed += 1;
            resolve(r);
        });
    });
}

async function main() {
    const filters = process.argv.slice(2);
    const files = discover(filters);
    if (files.length === 0) {
        console.log(`no test files match ${filters.join(' ') || '(none found)'}`);
        console.log('0 passed, 1 failed');
        process.exit(1);
    }
    console.log(`nedbd: ${process.env.NEDBD || '(NEDBD unset: newest build/*/nedbd)'}`);
    const results = [];
    for (const f of files) {
        console.log(`\n== ${f}`);
        results.push(await runFile(f));
    }
    console.log('\n== summary');
    let passed = 0, failed = 0, skipped = 0;
    for (const r of results) {
        passed += r.passed;
        failed += r.failed;
        skipped += r.skipped;
        const extra = r.skipped ? `, ${r.skipped} skipped` : '';
        const problem = r.problem ? `  <-- ${r.problem}` : '';
        console.log(`${r.file.padEnd(28)} ${r.passed} passed, ${r.failed} failed${extra} ` +
                    `(${(r.ms / 1000).toFixed(1)} s)${problem}`);
    }
    console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
    process.exit(failed ? 1 : 0);
}

main();
