'use strict';
/*
 * lib/matcher.js: the "Evaluating Matches" rules of the unified test format, written from
 * the specification text (source/unified-test-format/unified-test-format.md).
 *
 *   match(expected, actual, opts) -> throws MatchError (with a path) when they differ.
 *     opts.root     true: `actual` is a root-level document (extra keys allowed there only);
 *                   'elements': `expected` is an array whose elements are root-level documents
 *                   (find, aggregate, listCollections ... results); false: nested value.
 *     opts.entities { get(name) } for $$matchesEntity and $$sessionLsid.
 *   exactMatch(expected, actual) -> throws MatchError; the outcome comparison: no extra keys
 *     at any level, key order free, arrays equal length, no special operators.
 *   bsonTypeNames(value) -> the $type aliases the value can be (see typeOf for the caveat).
 *
 * Rules implemented (spec section in brackets):
 *   - a document whose first and only key starts with `$$` is a special operator [Special
 *     Operators]; as the value of a key it may apply to a missing key ($$exists,
 *     $$unsetOrMatches), otherwise the key must exist;
 *   - root-level documents may have extra keys, nested documents may not [Allowing Extra
 *     Fields]; $$unsetOrMatches and $$matchesEntity keep the root-ness of the place they are
 *     in, $$matchAsRoot makes it root, $$matchAsDocument parses an Extended JSON string and
 *     matches it as a nested document;
 *   - arrays must have the same length [Arrays Must Contain the Same Number of Elements];
 *   - int, long and double compare by numeric value, Decimal128 only with Decimal128
 *     [Flexible Numeric Comparisons]; other scalars must have the same BSON type and value.
 *
 * It must not know anything about operations or the driver beyond BSON value classes.
 */
const { EJSON } = require('mongodb').BSON;

class MatchError extends Error {
    constructor(path, message) {
        super(path === null ? message : `${path || '(root)'}: ${message}`);
        this.name = 'MatchError';
    }
}

/* Raised for an expectation this runner cannot evaluate (unknown operator, ...): the test is
 * skipped, never passed. */
class UnsupportedError extends Error {
    constructor(message) {
        super(message);
        this.name = 'UnsupportedError';
    }
}

/* ------------------------------------------------------------ value classification */

const bsontype = (v) => (v !== null && typeof v === 'object' && typeof v._bsontype === 'string'
    ? v._bsontype : null);

function isDocument(v) {
    if (v === null || typeof v !== 'object') return false;
    if (Array.isArray(v)) return false;
    const t = bsontype(v);
    if (t !== null) return false; // BSON value classes; a DBRef is matched via dbrefDoc()
    if (v instanceof Date || v instanceof RegExp || ArrayBuffer.isView(v) || v instanceof Map) return false;
    return true;
}

/* Own enumerable keys whose value is not `undefined` (drivers leave undefined properties on
 * result objects; BSON has no such field). */
function keysOf(doc) {
    return Object.keys(doc).filter((k) => doc[k] !== undefined);
}

function has(doc, key) {
    return Object.prototype.hasOwnProperty.call(doc, key) && doc[key] !== undefined;
}

/* The special operator a value is, or null: a document whose first and only key starts
 * with "$$". */
function operatorOf(v) {
    if (!isDocument(v)) return null;
    const keys = Object.keys(v);
    return keys.length === 1 && keys[0].startsWith('$$') ? keys[0] : null;
}

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/*
 * The $type aliases a value can be. Values the driver decoded with its default options lose
 * the distinction between int, long and an integral double (all become a JS number), so an
 * integral JS number counts as any of them and a fractional one as double; values from test
 * files and command documents keep their classes and are classified exactly.
 */
function bsonTypeNames(v) {
    if (v === undefined) return [];
    if (v === null) return ['null'];
    switch (typeof v) {
    case 'boolean': return ['bool'];
    case 'string': return ['string'];
    case 'bigint': return ['long'];
    case 'number':
        if (Number.isInteger(v)) {
            return v >= INT32_MIN && v <= INT32_MAX ? ['int', 'long', 'double'] : ['long', 'double'];
        }
        return ['double'];
    default: break;
    }
    if (Array.isArray(v)) return ['array'];
    switch (bsontype(v)) {
    case 'Int32': return ['int'];
    case 'Long': return ['long'];
    case 'Double': return ['double'];
    case 'Decimal128': return ['decimal'];
    case 'ObjectId': case 'ObjectID': return ['objectId'];
    case 'Binary': return ['binData'];
    case 'Timestamp': return ['timestamp'];
    case 'MinKey': return ['minKey'];
    case 'MaxKey': return ['maxKey'];
    case 'BSONRegExp': return ['regex'];
    case 'BSONSymbol': case 'Symbol': return ['symbol'];
    case 'Code': return v.scope ? ['javascriptWithScope'] : ['javascript'];
    case 'DBRef': return ['object'];
    case null: break;
    default: return [String(v._bsontype)];
    }
    if (v instanceof Date) return ['date'];
    if (v instanceof RegExp) return ['regex'];
    if (ArrayBuffer.isView(v)) return ['binData'];
    return ['object'];
}

const NUMBER_TYPES = new Set(['int', 'long', 'double']);
const TYPE_ALIASES = new Set(['double', 'string', 'object', 'array', 'binData', 'undefined',
    'objectId', 'bool', 'date', 'null', 'regex', 'dbPointer', 'javascript', 'symbol',
    'javascriptWithScope', 'int', 'timestamp', 'long', 'decimal', 'minKey', 'maxKey', 'number']);

function typeMatches(name, v) {
    if (!TYPE_ALIASES.has(name)) throw new UnsupportedError(`$$type: unknown type alias "${name}"`);
    const names = bsonTypeNames(v);
    if (name === 'number') return names.some((n) => NUMBER_TYPES.has(n) || n === 'decimal');
    return names.includes(name);
}

/* Numeric value of an int/long/double (JS number, bigint, Int32, Long, Double), or null. */
function numeric(v) {
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') return v;
    switch (bsontype(v)) {
    case 'Int32': case 'Double': return v.valueOf();
    case 'Long': return BigInt(v.toString());
    default: return null;
    }
}

function numEqual(a, b) {
    if (typeof a === 'bigint' || typeof b === 'bigint') {
        const ab = typeof a === 'bigint' ? a : (Number.isInteger(a) ? BigInt(a) : null);
        const bb = typeof b === 'bigint' ? b : (Number.isInteger(b) ? BigInt(b) : null);
        if (ab === null || bb === null) return Number(a) === Number(b);
        return ab === bb;
    }
    if (Number.isNaN(a) && Number.isNaN(b)) return true;
    return a === b;
}

function numLte(a, b) { // a <= b
    if (typeof a === 'bigint' || typeof b === 'bigint') {
        if (typeof a === 'number' && !Number.isInteger(a)) return a <= Number(b);
        if (typeof b === 'number' && !Number.isInteger(b)) return Number(a) <= b;
        return BigInt(a) <= BigInt(b);
    }
    return a <= b;
}

/* A short printable form of a value for messages. */
function show(v) {
    if (v === undefined) return '(missing)';
    try {
        const s = EJSON.stringify(v, { relaxed: true });
        return s.length > 300 ? `${s.slice(0, 300)}...` : s;
    } catch (e) {
        return String(v);
    }
}

function hexOf(bytes) {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function bytesOf(v) {
    if (bsontype(v) === 'Binary') {
        const b = v.buffer;
        const len = typeof v.position === 'number' ? v.position : b.length;
        return b.subarray(0, len);
    }
    if (ArrayBuffer.isView(v)) return v;
    return null;
}

function regexParts(v) {
    if (bsontype(v) === 'BSONRegExp') return { pattern: v.pattern, options: [...v.options].sort().join('') };
    if (v instanceof RegExp) {
        // The driver maps BSON options i, m, s, u to JS flags; g and y have no BSON meaning.
        const opts = [...v.flags].filter((f) => 'imsux'.includes(f)).sort().join('');
        return { pattern: v.source, options: opts };
    }
    return null;
}

/* Equality of two non-document, non-array values: same BSON type (flexible numerics) and
 * same value. Returns null when equal, else a reason. */
function scalarDiff(expected, actual, strictNumbers = false) {
    const en = numeric(expected);
    const an = numeric(actual);
    if (en !== null || an !== null) {
        if (en === null || an === null) return `expected ${show(expected)}, got ${show(actual)} (type differs)`;
        if (strictNumbers) {
            const et = bsonTypeNames(expected);
            const at = bsonTypeNames(actual);
            if (et.length === 1 && at.length === 1 && et[0] !== at[0]) {
                return `expected ${show(expected)} (${et[0]}), got ${show(actual)} (${at[0]})`;
            }
        }
        return numEqual(en, an) ? null : `expected ${show(expected)}, got ${show(actual)}`;
    }
    const et = bsontype(expected);
    const at = bsontype(actual);
    if (et === 'Decimal128' || at === 'Decimal128') {
        if (et !== at) return `expected ${show(expected)}, got ${show(actual)} (type differs)`;
        return expected.toString() === actual.toString() ? null : `expected ${show(expected)}, got ${show(actual)}`;
    }
    const er = regexParts(expected);
    const ar = regexParts(actual);
    if (er || ar) {
        if (!er || !ar) return `expected ${show(expected)}, got ${show(actual)} (type differs)`;
        return er.pattern === ar.pattern && er.options === ar.options ? null
            : `expected /${er.pattern}/${er.options}, got /${ar.pattern}/${ar.options}`;
    }
    const eb = bytesOf(expected);
    const ab = bytesOf(actual);
    if (eb || ab) {
        if (!eb || !ab) return `expected ${show(expected)}, got ${show(actual)} (type differs)`;
        const es = et === 'Binary' ? expected.sub_type : 0;
        const as = at === 'Binary' ? actual.sub_type : 0;
        if (es !== as) return `expected binary subtype ${es}, got ${as}`;
        return hexOf(eb) === hexOf(ab) ? null : `expected bytes ${hexOf(eb)}, got ${hexOf(ab)}`;
    }
    const etn = bsonTypeNames(expected)[0];
    const atn = bsonTypeNames(actual)[0];
    if (etn !== atn) return `expected ${show(expected)} (${etn}), got ${show(actual)} (${atn || 'missing'})`;
    let same;
    switch (etn) {
    case 'null': same = true; break;
    case 'bool': case 'string': same = expected === actual; break;
    case 'objectId': same = expected.toHexString() === actual.toHexString(); break;
    case 'date': same = expected.getTime() === actual.getTime(); break;
    case 'timestamp': same = expected.toString() === actual.toString()
        && expected.high === actual.high && expected.low === actual.low; break;
    case 'minKey': case 'maxKey': same = true; break;
    case 'symbol': same = String(expected.value ?? expected) === String(actual.value ?? actual); break;
    case 'javascript': same = expected.code === actual.code; break;
    case 'javascriptWithScope':
        same = expected.code === actual.code && exactDiff(expected.scope, actual.scope, '') === null;
        break;
    default:
        same = show(expected) === show(actual);
    }
    return same ? null : `expected ${show(expected)}, got ${show(actual)}`;
}

function isDBRef(v) { return bsontype(v) === 'DBRef'; }

/* A DBRef as the document it is stored as, so it can be matched field by field. */
function dbrefDoc(v) {
    const d = { $ref: v.collection, $id: v.oid };
    if (v.db) d.$db = v.db;
    Object.assign(d, v.fields || {});
    return d;
}

/* Values the driver puts into documents in another shape than a plain object: a DBRef, and
 * a Map (the driver sends `sort` and index keys as Maps to keep their order). */
function asDocument(v) {
    if (isDBRef(v)) return dbrefDoc(v);
    if (v instanceof Map) return Object.fromEntries(v);
    return v;
}

/* ------------------------------------------------------------ the matcher */

class Matcher {
    constructor(entities) {
        this.entities = entities;
    }

    /* Matches `actual` against `expected` at `path`. isRoot: actual is a root-level document. */
    match(expected, actual, path, isRoot) {
        if (isDBRef(expected)) expected = dbrefDoc(expected);
        actual = asDocument(actual);
        const op = operatorOf(expected);
        if (op !== null) {
            this.operator(op, expected[op], actual, path, isRoot, actual !== undefined);
            return;
        }
        if (isDocument(expected)) {
            if (!isDocument(actual)) throw new MatchError(path, `expected a document, got ${show(actual)}`);
            for (const key of Object.keys(expected)) {
                const ev = expected[key];
                const sub = path ? `${path}.${key}` : key;
                const kop = operatorOf(ev);
                if (kop !== null) {
                    this.operator(kop, ev[kop], actual[key], sub, false, has(actual, key));
                    continue;
                }
                if (!has(actual, key)) throw new MatchError(sub, `missing; expected ${show(ev)}`);
                this.match(ev, actual[key], sub, false);
            }
            if (!isRoot) {
                const extra = keysOf(actual).filter((k) => !Object.prototype.hasOwnProperty.call(expected, k));
                if (extra.length) {
                    throw new MatchError(path, `unexpected key(s) ${extra.join(', ')} in nested document ${show(actual)}`);
                }
            }
            return;
        }
        if (Array.isArray(expected)) {
            if (!Array.isArray(actual)) throw new MatchError(path, `expected an array, got ${show(actual)}`);
            if (actual.length !== expected.length) {
                throw new MatchError(path, `expected ${expected.length} element(s), got ${actual.length}: ${show(actual)}`);
            }
            expected.forEach((ev, i) => this.match(ev, actual[i], `${path}[${i}]`, false));
            return;
        }
        if (actual === undefined) throw new MatchError(path, `missing; expected ${show(expected)}`);
        const diff = scalarDiff(expected, actual);
        if (diff) throw new MatchError(path, diff);
    }

    /* One special operator. `present`: whether the actual value exists (a key may be absent). */
    operator(op, arg, actual, path, isRoot, present) {
        switch (op) {
        case '$$exists':
            if (typeof arg !== 'boolean') throw new UnsupportedError(`$$exists needs a boolean, got ${show(arg)}`);
            if (arg && !present) throw new MatchError(path, 'expected to exist');
            if (!arg && present) throw new MatchError(path, `expected not to exist, got ${show(actual)}`);
            return;
        case '$$unsetOrMatches':
            if (!present) return;
            this.match(arg, actual, path, isRoot);
            return;
        case '$$type': {
            if (!present) throw new MatchError(path, `missing; expected $$type ${show(arg)}`);
            const names = Array.isArray(arg) ? arg : [arg];
            if (!names.some((n) => typeMatches(n, actual))) {
                throw new MatchError(path, `expected type ${names.join('|')}, got ${show(actual)} ` +
                                     `(${bsonTypeNames(actual).join('|')})`);
            }
            return;
        }
        case '$$matchesEntity': {
            const v = this.entity(arg, 'bson');
            if (!present) throw new MatchError(path, `missing; expected entity ${arg}`);
            this.match(v, actual, path, isRoot);
            return;
        }
        case '$$sessionLsid': {
            const lsid = this.entity(arg, 'session-lsid');
            if (!present) throw new MatchError(path, `missing; expected the lsid of ${arg}`);
            const diff = exactDiff(lsid, actual, path);
            if (diff) throw new MatchError(path, `not the lsid of session ${arg}: ${diff}`);
            return;
        }
        case '$$lte': {
            if (!present) throw new MatchError(path, `missing; expected <= ${show(arg)}`);
            const a = numeric(actual);
            const e = numeric(arg);
            if (e === null) throw new UnsupportedError(`$$lte needs a number, got ${show(arg)}`);
            if (a === null) throw new MatchError(path, `expected a number <= ${show(arg)}, got ${show(actual)}`);
            if (!numLte(a, e)) throw new MatchError(path, `expected <= ${show(arg)}, got ${show(actual)}`);
            return;
        }
        case '$$matchesHexBytes': {
            if (typeof arg !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(arg)) {
                throw new UnsupportedError(`$$matchesHexBytes: malformed hex string ${show(arg)}`);
            }
            if (!present) throw new MatchError(path, 'missing; expected bytes');
            const b = bytesOf(actual);
            const got = b ? hexOf(b) : (typeof actual === 'string' ? Buffer.from(actual, 'latin1').toString('hex') : null);
            if (got === null) throw new MatchError(path, `expected bytes, got ${show(actual)}`);
            if (got.toLowerCase() !== arg.toLowerCase()) throw new MatchError(path, `expected bytes ${arg}, got ${got}`);
            return;
        }
        case '$$matchAsDocument': {
            if (!present) throw new MatchError(path, 'missing; expected an Extended JSON string');
            if (typeof actual !== 'string') throw new MatchError(path, `expected an Extended JSON string, got ${show(actual)}`);
            let doc;
            try {
                doc = EJSON.parse(actual, { relaxed: false });
            } catch (e) {
                throw new MatchError(path, `not Extended JSON: ${e.message}`);
            }
            this.match(arg, doc, path, false);
            return;
        }
        case '$$matchAsRoot':
            if (!present) throw new MatchError(path, 'missing; expected a document');
            this.match(arg, actual, path, true);
            return;
        default:
            throw new UnsupportedError(`special operator ${op} is not supported`);
        }
    }

    entity(name, kind) {
        if (!this.entities) throw new UnsupportedError(`no entity map for ${name}`);
        return this.entities.getForMatch(name, kind);
    }
}

/* Exact comparison for test outcomes and lsids: documents with the same keys (any order),
 * arrays of the same length, scalars as in scalarDiff; with strict, int/long/double must
 * also be the same BSON type when both sides say which (values read with promoteValues
 * false, expected values parsed as canonical Extended JSON). Returns null or a reason. */
function exactDiff(expected, actual, path, strict = false) {
    if (isDBRef(expected)) expected = dbrefDoc(expected);
    actual = asDocument(actual);
    if (isDocument(expected)) {
        if (!isDocument(actual)) return `${path || '(root)'}: expected a document, got ${show(actual)}`;
        const ek = keysOf(expected);
        const ak = keysOf(actual);
        for (const k of ek) {
            const sub = path ? `${path}.${k}` : k;
            if (!has(actual, k)) return `${sub}: missing; expected ${show(expected[k])}`;
            const d = exactDiff(expected[k], actual[k], sub, strict);
            if (d) return d;
        }
        const extra = ak.filter((k) => !has(expected, k));
        if (extra.length) return `${path || '(root)'}: unexpected key(s) ${extra.join(', ')}`;
        return null;
    }
    if (Array.isArray(expected)) {
        if (!Array.isArray(actual)) return `${path || '(root)'}: expected an array, got ${show(actual)}`;
        if (expected.length !== actual.length) {
            return `${path || '(root)'}: expected ${expected.length} element(s), got ${actual.length}`;
        }
        for (let i = 0; i < expected.length; i++) {
            const d = exactDiff(expected[i], actual[i], `${path}[${i}]`, strict);
            if (d) return d;
        }
        return null;
    }
    if (actual === undefined) return `${path || '(root)'}: missing; expected ${show(expected)}`;
    const d = scalarDiff(expected, actual, strict);
    return d ? `${path || '(root)'}: ${d}` : null;
}

/* match(expected, actual, {root, entities}): throws MatchError / UnsupportedError. */
function match(expected, actual, opts = {}) {
    const m = new Matcher(opts.entities);
    const root = opts.root === undefined ? true : opts.root;
    if (root === 'elements') {
        const op = operatorOf(expected);
        if (op === '$$unsetOrMatches' && actual === undefined) return;
        const exp = op === '$$unsetOrMatches' ? expected[op] : expected;
        if (!Array.isArray(exp)) {
            m.match(exp, actual, '', false);
            return;
        }
        if (!Array.isArray(actual)) throw new MatchError('', `expected an array, got ${show(actual)}`);
        if (actual.length !== exp.length) {
            throw new MatchError('', `expected ${exp.length} element(s), got ${actual.length}: ${show(actual)}`);
        }
        exp.forEach((ev, i) => m.match(ev, actual[i], `[${i}]`, true));
        return;
    }
    m.match(expected, actual, '', root === true);
}

function exactMatch(expected, actual, opts = {}) {
    const d = exactDiff(expected, actual, '', !!opts.strictNumbers);
    if (d) throw new MatchError(null, d);
}

module.exports = {
    match,
    exactMatch,
    MatchError,
    UnsupportedError,
    bsonTypeNames,
    operatorOf,
    isDocument,
    numeric,
    show,
};
