'use strict';
/*
 * tests/spec/test_matcher.js: unit checks of lib/matcher.js and of the runner's version and
 * runOnRequirements logic, each case taken from a rule or example of the unified test
 * format's "Evaluating Matches" / "runOnRequirement" / "Version String" sections. Needs no
 * server. Run through `node tests/spec/unified.js --self-test` (or directly).
 */
const { BSON } = require('mongodb');
const { match, exactMatch, MatchError, UnsupportedError, bsonTypeNames } = require('./lib/matcher');
const { Runner, schemaSupported, parseVersion } = require('./lib/runner');

const { EJSON, Int32, Double, Long, Decimal128, ObjectId, Binary } = BSON;
const J = (s) => EJSON.parse(s, { relaxed: false }); // as test files are loaded

/* A tiny entity map for $$matchesEntity / $$sessionLsid. */
const lsid = { id: new Binary(Buffer.alloc(16, 7), 4) };
const entities = {
    getForMatch(name, kind) {
        if (kind === 'session-lsid') {
            if (name === 'session0') return lsid;
            throw new Error(`no session ${name}`);
        }
        if (name === 'oid0') return new ObjectId('5f0000000000000000000001');
        if (name === 'doc0') return { a: 1 };
        throw new Error(`no BSON entity ${name}`);
    },
};

const cases = [];
const ok = (name, expected, actual, opts = {}) => cases.push({ name, expected, actual, opts, want: 'ok' });
const no = (name, expected, actual, opts = {}) => cases.push({ name, expected, actual, opts, want: 'fail' });
const unsupported = (name, expected, actual, opts = {}) => cases.push({ name, expected, actual, opts, want: 'unsupported' });

/* Allowing Extra Fields in Root-level Documents */
ok('root document may have extra keys', J('{"x": 1}'), { x: 1, y: 1 });
no('root document must have the expected keys', J('{"x": 1, "y": 1}'), { x: 1 });
no('nested document may not have extra keys', J('{"x": {"y": 1}}'), { x: { y: 1, z: 1 } });
no('non-root document may not have extra keys', J('{"x": 1}'), { x: 1, y: 1 }, { root: false });
ok('array of root documents (find): extra keys allowed', J('[{"x": 1}, {"x": 2}]'),
    [{ x: 1, y: 1 }, { x: 2, y: 2 }], { root: 'elements' });
no('array of values (distinct): documents may not have extra keys', J('[{"x": 1}, {"x": 2}]'),
    [{ x: 1, y: 1 }, { x: 2, y: 2 }], { root: false });
no('elements mode still needs the same length', J('[{"x": 1}]'), [{ x: 1 }, { x: 2 }], { root: 'elements' });
/* Document Key Order Variation */
ok('key order does not matter', J('{"x": 1, "y": 1}'), { y: 1, x: 1 });
ok('nested key order does not matter', J('{"a": {"x": 1, "y": 1}}'), { a: { y: 1, x: 1 } });
/* Arrays Must Contain the Same Number of Elements */
no('longer actual array fails', J('[1, 2, 3]'), [1, 2, 3, 4], { root: false });
no('shorter actual array fails', J('[1, 2, 3]'), [1, 2], { root: false });
ok('equal arrays', J('[1, 2, 3]'), [1, 2, 3], { root: false });
no('array order matters', J('[1, 2]'), [2, 1], { root: false });
no('array elements that are documents are nested', J('{"a": [{"x": 1}]}'), { a: [{ x: 1, y: 2 }] });
/* Flexible Numeric Comparisons */
ok('int 1 matches double 1.0', J('{"ok": 1}'), { ok: new Double(1) });
ok('double 1.0 matches int 1', J('{"ok": {"$numberDouble": "1.0"}}'), { ok: new Int32(1) });
ok('int matches long', J('{"n": 5}'), { n: Long.fromNumber(5) });
ok('long matches plain number', J('{"n": {"$numberLong": "5"}}'), { n: 5 });
no('1 does not match 1.5', J('{"n": 1}'), { n: 1.5 });
no('decimal does not match an equal int', J('{"n": {"$numberDecimal": "1"}}'), { n: 1 });
ok('decimal matches decimal', J('{"n": {"$numberDecimal": "1.5"}}'), { n: Decimal128.fromString('1.5') });
ok('large longs compare exactly', J('{"n": {"$numberLong": "9223372036854775807"}}'),
    { n: Long.fromString('9223372036854775807') });
no('large longs differ', J('{"n": {"$numberLong": "9223372036854775807"}}'),
    { n: Long.fromString('9223372036854775806') });
/* same type and value for other scalars */
no('string does not match number', J('{"x": "1"}'), { x: 1 });
no('null does not match a missing key', J('{"x": null}'), {});
ok('null matches null', J('{"x": null}'), { x: null });
no('false does not match 0', J('{"x": false}'), { x: 0 });
ok('ObjectId by value', J('{"_id": {"$oid": "5f0000000000000000000001"}}'),
    { _id: new ObjectId('5f0000000000000000000001') });
ok('dates by value', J('{"d": {"$date": {"$numberLong": "1000"}}}'), { d: new Date(1000) });
ok('binary by subtype and bytes', J('{"b": {"$binary": {"base64": "AQI=", "subType": "00"}}}'),
    { b: new Binary(Buffer.from([1, 2]), 0) });
no('binary subtype differs', J('{"b": {"$binary": {"base64": "AQI=", "subType": "00"}}}'),
    { b: new Binary(Buffer.from([1, 2]), 5) });
ok('regex matches JS RegExp', J('{"r": {"$regularExpression": {"pattern": "^a", "options": "i"}}}'), { r: /^a/i });
/* $$exists */
ok('$$exists true: present', J('{"x": {"$$exists": true}}'), { x: 5 });
ok('$$exists true: null value counts', J('{"x": {"$$exists": true}}'), { x: null });
no('$$exists true: missing', J('{"x": {"$$exists": true}}'), {});
ok('$$exists false: missing', J('{"writeConcern": {"$$exists": false}}'), { update: 'c' });
no('$$exists false: present', J('{"writeConcern": {"$$exists": false}}'), { writeConcern: { w: 1 } });
ok('$$exists in a nested document', J('{"a": {"b": {"$$exists": false}, "c": 1}}'), { a: { c: 1 } });
/* $$type */
ok('$$type string', J('{"x": {"$$type": "string"}}'), { x: 'a' });
no('$$type string vs int', J('{"x": {"$$type": "string"}}'), { x: new Int32(1) });
ok('$$type list', J('{"getMore": {"$$type": ["int", "long"]}}'), { getMore: Long.fromNumber(7) });
no('$$type list miss', J('{"getMore": {"$$type": ["int", "long"]}}'), { getMore: new Double(7.5) });
no('$$type requires the key', J('{"x": {"$$type": "string"}}'), {});
ok('$$type number alias: int', J('{"x": {"$$type": "number"}}'), { x: new Int32(1) });
ok('$$type number alias: decimal', J('{"x": {"$$type": "number"}}'), { x: Decimal128.fromString('1') });
no('$$type number alias: string', J('{"x": {"$$type": "number"}}'), { x: '1' });
ok('$$type array does not look at elements', J('{"x": {"$$type": "array"}}'), { x: ['a', 1] });
ok('$$type objectId', J('{"x": {"$$type": "objectId"}}'), { x: new ObjectId() });
ok('$$type as the whole expected value', J('{"$$type": "objectId"}'), new ObjectId());
ok('$$type null', J('{"x": {"$$type": "null"}}'), { x: null });
ok('$$type binData', J('{"x": {"$$type": "binData"}}'), { x: new Binary(Buffer.from([1])) });
unsupported('$$type unknown alias', J('{"x": {"$$type": "nosuchtype"}}'), { x: 1 });
/* $$unsetOrMatches */
ok('$$unsetOrMatches: missing key', J('{"insertedId": {"$$unsetOrMatches": 2}}'), {});
ok('$$unsetOrMatches: matching key', J('{"insertedId": {"$$unsetOrMatches": 2}}'), { insertedId: 2 });
no('$$unsetOrMatches: different value', J('{"insertedId": {"$$unsetOrMatches": 2}}'), { insertedId: 3 });
ok('$$unsetOrMatches at root: nothing returned', J('{"$$unsetOrMatches": {"insertedId": 1}}'), undefined);
ok('$$unsetOrMatches at root stays root (extra keys)', J('{"$$unsetOrMatches": {"insertedId": 1}}'),
    { insertedId: 1, acknowledged: true });
no('$$unsetOrMatches nested stays nested (no extra keys)', J('{"r": {"$$unsetOrMatches": {"a": 1}}}'),
    { r: { a: 1, b: 2 } });
ok('$$unsetOrMatches may contain operators', J('{"a": {"$$unsetOrMatches": {"$$type": "int"}}}'), { a: new Int32(1) });
ok('$$unsetOrMatches of an empty document', J('{"upsertedIds": {"$$unsetOrMatches": {}}}'), { upsertedIds: {} });
no('$$unsetOrMatches of an empty document, extra key', J('{"upsertedIds": {"$$unsetOrMatches": {}}}'),
    { upsertedIds: { 0: 1 } });
/* $$matchesEntity */
ok('$$matchesEntity', J('{"_id": {"$$matchesEntity": "oid0"}}'), { _id: new ObjectId('5f0000000000000000000001') },
    { entities });
no('$$matchesEntity different value', J('{"_id": {"$$matchesEntity": "oid0"}}'), { _id: new ObjectId() }, { entities });
no('$$matchesEntity keeps nested-ness', J('{"d": {"$$matchesEntity": "doc0"}}'), { d: { a: 1, b: 1 } }, { entities });
cases.push({ name: '$$matchesEntity undefined entity is an error', expected: J('{"x": {"$$matchesEntity": "nope"}}'),
    actual: { x: 1 }, opts: { entities }, want: 'error' });
/* $$sessionLsid */
ok('$$sessionLsid', J('{"lsid": {"$$sessionLsid": "session0"}}'), { lsid: { id: new Binary(Buffer.alloc(16, 7), 4) } },
    { entities });
no('$$sessionLsid different', J('{"lsid": {"$$sessionLsid": "session0"}}'),
    { lsid: { id: new Binary(Buffer.alloc(16, 8), 4) } }, { entities });
/* $$lte */
ok('$$lte equal int vs double', J('{"n": {"$$lte": 1}}'), { n: new Double(1) });
ok('$$lte 0.0 <= 1', J('{"n": {"$$lte": 1}}'), { n: 0 });
no('$$lte 1.1 > 1', J('{"n": {"$$lte": 1}}'), { n: 1.1 });
no('$$lte needs a number', J('{"n": {"$$lte": 1}}'), { n: '0' });
/* $$matchAsDocument / $$matchAsRoot */
ok('$$matchAsDocument parses Extended JSON', J('{"c": {"$$matchAsDocument": {"x": 1}}}'), { c: '{"x": {"$numberInt": "1"}}' });
no('$$matchAsDocument is not root-level', J('{"c": {"$$matchAsDocument": {"x": 1}}}'), { c: '{"x": 1, "y": 2}' });
ok('$$matchAsDocument with $$matchAsRoot', J('{"c": {"$$matchAsDocument": {"$$matchAsRoot": {"x": 1}}}}'),
    { c: '{"x": 1, "y": 2}' });
no('$$matchAsDocument needs a string', J('{"c": {"$$matchAsDocument": {"x": 1}}}'), { c: { x: 1 } });
ok('$$matchAsRoot on a nested document', J('{"a": {"$$matchAsRoot": {"x": 1}}}'), { a: { x: 1, y: 2 } });
no('$$matchAsRoot still needs expected keys', J('{"a": {"$$matchAsRoot": {"x": 1, "z": 1}}}'), { a: { x: 1, y: 2 } });
/* driver-side shapes */
ok('a Map (driver sort) is a document', J('{"sort": {"_id": 1, "x": -1}}'), { sort: new Map([['_id', 1], ['x', -1]]) });
no('a Map is nested: no extra keys', J('{"sort": {"_id": 1}}'), { sort: new Map([['_id', 1], ['x', -1]]) });
/* operator detection */
ok('two $$ keys is a plain document', J('{"a": {"$$x": 1, "$$y": 2}}'), { a: { $$x: 1, $$y: 2 } });
unsupported('unknown operator', J('{"a": {"$$nosuch": 1}}'), { a: 1 });
ok('single-$ query operators are plain keys', J('{"filter": {"x": {"$gt": 1}}}'), { filter: { x: { $gt: 1 } } });

function classify(fn) {
    try {
        fn();
        return 'ok';
    } catch (e) {
        if (e instanceof MatchError) return 'fail';
        if (e instanceof UnsupportedError) return 'unsupported';
        return 'error';
    }
}

/* exact outcome comparison */
const exactCases = [
    ['outcome: same documents in another key order', J('[{"_id": 1, "x": 2}]'), [{ x: 2, _id: 1 }], 'ok'],
    ['outcome: extra key at the top fails', J('[{"_id": 1}]'), [{ _id: 1, x: 1 }], 'fail'],
    ['outcome: extra nested key fails', J('[{"_id": 1, "a": {"b": 1}}]'), [{ _id: 1, a: { b: 1, c: 1 } }], 'fail'],
    ['outcome: missing document fails', J('[{"_id": 1}, {"_id": 2}]'), [{ _id: 1 }], 'fail'],
    ['outcome: empty collection', J('[]'), [], 'ok'],
    ['outcome: numbers compare by value', J('[{"_id": 1, "x": 1}]'), [{ _id: 1, x: new Double(1) }], 'ok'],
    ['outcome: strict numbers, double vs int', J('[{"_id": 1, "x": 1}]'), [{ _id: new Int32(1), x: new Double(1) }], 'fail',
        { strictNumbers: true }],
    ['outcome: strict numbers, long vs long', J('[{"_id": 1, "x": {"$numberLong": "1"}}]'),
        [{ _id: new Int32(1), x: Long.fromNumber(1) }], 'ok', { strictNumbers: true }],
    ['outcome: operators are not special', J('[{"_id": {"$$exists": true}}]'), [{ _id: 1 }], 'fail'],
];

function runSelfTest() {
    let passed = 0;
    let failed = 0;
    const report = (name, good, detail) => {
        if (good) {
            passed++;
            console.log(`ok ${name}`);
        } else {
            failed++;
            console.log(`not ok ${name}  # ${detail}`);
        }
    };
    for (const c of cases) {
        let detail = '';
        const got = classify(() => {
            try {
                match(c.expected, c.actual, c.opts);
            } catch (e) {
                detail = e.message;
                throw e;
            }
        });
        report(`match: ${c.name}`, got === c.want, `want ${c.want}, got ${got} ${detail}`);
    }
    for (const [name, exp, act, want, opts] of exactCases) {
        const got = classify(() => exactMatch(exp, act, opts));
        report(name, got === want, `want ${want}, got ${got}`);
    }
    /* bsonTypeNames */
    report('types: Int32 is int', bsonTypeNames(new Int32(1)).join() === 'int', bsonTypeNames(new Int32(1)).join());
    report('types: Long is long', bsonTypeNames(Long.fromNumber(1)).join() === 'long', '');
    report('types: fractional number is double', bsonTypeNames(1.5).join() === 'double', '');
    report('types: missing is nothing', bsonTypeNames(undefined).length === 0, '');
    /* Version String and schemaVersion */
    report('version: "4.9.0" parses', parseVersion('4.9.0').join('.') === '4.9.0', '');
    report('version: "3.6" means 3.6.0', parseVersion('3.6').join('.') === '3.6.0', '');
    report('version: "4" means 4.0.0', parseVersion('4').join('.') === '4.0.0', '');
    report('schema: 1.0 supported', schemaSupported('1.0'), '');
    report('schema: 1.4 supported', schemaSupported('1.4'), '');
    report('schema: 2.0 not supported', !schemaSupported('2.0'), '');
    report('schema: 1.99 not supported', !schemaSupported('1.99'), '');
    /* runOnRequirement against a fake single 7.0.14 server (no serverParameters: no I/O). */
    const r = new Runner({ uri: 'mongodb://127.0.0.1:1/' });
    r.version = [7, 0, 14];
    r.topology = 'single';
    const reqs = [
        ['min 4.0.10 > 4.0.9 style numeric compare', { minServerVersion: '7.0.9' }, true],
        ['min equal is met (inclusive)', { minServerVersion: '7.0.14' }, true],
        ['min above is unmet', { minServerVersion: '8.0' }, false],
        ['max below is unmet', { maxServerVersion: '4.2.99' }, false],
        ['max equal is met (inclusive)', { maxServerVersion: '7.0.14' }, true],
        ['topology single', { topologies: ['single', 'replicaset'] }, true],
        ['topology replicaset only', { topologies: ['replicaset'] }, false],
        ['serverless forbid', { serverless: 'forbid' }, true],
        ['serverless require', { serverless: 'require' }, false],
        ['auth false', { auth: false }, true],
        ['auth true', { auth: true }, false],
        ['csfle true', { csfle: true }, false],
    ];
    const pending = reqs.map(async ([name, req, met]) => {
        const why = await r.requirementUnmet(req);
        return [name, (why === null) === met, why];
    });
    return Promise.all(pending).then(async (rows) => {
        for (const [name, good, why] of rows) report(`runOn: ${name}`, good, why || 'met');
        const anyOf = await r.requirementsUnmet([{ minServerVersion: '9.0' }, { topologies: ['single'] }]);
        report('runOn: one of several requirements is enough', anyOf === null, anyOf);
        const none = await r.requirementsUnmet([{ minServerVersion: '9.0' }, { topologies: ['sharded'] }]);
        report('runOn: none met skips', none !== null, 'met');
        console.log(`${passed} passed, ${failed} failed, 0 skipped`);
        return failed === 0;
    });
}

module.exports = { runSelfTest };

if (require.main === module) {
    runSelfTest().then((good) => process.exit(good ? 0 : 1));
}
