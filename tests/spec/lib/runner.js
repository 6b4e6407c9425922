'use strict';
/*
 * lib/runner.js: executes the tests of one unified-format file against a server ("Test
 * Runner Implementation" of the unified test format), written from the specification text.
 *
 *   const r = new Runner({ uri });  await r.init();
 *   for await (const res of r.runFile(path, json)) ...   // { description, status, message }
 *   await r.close();
 *
 * status is 'ok', 'fail' or 'skip'. Anything this runner does not implement (an entity type,
 * operation, argument, event type, matching operator ...) raises UnsupportedError and makes
 * the test a skip with that reason; it never passes. The checks that can be made before a
 * test runs (operations, entity types, event types, log expectations) are made first so
 * that a test does not turn from a failure into a skip as the server grows.
 *
 * Not supported (the test is skipped with the reason): bucket (GridFS), thread and
 * clientEncryption entities, change streams, storeEventsAsEntities, observeLogMessages /
 * expectLogMessages, SDAM events, find cursorType, $$placeholder, the testRunner operations
 * loop, runOnThread, waitForThread, targetedFailPoint, recordTopologyDescription,
 * assertTopologyType and waitForPrimaryChange, and driver-specific operations such as
 * listCollectionObjects or mapReduce. The "sharded-replicaset" topology is never met.
 * Known looseness: documents returned by find, aggregate, distinct and findOneAnd* are read
 * with exact number classes, but other results the driver decodes to JS numbers (runCommand
 * replies, command-succeeded replies, counts) cannot tell int, long and an integral double
 * apart, so $$type accepts any of them there.
 */
const { MongoClient, MongoServerError, MongoBulkWriteError } = require('mongodb');
const fs = require('fs');
const path = require('path');
const { match, exactMatch, MatchError, UnsupportedError, show, numeric } = require('./matcher');
const { EntityMap, SUPPORTED_EVENTS, plain } = require('./entities');
const { OPERATIONS, ALL_NAMES, bulkWriteResult, clientBulkWriteResult } = require('./operations');

/* The schema versions this runner accepts: 1.0 up to this one (same major). Features of
 * these versions that are not implemented are detected per test and skipped. */
const SCHEMA_VERSION = [1, 23, 0];

const TEST_RUNNER_OPS = new Set(['failPoint', 'assertCollectionExists', 'assertCollectionNotExists',
    'assertIndexExists', 'assertIndexNotExists', 'createEntities', 'assertSameLsidOnLastTwoCommands',
    'assertDifferentLsidOnLastTwoCommands', 'wait', 'waitForEvent', 'assertEventCount',
    'assertNumberConnectionsCheckedOut', 'assertSessionTransactionState', 'assertSessionPinned',
    'assertSessionUnpinned', 'assertSessionDirty', 'assertSessionNotDirty']);

const ROOT = path.resolve(__dirname, '..', '..', '..');

/* Tests the pinned driver cannot pass whatever the server does: skipped with the reason
 * (checked in the driver's source), so that expected-failures.txt is about nedbd only.
 * Keys are `<file name> :: <test description>`. */
const DRIVER_DEVIATIONS = new Map([
    ...['Aggregate with $out', 'BulkWrite', 'FindOneAndReplace', 'FindOneAndUpdate', 'InsertMany'].map((op) => [
        `bypassDocumentValidation.json :: ${op} passes bypassDocumentValidation: false`,
        'node driver 7.8 sends bypassDocumentValidation only when true for this operation',
    ]),
    ...['insertOne', 'insertMany', 'bulkWrite'].map((op) => [
        `create-null-ids.json :: inserting _id with type null via ${op}`,
        'node driver 7.8 replaces a null _id with a new ObjectId before sending (utils.js ' +
            'maybeAddIdToDocuments: document._id == null); tests/integration/test_crud.js ' +
            'checks the server with a raw insert',
    ]),
]);

/* Tests that check a limitation of a single mongod which NEDB deliberately does not have
 * (DESIGN.md names the feature): skipped with the reason. Keys as above. */
const NEDB_DEVIATIONS = new Map([
    ...['find', 'aggregate', 'distinct'].map((op) => [
        `snapshot-sessions-not-supported-server-error.json :: Server returns an error on ${op} with snapshot`,
        'a standalone mongod refuses readConcern level "snapshot"; NEDB serves it (DESIGN.md ' +
            'section 5 time travel: the reply carries atClusterTime and later reads of the ' +
            'session use it), tested in tests/integration/test_sessions.js',
    ]),
]);

class Failure extends Error {}

function fail(msg) { throw new Failure(msg); }

function parseVersion(s) {
    const parts = String(s).split('.').map((x) => parseInt(x, 10));
    if (parts.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`bad version string ${s}`);
    while (parts.length < 3) parts.push(0);
    return parts.slice(0, 3);
}

function cmpVersion(a, b) {
    for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

function schemaSupported(v) {
    const p = parseVersion(v);
    return p[0] === SCHEMA_VERSION[0] && cmpVersion(p, SCHEMA_VERSION) <= 0;
}

/* Error-code names from bsonq/bq_codes.def (generated from MongoDB's error_codes.yml), for
 * errorCodeName on errors that only carry a code (bulk write errors). */
let codeNames = null;
function codeOfName(name) {
    if (!codeNames) {
        codeNames = new Map();
        try {
            const text = fs.readFileSync(path.join(ROOT, 'bsonq', 'bq_codes.def'), 'utf8');
            for (const m of text.matchAll(/BQ_CODE\((\w+),\s*(\d+)\)/g)) codeNames.set(m[1].toLowerCase(), Number(m[2]));
        } catch (e) { /* no table: names cannot be translated */ }
    }
    return codeNames.get(String(name).toLowerCase());
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Walks operations (with nested callback/loop/runOnThread operations). */
function* allOperations(ops) {
    for (const op of ops || []) {
        yield op;
        const a = op.arguments || {};
        if (Array.isArray(a.callback)) yield* allOperations(a.callback);
        if (Array.isArray(a.operations)) yield* allOperations(a.operations);
        if (a.operation) yield* allOperations([a.operation]);
    }
}

class Runner {
    constructor({ uri }) {
        this.uri = uri;                     // mongodb://127.0.0.1:<port>/
        this.baseUri = uri;
        this.internal = null;
        this.serverParams = new Map();
    }

    async init() {
        this.internal = new MongoClient(`${this.uri}?directConnection=true&serverSelectionTimeoutMS=5000`);
        await this.internal.connect();
        const admin = this.internal.db('admin');
        const bi = await admin.command({ buildInfo: 1 });
        const va = bi.versionArray;
        this.version = Array.isArray(va) && va.length >= 3 ? va.slice(0, 3).map((x) => Number(plain(x)))
            : parseVersion(String(bi.version).split('-')[0]);
        const hello = await admin.command({ hello: 1 });
        if (hello.msg === 'isdbgrid') this.topology = 'sharded';
        else if (hello.setName) this.topology = 'replicaset';
        else this.topology = 'single';
        // Terminating Open Transactions: servers without the command simply do not have any.
        try { await admin.command({ killAllSessions: [] }); } catch (e) { /* ignored */ }
    }

    async close() {
        if (this.internal) await this.internal.close(true).catch(() => {});
        this.internal = null;
    }

    /* After the server was restarted (on another port): reconnect and re-read its facts. */
    async restart(uri) {
        await this.close();
        this.uri = uri;
        this.baseUri = uri;
        this.serverParams.clear();
        await this.init();
    }

    /* ------------------------------------------------------------ runOnRequirements */

    async requirementUnmet(req) {
        for (const k of Object.keys(req)) {
            if (!['minServerVersion', 'maxServerVersion', 'topologies', 'serverless', 'auth',
                'authMechanism', 'csfle', 'serverParameters'].includes(k)) {
                return `unknown requirement ${k}`;
            }
        }
        if (req.minServerVersion && cmpVersion(this.version, parseVersion(req.minServerVersion)) < 0) {
            return `server ${this.version.join('.')} < minServerVersion ${req.minServerVersion}`;
        }
        if (req.maxServerVersion && cmpVersion(this.version, parseVersion(req.maxServerVersion)) > 0) {
            return `server ${this.version.join('.')} > maxServerVersion ${req.maxServerVersion}`;
        }
        if (req.topologies) {
            // "sharded" accepts any sharded cluster; this runner cannot tell whether shards are
            // replica sets, so "sharded-replicaset" is never considered met.
            const ok = req.topologies.some((t) => t === this.topology);
            if (!ok) return `topology ${this.topology} not in ${req.topologies.join(',')}`;
        }
        if (req.serverless === 'require') return 'serverless required';
        if (req.auth === true) return 'auth required';
        if (req.authMechanism) return `authMechanism ${req.authMechanism} required (no auth)`;
        if (req.csfle === true) return 'csfle required';
        if (req.serverParameters) {
            for (const [name, want] of Object.entries(req.serverParameters)) {
                let have;
                if (this.serverParams.has(name)) {
                    have = this.serverParams.get(name);
                } else {
                    try {
                        const r = await this.internal.db('admin').command({ getParameter: 1, [name]: 1 });
                        have = r[name];
                    } catch (e) {
                        have = undefined;
                    }
                    this.serverParams.set(name, have);
                }
                if (have === undefined) return `server parameter ${name} not supported`;
                try {
                    match(want, have, { root: false });
                } catch (e) {
                    return `server parameter ${name} is ${show(have)}, not ${show(want)}`;
                }
            }
        }
        return null;
    }

    /* null when some requirement is met (or there are none), else the reasons. */
    async requirementsUnmet(reqs) {
        if (!reqs) return null;
        const reasons = [];
        for (const r of reqs) {
            const why = await this.requirementUnmet(r);
            if (!why) return null;
            reasons.push(why);
        }
        return `runOnRequirements not met: ${reasons.join('; ')}`;
    }

    /* ------------------------------------------------------------ files and tests */

    /* Runs every test of a parsed file; yields { description, status, message }. Tests for
     * which select(index, description) is false are not run and yield status 'filtered'. */
    async* runFile(file, select = () => true, fileName = '') {
        const tests = Array.isArray(file.tests) ? file.tests : [];
        if (!file.schemaVersion || !schemaSupported(file.schemaVersion)) {
            for (const t of tests) {
                yield { description: t.description, status: 'fail',
                    message: `unsupported schemaVersion ${file.schemaVersion} (runner supports 1.0-${SCHEMA_VERSION.join('.')})` };
            }
            return;
        }
        const fileUnmet = await this.requirementsUnmet(file.runOnRequirements);
        for (const [i, t] of tests.entries()) {
            if (!select(i, t.description)) {
                yield { description: t.description, status: 'filtered' };
                continue;
            }
            if (fileUnmet) {
                yield { description: t.description, status: 'skip', message: fileUnmet };
                continue;
            }
            const deviation = DRIVER_DEVIATIONS.get(`${fileName} :: ${t.description}`);
            if (deviation) {
                yield { description: t.description, status: 'skip', message: `driver: ${deviation}` };
                continue;
            }
            const nedb = NEDB_DEVIATIONS.get(`${fileName} :: ${t.description}`);
            if (nedb) {
                yield { description: t.description, status: 'skip', message: `nedb: ${nedb}` };
                continue;
            }
            yield { description: t.description, ...(await this.runTest(file, t)) };
        }
    }

    /* Static checks: what this runner cannot do, found before running. Returns a reason. */
    prescan(file, test) {
        const kinds = new Map();
        const noteEntities = (list) => {
            for (const obj of list || []) {
                const type = Object.keys(obj)[0];
                if (!['client', 'database', 'collection', 'session'].includes(type)) return `${type} entities`;
                const spec = obj[type];
                kinds.set(spec.id, type);
                if (type === 'client') {
                    for (const e of spec.observeEvents || []) if (!SUPPORTED_EVENTS.has(e)) return `observeEvents ${e}`;
                    if (spec.storeEventsAsEntities) return 'storeEventsAsEntities';
                    if (spec.observeLogMessages) return 'observeLogMessages';
                    if (spec.autoEncryptOpts) return 'autoEncryptOpts';
                }
            }
            return null;
        };
        let why = noteEntities(file.createEntities);
        if (why) return why;
        for (const op of allOperations(test.operations)) {
            if (op.object === 'testRunner') {
                if (!TEST_RUNNER_OPS.has(op.name)) return `testRunner operation ${op.name}`;
                if (op.name === 'createEntities') {
                    why = noteEntities(op.arguments && op.arguments.entities);
                    if (why) return why;
                }
                continue;
            }
            const kind = kinds.get(op.object);
            const table = kind ? OPERATIONS[kind] : null;
            if (table ? !table[op.name] : !ALL_NAMES.has(op.name)) return `${kind || 'entity'} operation ${op.name}`;
            if (table) {
                for (const a of Object.keys(op.arguments || {})) {
                    if (a !== 'session' && !table[op.name].args.includes(a)) return `argument ${a} of ${op.name}`;
                }
            }
            if (op.saveResultAsEntity && ['createFindCursor', 'createCommandCursor'].includes(op.name)) {
                kinds.set(op.saveResultAsEntity, 'cursor');
            }
            if (op.expectError) {
                for (const k of Object.keys(op.expectError)) {
                    if (!EXPECTED_ERROR_KEYS.has(k)) return `expectError.${k}`;
                }
            }
        }
        if (test.expectLogMessages) return 'expectLogMessages';
        for (const e of test.expectEvents || []) {
            if (e.eventType && e.eventType !== 'command' && e.eventType !== 'cmap') return `eventType ${e.eventType}`;
        }
        return null;
    }

    async runTest(file, test) {
        if (test.skipReason) return { status: 'skip', message: `skipReason: ${test.skipReason}` };
        const unmet = await this.requirementsUnmet(test.runOnRequirements);
        if (unmet) return { status: 'skip', message: unmet };
        const why = this.prescan(file, test);
        if (why) return { status: 'skip', message: `unsupported: ${why}` };

        const ctx = new TestContext(this, file, test);
        const timeoutMs = Number(process.env.NEDB_SPEC_TIMEOUT || 30) * 1000;
        let timer;
        const timeout = new Promise((resolve) => {
            timer = setTimeout(() => resolve({ status: 'fail', message: `timed out after ${timeoutMs / 1000} s` }), timeoutMs);
        });
        const run = (async () => {
            try {
                await ctx.execute();
                return { status: 'ok' };
            } catch (e) {
                if (e instanceof UnsupportedError) return { status: 'skip', message: `unsupported: ${e.message}` };
                return { status: 'fail', message: describe(e) };
            }
        })();
        const res = await Promise.race([run, timeout]);
        clearTimeout(timer);
        await ctx.cleanup();
        return res;
    }
}

/* One line for a failure or unexpected error. */
function describe(e) {
    if (e instanceof Failure || e instanceof MatchError) return e.message;
    let s = `${e && e.name ? e.name : 'Error'}: ${e && e.message ? e.message : String(e)}`;
    if (e && e.code !== undefined) s += ` (code ${e.code}${e.codeName ? ` ${e.codeName}` : ''})`;
    return s;
}

const EXPECTED_ERROR_KEYS = new Set(['isError', 'isClientError', 'isTimeoutError', 'errorContains',
    'errorCode', 'errorCodeName', 'errorLabelsContain', 'errorLabelsOmit', 'errorResponse', 'expectResult',
    'writeErrors', 'writeConcernErrors']);

/* ------------------------------------------------------------ one test */

class TestContext {
    constructor(runner, file, test) {
        this.runner = runner;
        this.file = file;
        this.test = test;
        this.entities = new EntityMap(runner);
        this.failPoints = []; // { client, name }
    }

    async execute() {
        const internal = this.runner.internal;
        const majority = { writeConcern: { w: 'majority' } };
        for (const cd of this.file.initialData || []) {
            const db = internal.db(cd.databaseName);
            try {
                await db.command({ drop: cd.collectionName, ...majority });
            } catch (e) {
                if (e.code !== 26) throw new Failure(`initialData: drop ${cd.databaseName}.${cd.collectionName}: ${describe(e)}`);
            }
            const docs = cd.documents || [];
            try {
                if (cd.createOptions || docs.length === 0) {
                    await db.command({ create: cd.collectionName, ...(cd.createOptions || {}), ...majority });
                }
                if (docs.length) await db.collection(cd.collectionName).insertMany(docs, majority);
            } catch (e) {
                throw new Failure(`initialData ${cd.databaseName}.${cd.collectionName}: ${describe(e)}`);
            }
        }
        await this.entities.create(this.file.createEntities || []);
        for (const op of this.test.operations || []) await this.runOperation(op);
        for (const c of this.entities.clients()) c.listening = false;
        await this.disableFailPoints();
        for (const exp of this.test.expectEvents || []) this.checkEvents(exp);
        for (const cd of this.test.outcome || []) {
            const docs = await internal.db(cd.databaseName).collection(cd.collectionName)
                .find({}, { sort: { _id: 1 }, readPreference: 'primary', readConcern: { level: 'local' },
                    promoteValues: false, promoteLongs: false }).toArray();
            try {
                exactMatch(cd.documents, docs, { strictNumbers: true });
            } catch (e) {
                throw new Failure(`outcome ${cd.databaseName}.${cd.collectionName}: ${e.message}`);
            }
        }
    }

    async disableFailPoints() {
        const fps = this.failPoints;
        this.failPoints = [];
        for (const fp of fps) {
            try {
                await fp.client.db('admin').command({ configureFailPoint: fp.name, mode: 'off' });
            } catch (e) { /* best effort */ }
        }
    }

    async cleanup() {
        await this.disableFailPoints();
        await this.entities.close();
    }

    /* ------------------------------------------------------------ operations */

    /* Executing an Operation. opts.propagate: rethrow the operation's error after its
     * assertions (withTransaction callbacks). */
    async runOperation(op, opts = {}) {
        if (op.object === 'testRunner') {
            await this.special(op.name, op.arguments || {});
            return;
        }
        const entry = this.entities.get(op.object);
        const table = OPERATIONS[entry.kind];
        const spec = table && table[op.name];
        if (!spec) throw new UnsupportedError(`${entry.kind} operation ${op.name}`);
        const args = op.arguments || {};
        for (const k of Object.keys(args)) {
            if (k !== 'session' && !spec.args.includes(k)) throw new UnsupportedError(`argument ${k} of ${op.name}`);
        }
        for (const k of spec.required || []) {
            if (args[k] === undefined) throw new Error(`${op.name}: missing required argument ${k}`);
        }
        let result;
        let error = null;
        try {
            result = await spec.run(entry.value, args, this, entry);
        } catch (e) {
            if (e instanceof UnsupportedError) throw e;
            error = e;
        }
        if (op.ignoreResultAndError) {
            if (error && opts.propagate) throw error;
            return;
        }
        if (op.expectError) {
            if (!error) fail(`${op.name}: expected an error, got result ${show(result)}`);
            this.checkError(op.name, op.expectError, error);
            if (opts.propagate) throw error;
            return;
        }
        if (error) {
            if (opts.propagate) throw error;
            throw new Failure(`${op.name}: ${describe(error)}`);
        }
        if (op.expectResult !== undefined) {
            try {
                match(op.expectResult, result, { root: spec.root, entities: this.entities });
            } catch (e) {
                if (e instanceof MatchError) fail(`${op.name} result: ${e.message}`);
                throw e;
            }
        }
        if (op.saveResultAsEntity) {
            if (result === undefined) throw new Error(`${op.name} returned nothing to save as ${op.saveResultAsEntity}`);
            if (result && result.cursor && ['createFindCursor', 'createCommandCursor'].includes(op.name)) {
                this.entities.add(op.saveResultAsEntity, { kind: 'cursor', value: result });
            } else {
                this.entities.add(op.saveResultAsEntity, { kind: 'bson', value: result });
            }
        }
    }

    /* expectedError assertions. */
    checkError(opName, exp, err) {
        const where = `${opName} error`;
        // MongoClient.bulkWrite: the top-level error (if any) is the `cause` of the
        // MongoClientBulkWriteError; its writeErrors/writeConcernErrors are only looked at by
        // the writeErrors/writeConcernErrors assertions.
        const clientBulk = err && err.name === 'MongoClientBulkWriteError';
        const outer = err;
        if (clientBulk) {
            this.checkClientBulkParts(where, exp, err);
            if (err.cause) err = err.cause;
        }
        const isServer = err instanceof MongoServerError;
        const got = describe(err);
        if (exp.isClientError === true && isServer) fail(`${where}: expected a client error, got ${got}`);
        if (exp.isClientError === false && !isServer) fail(`${where}: expected a server error, got ${got}`);
        if (exp.isTimeoutError !== undefined) {
            const isTimeout = err && err.name === 'MongoOperationTimeoutError';
            if (isTimeout !== exp.isTimeoutError) fail(`${where}: isTimeoutError ${exp.isTimeoutError}, got ${got}`);
        }
        const bulk = err instanceof MongoBulkWriteError;
        const writeErrors = bulk ? [].concat(err.writeErrors || []) : [];
        const wce = err && (err.writeConcernError || (err.result && err.result.writeConcernError)) || null;
        if (exp.errorContains !== undefined) {
            const texts = [err && err.message, err && err.errmsg, ...writeErrors.map((w) => w.errmsg),
                wce && (wce.errmsg || wce.message)].filter((s) => typeof s === 'string');
            const needle = String(exp.errorContains).toLowerCase();
            if (!texts.some((s) => s.toLowerCase().includes(needle))) {
                fail(`${where}: message does not contain "${exp.errorContains}": ${got}`);
            }
        }
        const codes = [];
        const names = [];
        if (isServer) {
            if (err.code !== undefined) codes.push(Number(plain(err.code)));
            if (err.codeName) names.push(err.codeName);
            const r = err.errorResponse;
            if (r && r.code !== undefined) codes.push(Number(plain(r.code)));
            if (r && r.codeName) names.push(r.codeName);
            for (const w of writeErrors) {
                if (w.code !== undefined) codes.push(Number(plain(w.code)));
                if (w.codeName) names.push(w.codeName);
            }
            if (wce) {
                if (wce.code !== undefined) codes.push(Number(plain(wce.code)));
                if (wce.codeName) names.push(wce.codeName);
            }
        }
        if (exp.errorCode !== undefined) {
            const want = Number(plain(exp.errorCode));
            if (!codes.includes(want)) fail(`${where}: expected code ${want}, got ${got}`);
        }
        if (exp.errorCodeName !== undefined) {
            const want = String(exp.errorCodeName).toLowerCase();
            let ok = names.some((n) => String(n).toLowerCase() === want);
            // Write errors (bulk, or the single one insertOne/updateOne... turn into an error)
            // carry a code but no codeName: translate the name, as the spec allows for
            // BulkWriteException, failing loudly when the name is unknown.
            if (!ok && (bulk || (names.length === 0 && codes.length > 0))) {
                const code = codeOfName(want);
                if (code === undefined) throw new Error(`errorCodeName ${exp.errorCodeName}: unknown code name`);
                ok = codes.includes(code);
            }
            if (!ok) fail(`${where}: expected codeName ${exp.errorCodeName}, got ${got}`);
        }
        const hasLabel = (l) => !!(err && typeof err.hasErrorLabel === 'function' && err.hasErrorLabel(l));
        for (const l of exp.errorLabelsContain || []) {
            if (!hasLabel(l)) fail(`${where}: expected error label ${l}, got ${got}`);
        }
        for (const l of exp.errorLabelsOmit || []) {
            if (hasLabel(l)) fail(`${where}: unexpected error label ${l}: ${got}`);
        }
        if (exp.errorResponse !== undefined) {
            const resp = err && err.errorResponse;
            if (!resp) fail(`${where}: expected a server response, got ${got}`);
            try {
                match(exp.errorResponse, resp, { root: true, entities: this.entities });
            } catch (e) {
                if (e instanceof MatchError) fail(`${where} errorResponse: ${e.message}`);
                throw e;
            }
        }
        if (exp.expectResult !== undefined) {
            let result;
            if (bulk) result = bulkWriteResult(err.result);
            else if (clientBulk) result = clientBulkWriteResult(outer.partialResult);
            try {
                match(exp.expectResult, result, { root: true, entities: this.entities });
            } catch (e) {
                if (e instanceof MatchError) fail(`${where} expectResult: ${e.message}`);
                throw e;
            }
        }
    }

    /* writeErrors / writeConcernErrors of a MongoClientBulkWriteError. */
    checkClientBulkParts(where, exp, err) {
        const rootMatch = (e, a, what) => {
            try {
                match(e, a, { root: true, entities: this.entities });
            } catch (m) {
                if (m instanceof MatchError) fail(`${where} ${what}: ${m.message}`);
                throw m;
            }
        };
        if (exp.writeErrors !== undefined) {
            const actual = err.writeErrors instanceof Map ? err.writeErrors : new Map();
            const want = Object.keys(exp.writeErrors);
            for (const k of want) {
                if (!actual.has(Number(k))) fail(`${where}: no write error at index ${k}`);
                rootMatch(exp.writeErrors[k], actual.get(Number(k)), `writeErrors[${k}]`);
            }
            const extra = [...actual.keys()].filter((i) => !want.includes(String(i)));
            if (extra.length) fail(`${where}: unexpected write error(s) at index ${extra.join(', ')}`);
        }
        if (exp.writeConcernErrors !== undefined) {
            const actual = err.writeConcernErrors || [];
            if (actual.length !== exp.writeConcernErrors.length) {
                fail(`${where}: expected ${exp.writeConcernErrors.length} write concern error(s), got ${actual.length}`);
            }
            exp.writeConcernErrors.forEach((e, i) => rootMatch(e, actual[i], `writeConcernErrors[${i}]`));
        }
    }

    /* ------------------------------------------------------------ events */

    checkEvents(exp) {
        const c = this.entities.get(exp.client, 'client').client;
        const family = exp.eventType || 'command';
        const actual = c.observed(family);
        const expected = exp.events || [];
        const names = actual.map((e) => (e.family === 'command'
            ? `${e.name}(${e.ev.commandName})` : e.name)).join(', ');
        if (exp.ignoreExtraEvents ? actual.length < expected.length : actual.length !== expected.length) {
            fail(`events of ${exp.client}: expected ${expected.length}${exp.ignoreExtraEvents ? '+' : ''}, ` +
                 `got ${actual.length}: [${names}]`);
        }
        expected.forEach((e, i) => {
            try {
                this.eventMatches(e, actual[i], true);
            } catch (err) {
                if (err instanceof MatchError || err instanceof Failure) {
                    fail(`event ${i} of ${exp.client}: ${err.message}`);
                }
                throw err;
            }
        });
    }

    /* Asserts (or, with `assert` false, returns whether) an observed event matches an
     * expectedEvent object. */
    eventMatches(expected, observed, assert) {
        try {
            const types = Object.keys(expected);
            if (types.length !== 1) throw new Error(`expectedEvent with keys ${types.join(', ')}`);
            const type = types[0];
            if (!SUPPORTED_EVENTS.has(type)) throw new UnsupportedError(`expected event ${type}`);
            const want = expected[type] || {};
            if (!observed) throw new Failure(`expected ${type}, got nothing`);
            if (observed.name !== type) {
                throw new Failure(`expected ${type}, got ${observed.name}` +
                    (observed.ev.commandName ? `(${observed.ev.commandName})` : ''));
            }
            const ev = observed.ev;
            for (const [k, v] of Object.entries(want)) {
                switch (k) {
                case 'command': case 'reply':
                    if (!((type === 'commandStartedEvent' && k === 'command')
                        || (type === 'commandSucceededEvent' && k === 'reply'))) {
                        throw new UnsupportedError(`${type}.${k}`);
                    }
                    try {
                        match(v, ev[k], { root: true, entities: this.entities });
                    } catch (e) {
                        if (e instanceof MatchError) throw new Failure(`${type}(${ev.commandName}).${k}: ${e.message}`);
                        throw e;
                    }
                    break;
                case 'commandName': case 'databaseName':
                    if (!type.startsWith('command')) throw new UnsupportedError(`${type}.${k}`);
                    if (ev[k] !== v) throw new Failure(`${type}.${k}: expected ${v}, got ${ev[k]}`);
                    break;
                case 'hasServiceId': {
                    const sid = ev.serviceId;
                    const set = !!sid && typeof sid.toHexString === 'function' && !/^0+$/.test(sid.toHexString());
                    if (set !== v) throw new Failure(`${type}.serviceId: expected ${v ? 'set' : 'unset'}`);
                    break;
                }
                case 'hasServerConnectionId': {
                    const n = ev.serverConnectionId;
                    const set = n !== null && n !== undefined && Number(n) > 0;
                    if (set !== v) throw new Failure(`${type}.serverConnectionId: expected ${v ? 'set' : 'unset'}, got ${n}`);
                    break;
                }
                case 'reason':
                    if (ev.reason !== v) throw new Failure(`${type}.reason: expected ${v}, got ${ev.reason}`);
                    break;
                case 'interruptInUseConnections':
                    if (ev.interruptInUseConnections !== v) throw new Failure(`${type}.interruptInUseConnections`);
                    break;
                default:
                    throw new UnsupportedError(`${type}.${k}`);
                }
            }
            return true;
        } catch (e) {
            if (!assert && e instanceof Failure) return false;
            throw e;
        }
    }

    /* ------------------------------------------------------------ special operations */

    async special(name, a) {
        const internal = this.runner.internal;
        switch (name) {
        case 'failPoint': {
            const c = this.entities.get(a.client, 'client').value;
            await c.db('admin').command(a.failPoint);
            this.failPoints.push({ client: c, name: a.failPoint.configureFailPoint });
            return;
        }
        case 'assertCollectionExists': case 'assertCollectionNotExists': {
            const names = (await internal.db(a.databaseName).listCollections({}, { nameOnly: true }).toArray())
                .map((c) => c.name);
            const exists = names.includes(a.collectionName);
            if (exists !== (name === 'assertCollectionExists')) {
                fail(`${name}: ${a.databaseName}.${a.collectionName} ${exists ? 'exists' : 'does not exist'}`);
            }
            return;
        }
        case 'assertIndexExists': case 'assertIndexNotExists': {
            let names = [];
            try {
                names = (await internal.db(a.databaseName).collection(a.collectionName).listIndexes().toArray())
                    .map((i) => i.name);
            } catch (e) {
                if (e.code !== 26) throw e;
            }
            const exists = names.includes(a.indexName);
            if (exists !== (name === 'assertIndexExists')) {
                fail(`${name}: index ${a.indexName} ${exists ? 'exists' : 'does not exist'} on ${a.databaseName}.${a.collectionName}`);
            }
            return;
        }
        case 'createEntities':
            await this.entities.create(a.entities || []);
            return;
        case 'assertSameLsidOnLastTwoCommands': case 'assertDifferentLsidOnLastTwoCommands': {
            const c = this.entities.get(a.client, 'client').client;
            const started = c.events.filter((e) => e.name === 'commandStartedEvent');
            if (started.length < 2) fail(`${name}: fewer than two commands observed`);
            const [x, y] = started.slice(-2).map((e) => e.ev.command.lsid);
            if (!x || !y) fail(`${name}: a command has no lsid`);
            let same = true;
            try { exactMatch(x, y); } catch (e) { same = false; }
            if (same !== (name === 'assertSameLsidOnLastTwoCommands')) fail(`${name}: lsids ${show(x)} and ${show(y)}`);
            return;
        }
        case 'wait':
            await sleep(Number(plain(a.ms)));
            return;
        case 'waitForEvent': case 'assertEventCount': {
            const c = this.entities.get(a.client, 'client').client;
            const want = Number(plain(a.count));
            const count = () => c.events.filter((e) => this.eventMatches(a.event, e, false)).length;
            if (name === 'assertEventCount') {
                const n = count();
                if (n !== want) fail(`assertEventCount: expected ${want}, got ${n}`);
                return;
            }
            const deadline = Date.now() + 10000;
            while (count() < want) {
                if (Date.now() > deadline) fail(`waitForEvent: ${show(a.event)} not seen ${want} time(s) in 10 s`);
                await sleep(20);
            }
            return;
        }
        case 'assertNumberConnectionsCheckedOut': {
            const c = this.entities.get(a.client, 'client').client;
            const want = Number(plain(a.connections));
            if (c.checkedOut !== want) fail(`assertNumberConnectionsCheckedOut: expected ${want}, got ${c.checkedOut}`);
            return;
        }
        case 'assertSessionTransactionState': {
            const s = this.entities.get(a.session, 'session').value;
            const map = { NO_TRANSACTION: 'none', STARTING_TRANSACTION: 'starting',
                TRANSACTION_IN_PROGRESS: 'in_progress', TRANSACTION_COMMITTED: 'committed',
                TRANSACTION_COMMITTED_EMPTY: 'committed', TRANSACTION_ABORTED: 'aborted' };
            const state = map[s.transaction && s.transaction.state];
            if (state === undefined) throw new UnsupportedError('session transaction state');
            if (state !== a.state) fail(`assertSessionTransactionState: expected ${a.state}, got ${state}`);
            return;
        }
        case 'assertSessionPinned': case 'assertSessionUnpinned': {
            const s = this.entities.get(a.session, 'session').value;
            if (!!s.isPinned !== (name === 'assertSessionPinned')) fail(`${name}: isPinned is ${s.isPinned}`);
            return;
        }
        case 'assertSessionDirty': case 'assertSessionNotDirty': {
            const s = this.entities.get(a.session, 'session').value;
            const ss = s.serverSession;
            if (!ss || typeof ss.isDirty !== 'boolean') throw new UnsupportedError('session dirtiness');
            if (ss.isDirty !== (name === 'assertSessionDirty')) fail(`${name}: isDirty is ${ss.isDirty}`);
            return;
        }
        default:
            throw new UnsupportedError(`testRunner operation ${name}`);
        }
    }
}

module.exports = { Runner, SCHEMA_VERSION, schemaSupported, parseVersion, cmpVersion, describe, numeric };
