'use strict';
/*
 * lib/ejson_typed.js: Extended JSON read with exact BSON types, for tests that compare a
 * server's answers type-strictly with expected values written in JSON files (the
 * aggregation case files in tests/aggregation, which the C tests read with libbson).
 *
 * JSON.parse cannot be used: it loses the difference between 1 (int32) and 1.0 (double),
 * reorders keys that look like integers, and keeps one of two duplicate keys. So:
 *
 *   parseAll(text)   every JSON value in text (one case per line, or several per line),
 *                    as a tagged tree, with libbson's number rules: a literal with '.' or
 *                    an exponent is a double, an integer is int32, or int64 when it does
 *                    not fit. Canonical and relaxed Extended JSON wrappers ($numberLong,
 *                    $numberDouble, $numberDecimal, $numberInt, $date, $oid,
 *                    $regularExpression, $binary, $timestamp, $minKey, $maxKey,
 *                    $undefined, $symbol, $code) become their types; any other document
 *                    stays a document (so {"$type": ...} and operators are plain keys).
 *   toDriver(v)      a tagged value as what the node driver serializes to the same BSON
 *                    (documents as Map, to keep key order; Int32/Double/Long/Decimal128).
 *   fromDriver(v)    a value the driver returned (read with promoteValues: false,
 *                    promoteLongs: false, bsonRegExp: true) as a tagged tree.
 *   equal(a, b)      strict equality of tagged trees: same type at every level, NaN equal
 *                    to NaN, same field names in the same order.
 *   show(v)          canonical-ish Extended JSON text of a tagged value, for messages.
 *
 * A tagged value is {t: <type>, v: <payload>}: t is one of double int long decimal string
 * bool null date oid regex binary timestamp minKey maxKey undefined symbol code doc array;
 * a doc's v is an array of [key, value] pairs in order, an array's v an array of values.
 * The driver's deserializer gives documents as JS objects, which put integer-like keys
 * first; equal() therefore compares the keys of documents from the driver in the order
 * a JS object would have them (jsOrder) when either side came back through it.
 */
const bson = require('bson');

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/* ------------------------------------------------------------ parsing */

class Parser {
    constructor(text) {
        this.s = text;
        this.i = 0;
    }

    fail(msg) {
        const line = this.s.slice(0, this.i).split('\n').length;
        throw new Error(`JSON: ${msg} at line ${line}`);
    }

    ws() {
        while (this.i < this.s.length && ' \t\r\n'.includes(this.s[this.i])) this.i++;
    }

    value() {
        this.ws();
        const c = this.s[this.i];
        if (c === '{') return this.object();
        if (c === '[') return this.array();
        if (c === '"') return { t: 'string', v: this.string() };
        if (c === '-' || (c >= '0' && c <= '9')) return this.number();
        for (const [word, val] of [['true', { t: 'bool', v: true }], ['false', { t: 'bool', v: false }],
            ['null', { t: 'null', v: null }]]) {
            if (this.s.startsWith(word, this.i)) {
                this.i += word.length;
                return val;
            }
        }
        return this.fail(`unexpected ${JSON.stringify(c)}`);
    }

    string() {
        const start = this.i;
        this.i++;
        while (this.i < this.s.length && this.s[this.i] !== '"') {
            if (this.s[this.i] === '\\') this.i++;
            this.i++;
        }
        if (this.i >= this.s.length) this.fail('unterminated string');
        this.i++;
        return JSON.parse(this.s.slice(start, this.i));
    }

    number() {
        const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.i, this.i + 400));
        if (!m) this.fail('bad number');
        this.i += m[0].length;
        const text = m[0];
        if (m[1] !== undefined || m[2] !== undefined) return { t: 'double', v: Number(text) };
        const big = BigInt(text);
        if (big >= BigInt(INT32_MIN) && big <= BigInt(INT32_MAX)) return { t: 'int', v: Number(big) };
        if (big >= INT64_MIN && big <= INT64_MAX) return { t: 'long', v: big.toString() };
        return { t: 'double', v: Number(text) };
    }

    array() {
        this.i++;
        const out = [];
        this.ws();
        if (this.s[this.i] === ']') {
            this.i++;
            return { t: 'array', v: out };
        }
        for (;;) {
            out.push(this.value());
            this.ws();
            const c = this.s[this.i++];
            if (c === ']') return { t: 'array', v: out };
            if (c !== ',') this.fail('expected , or ]');
        }
    }

    object() {
        this.i++;
        const pairs = [];
        this.ws();
        if (this.s[this.i] === '}') {
            this.i++;
            return wrapper(pairs) || { t: 'doc', v: pairs };
        }
        for (;;) {
            this.ws();
            if (this.s[this.i] !== '"') this.fail('expected a key');
            const k = this.string();
            this.ws();
            if (this.s[this.i++] !== ':') this.fail('expected :');
            pairs.push([k, this.value()]);
            this.ws();
            const c = this.s[this.i++];
            if (c === '}') break;
            if (c !== ',') this.fail('expected , or }');
        }
        return wrapper(pairs) || { t: 'doc', v: pairs };
    }
}

function str(v) {
    return v && v.t === 'string' ? v.v : null;
}

function field(pairs, k) {
    const p = pairs.find((x) => x[0] === k);
    return p ? p[1] : undefined;
}

function doubleOf(text) {
    if (text === 'NaN') return NaN;
    if (text === 'Infinity') return Infinity;
    if (text === '-Infinity') return -Infinity;
    return Number(text);
}

/* The Extended JSON wrapper a one- or two-key document stands for, or null. */
function wrapper(pairs) {
    if (pairs.length === 0 || pairs.length > 2) return null;
    const k = pairs[0][0];
    const v = pairs[0][1];
    if (pairs.length === 1) {
        switch (k) {
        case '$numberLong': return str(v) !== null ? { t: 'long', v: BigInt(str(v)).toString() } : null;
        case '$numberInt': return str(v) !== null ? { t: 'int', v: Number(str(v)) } : null;
        case '$numberDouble': return str(v) !== null ? { t: 'double', v: doubleOf(str(v)) } : null;
        case '$numberDecimal': return str(v) !== null ? { t: 'decimal', v: str(v) } : null;
        case '$oid': return str(v) !== null ? { t: 'oid', v: str(v).toLowerCase() } : null;
        case '$symbol': return str(v) !== null ? { t: 'symbol', v: str(v) } : null;
        case '$code': return str(v) !== null ? { t: 'code', v: str(v) } : null;
        case '$minKey': return { t: 'minKey', v: null };
        case '$maxKey': return { t: 'maxKey', v: null };
        case '$undefined': return { t: 'undefined', v: null };
        case '$date': {
            if (v.t === 'string') return { t: 'date', v: BigInt(Date.parse(v.v)).toString() };
            if (v.t === 'int' || v.t === 'long') return { t: 'date', v: BigInt(v.v).toString() };
            if (v.t === 'double') return { t: 'date', v: BigInt(Math.trunc(v.v)).toString() };
            if (v.t === 'long') return { t: 'date', v: v.v };
            return null;
        }
        case '$regularExpression': {
            if (v.t !== 'doc') return null;
            const p = str(field(v.v, 'pattern'));
            const o = str(field(v.v, 'options'));
            return p !== null ? { t: 'regex', v: { pattern: p, options: sortFlags(o || '') } } : null;
        }
        case '$binary': {
            if (v.t !== 'doc') return null;
            const b = str(field(v.v, 'base64'));
            const st = str(field(v.v, 'subType'));
            return b !== null ? { t: 'binary', v: { base64: b, subType: parseInt(st || '0', 16) } } : null;
        }
        case '$timestamp': {
            if (v.t !== 'doc') return null;
            const t = field(v.v, 't');
            const i = field(v.v, 'i');
            return t && i ? { t: 'timestamp', v: { t: Number(t.v), i: Number(i.v) } } : null;
        }
        default: return null;
        }
    }
    return null;
}

function sortFlags(o) {
    return o.split('').sort().join('');
}

/* Every JSON value in text, in order. */
function parseAll(text) {
    const p = new Parser(text);
    const out = [];
    for (;;) {
        p.ws();
        if (p.i >= p.s.length) return out;
        const start = p.i;
        const v = p.value();
        v.source = text.slice(start, p.i);
        out.push(v);
    }
}

/* ------------------------------------------------------------ driver values */

function toDriver(x) {
    switch (x.t) {
    case 'double': return new bson.Double(x.v);
    case 'int': return new bson.Int32(x.v);
    case 'long': return bson.Long.fromString(x.v);
    case 'decimal': return bson.Decimal128.fromString(x.v);
    case 'string': return x.v;
    case 'bool': return x.v;
    case 'null': return null;
    case 'date': return new Date(Number(x.v));
    case 'oid': return new bson.ObjectId(x.v);
    case 'regex': return new bson.BSONRegExp(x.v.pattern, x.v.options);
    case 'binary': return new bson.Binary(Buffer.from(x.v.base64, 'base64'), x.v.subType);
    case 'timestamp': return new bson.Timestamp({ t: x.v.t, i: x.v.i });
    case 'minKey': return new bson.MinKey();
    case 'maxKey': return new bson.MaxKey();
    case 'undefined': return undefined;
    case 'symbol': return new bson.BSONSymbol(x.v);
    case 'code': return new bson.Code(x.v);
    case 'array': return x.v.map(toDriver);
    case 'doc': return new Map(x.v.map(([k, v]) => [k, toDriver(v)]));
    default: throw new Error(`toDriver: unknown tag ${x.t}`);
    }
}

function fromDriver(v) {
    if (v === null) return { t: 'null', v: null };
    if (v === undefined) return { t: 'undefined', v: null };
    if (typeof v === 'string') return { t: 'string', v };
    if (typeof v === 'boolean') return { t: 'bool', v };
    if (typeof v === 'number') return Number.isInteger(v) && v >= INT32_MIN && v <= INT32_MAX
        ? { t: 'int', v } : { t: 'double', v };
    if (typeof v === 'bigint') return { t: 'long', v: v.toString() };
    if (v instanceof Date) return { t: 'date', v: BigInt(v.getTime()).toString() };
    if (Array.isArray(v)) return { t: 'array', v: v.map(fromDriver) };
    if (Buffer.isBuffer(v)) return { t: 'binary', v: { base64: v.toString('base64'), subType: 0 } };
    switch (v._bsontype) {
    case 'Double': return { t: 'double', v: v.valueOf() };
    case 'Int32': return { t: 'int', v: v.valueOf() };
    case 'Long': return { t: 'long', v: v.toString() };
    case 'Timestamp': return { t: 'timestamp', v: { t: v.high >>> 0, i: v.low >>> 0 } };
    case 'Decimal128': return { t: 'decimal', v: v.toString() };
    case 'ObjectId': return { t: 'oid', v: v.toHexString() };
    case 'BSONRegExp': return { t: 'regex', v: { pattern: v.pattern, options: sortFlags(v.options) } };
    case 'Binary': return { t: 'binary', v: { base64: Buffer.from(v.buffer.subarray(0, v.position)).toString('base64'), subType: v.sub_type } };
    case 'MinKey': return { t: 'minKey', v: null };
    case 'MaxKey': return { t: 'maxKey', v: null };
    case 'BSONSymbol': return { t: 'symbol', v: v.valueOf() };
    case 'Code': return { t: 'code', v: v.code };
    default: break;
    }
    if (v instanceof Map) return { t: 'doc', v: [...v.entries()].map(([k, x]) => [k, fromDriver(x)]), driver: true };
    return { t: 'doc', v: Object.keys(v).map((k) => [k, fromDriver(v[k])]), driver: true };
}

/* ------------------------------------------------------------ comparing */

const isIndex = (k) => /^(0|[1-9]\d*)$/.test(k) && Number(k) < 4294967295;

/* Keys in the order a JS object keeps them: integer-like keys first, ascending. */
function jsOrder(pairs) {
    const ints = pairs.filter(([k]) => isIndex(k)).sort((a, b) => Number(a[0]) - Number(b[0]));
    return ints.concat(pairs.filter(([k]) => !isIndex(k)));
}

/* A Decimal128 string reduced to its value: sign, digits without leading or trailing
 * zeros, and exponent, so that members of one cohort (4.5, 4.50, 45E-1) compare equal, as
 * the in-process runner compares them (bq_value_compare). */
function decimalValue(str) {
    const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(str);
    if (!m) return str.replace(/^\+/, ''); // NaN, Infinity, -Infinity
    let digits = (m[2] || '') + (m[3] || '');
    let exp = Number(m[4] || 0) - (m[3] || '').length;
    digits = digits.replace(/^0+/, '');
    if (!digits) return '0';
    while (digits.endsWith('0')) {
        digits = digits.slice(0, -1);
        exp++;
    }
    return `${m[1] === '-' ? '-' : ''}${digits}e${exp}`;
}

function decimalEqual(a, b) {
    return a === b || decimalValue(a) === decimalValue(b);
}

function equal(a, b) {
    if (a.t !== b.t) return false;
    switch (a.t) {
    case 'double':
        if (Number.isNaN(a.v) || Number.isNaN(b.v)) return Number.isNaN(a.v) && Number.isNaN(b.v);
        return a.v === b.v;
    case 'int': case 'string': case 'bool': case 'symbol': case 'code': case 'oid':
        return a.v === b.v;
    case 'long': case 'date':
        return BigInt(a.v) === BigInt(b.v);
    case 'decimal': return decimalEqual(a.v, b.v);
    case 'null': case 'minKey': case 'maxKey': case 'undefined': return true;
    case 'regex': return a.v.pattern === b.v.pattern && a.v.options === b.v.options;
    case 'binary': return a.v.base64 === b.v.base64 && a.v.subType === b.v.subType;
    case 'timestamp': return a.v.t === b.v.t && a.v.i === b.v.i;
    case 'array':
        return a.v.length === b.v.length && a.v.every((x, i) => equal(x, b.v[i]));
    case 'doc': {
        if (a.v.length !== b.v.length) return false;
        const order = a.driver || b.driver;
        const pa = order ? jsOrder(a.v) : a.v;
        const pb = order ? jsOrder(b.v) : b.v;
        return pa.every(([k, x], i) => pb[i][0] === k && equal(x, pb[i][1]));
    }
    default: return false;
    }
}

function show(x) {
    switch (x.t) {
    case 'double':
        if (Number.isNaN(x.v)) return '{"$numberDouble":"NaN"}';
        if (!Number.isFinite(x.v)) return `{"$numberDouble":"${x.v > 0 ? '' : '-'}Infinity"}`;
        return Number.isInteger(x.v) ? (Object.is(x.v, -0) ? '-0.0' : `${x.v}.0`) : String(x.v);
    case 'int': return String(x.v);
    case 'long': return `{"$numberLong":"${x.v}"}`;
    case 'decimal': return `{"$numberDecimal":"${x.v}"}`;
    case 'string': return JSON.stringify(x.v);
    case 'bool': return String(x.v);
    case 'null': return 'null';
    case 'date': return `{"$date":{"$numberLong":"${x.v}"}}`;
    case 'oid': return `{"$oid":"${x.v}"}`;
    case 'regex': return `{"$regularExpression":{"pattern":${JSON.stringify(x.v.pattern)},"options":"${x.v.options}"}}`;
    case 'binary': return `{"$binary":{"base64":"${x.v.base64}","subType":"${x.v.subType.toString(16).padStart(2, '0')}"}}`;
    case 'timestamp': return `{"$timestamp":{"t":${x.v.t},"i":${x.v.i}}}`;
    case 'minKey': return '{"$minKey":1}';
    case 'maxKey': return '{"$maxKey":1}';
    case 'undefined': return '{"$undefined":true}';
    case 'symbol': return `{"$symbol":${JSON.stringify(x.v)}}`;
    case 'code': return `{"$code":${JSON.stringify(x.v)}}`;
    case 'array': return `[${x.v.map(show).join(',')}]`;
    case 'doc': return `{${x.v.map(([k, v]) => `${JSON.stringify(k)}:${show(v)}`).join(',')}}`;
    default: return '?';
    }
}

/* Why the node driver cannot send x as the same BSON, or null when it can: a document
 * that repeats a key (a Map cannot), BSON undefined (js-bson writes null or nothing), a
 * date outside the range of a JS Date. */
const JS_DATE_MAX = 8640000000000000n;
function unsendable(x) {
    if (x.t === 'undefined') return 'BSON undefined';
    if (x.t === 'date' && (BigInt(x.v) > JS_DATE_MAX || BigInt(x.v) < -JS_DATE_MAX))
        return 'a date outside the range of a JS Date';
    if (x.t === 'array') {
        for (const v of x.v) {
            const r = unsendable(v);
            if (r) return r;
        }
        return null;
    }
    if (x.t !== 'doc') return null;
    if (new Set(x.v.map(([k]) => k)).size !== x.v.length) return 'a document with duplicate keys';
    for (const [, v] of x.v) {
        const r = unsendable(v);
        if (r) return r;
    }
    return null;
}

function get(doc, key) {
    if (!doc || doc.t !== 'doc') return undefined;
    const p = doc.v.find(([k]) => k === key);
    return p ? p[1] : undefined;
}

module.exports = { parseAll, toDriver, fromDriver, equal, show, unsendable, get };
