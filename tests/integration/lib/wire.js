'use strict';
/*
 * lib/wire.js: MongoDB wire-protocol frames built and read by hand, for tests that must
 * send what no driver would (tests/integration/test_robustness.js) or see the raw socket
 * (whatsmyuri). BSON encoding comes from the node driver's own `bson` package.
 *
 * Layouts (MongoDB wire protocol reference; all integers little-endian):
 *   header   int32 messageLength, int32 requestID, int32 responseTo, int32 opCode
 *   OP_MSG   (2013) uint32 flagBits; sections: kind 0 = one BSON document, kind 1 = int32
 *            size, cstring identifier, BSON documents; optional uint32 CRC-32C of every
 *            preceding byte of the message when flagBits bit 0 (checksumPresent) is set.
 *            Bit 1 moreToCome, bit 16 exhaustAllowed.
 *   OP_QUERY (2004) int32 flags, cstring fullCollectionName, int32 numberToSkip,
 *            int32 numberToReturn, BSON query
 *   OP_REPLY (1)    int32 responseFlags, int64 cursorID, int32 startingFrom,
 *            int32 numberReturned, BSON documents
 */
const net = require('net');
const { BSON } = require('bson');

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_COMPRESSED = 2012;
const OP_MSG = 2013;
const CHECKSUM_PRESENT = 1 << 0;
const MORE_TO_COME = 1 << 1;
const EXHAUST_ALLOWED = 1 << 16;

let nextId = 1000;
const newRequestId = () => nextId++;

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ---- */
const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
        t[n] = c >>> 0;
    }
    return t;
})();

function crc32c(buf) {
    let c = 0xffffffff;
    for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
}

/* ---- builders ---- */

function header(length, requestId, responseTo, opCode) {
    const h = Buffer.alloc(16);
    h.writeInt32LE(length, 0);
    h.writeInt32LE(requestId, 4);
    h.writeInt32LE(responseTo, 8);
    h.writeInt32LE(opCode, 12);
    return h;
}

/*
 * OP_MSG with one kind-0 section. `body` is a document (serialized with BSON) or a Buffer
 * of raw bytes used as is. Options: requestId, flags, checksum (true: append the right
 * CRC-32C and set the flag; a number: append that value instead), sequences
 * ([{id, docs}] as kind-1 sections).
 */
function opMsg(body, opts = {}) {
    const requestId = opts.requestId ?? newRequestId();
    let flags = opts.flags ?? 0;
    const parts = [];
    parts.push(Buffer.from([0]));
    parts.push(Buffer.isBuffer(body) ? body : Buffer.from(BSON.serialize(body)));
    for (const seq of opts.sequences || []) {
        const docs = Buffer.concat(seq.docs.map((d) => Buffer.from(BSON.serialize(d))));
        const id = Buffer.from(seq.id + '\0', 'utf8');
        const size = Buffer.alloc(4);
        size.writeInt32LE(4 + id.length + docs.length);
        parts.push(Buffer.from([1]), size, id, docs);
    }
    const payload = Buffer.concat(parts);
    const withCrc = opts.checksum !== undefined && opts.checksum !== false;
    if (withCrc) flags |= CHECKSUM_PRESENT;
    const fl = Buffer.alloc(4);
    fl.writeUInt32LE(flags >>> 0);
    const len = 16 + 4 + payload.length + (withCrc ? 4 : 0);
    let msg = Buffer.concat([header(len, requestId, 0, OP_MSG), fl, payload]);
    if (withCrc) {
        const crc = Buffer.alloc(4);
        crc.writeUInt32LE(opts.checksum === true ? crc32c(msg) : opts.checksum >>> 0);
        msg = Buffer.concat([msg, crc]);
    }
    return { requestId, bytes: msg };
}

/* OP_QUERY of `query` on `ns` (e.g. "admin.$cmd"), numberToReturn -1 like drivers send. */
function opQuery(ns, query, opts = {}) {
    const requestId = opts.requestId ?? newRequestId();
    const flags = Buffer.alloc(4);
    flags.writeInt32LE(opts.flags ?? 0);
    const nsb = Buffer.from(ns + '\0', 'utf8');
    const skipRet = Buffer.alloc(8);
    skipRet.writeInt32LE(0, 0);
    skipRet.writeInt32LE(opts.numberToReturn ?? -1, 4);
    const q = Buffer.from(BSON.serialize(query));
    const len = 16 + 4 + nsb.length + 8 + q.length;
    return { requestId, bytes: Buffer.concat([header(len, requestId, 0, OP_QUERY), flags, nsb, skipRet, q]) };
}

/* ---- parsing ---- */

/* Parses one whole reply frame into {length, requestId, responseTo, opCode, ...}. */
function parseFrame(buf) {
    const f = {
        length: buf.readInt32LE(0),
        requestId: buf.readInt32LE(4),
        responseTo: buf.readInt32LE(8),
        opCode: buf.readInt32LE(12),
    };
    if (f.opCode === OP_MSG) {
        f.flags = buf.readUInt32LE(16);
        if (f.flags & CHECKSUM_PRESENT) // a reply may carry a checksum too: it must be right
            f.checksumOk = crc32c(buf.subarray(0, buf.length - 4)) === buf.readUInt32LE(buf.length - 4);
        let end = buf.length - (f.flags & CHECKSUM_PRESENT ? 4 : 0);
        let off = 20;
        f.sections = [];
        while (off < end) {
            const kind = buf[off++];
            if (kind === 0) {
                const n = buf.readInt32LE(off);
                const doc = BSON.deserialize(buf.subarray(off, off + n));
                if (f.body === undefined) f.body = doc;
                f.sections.push({ kind, doc });
                off += n;
            } else {
                const size = buf.readInt32LE(off);
                f.sections.push({ kind, size });
                off += size;
            }
        }
    } else if (f.opCode === OP_REPLY) {
        f.responseFlags = buf.readInt32LE(16);
        f.cursorId = buf.readBigInt64LE(20);
        f.startingFrom = buf.readInt32LE(28);
        f.numberReturned = buf.readInt32LE(32);
        f.docs = [];
        let off = 36;
        while (off < buf.length) {
            const n = buf.readInt32LE(off);
            f.docs.push(BSON.deserialize(buf.subarray(off, off + n)));
            off += n;
        }
        f.body = f.docs[0];
    }
    return f;
}

/*
 * A raw client connection: send bytes, read whole frames, notice when the server closes.
 *   const c = await RawConn.open(port);
 *   const reply = await c.command({ping: 1, $db: 'admin'});
 */
class RawConn {
    constructor(sock) {
        this.sock = sock;
        this.buf = Buffer.alloc(0);
        this.frames = [];
        this.waiters = [];
        this.closed = false;
        this.error = null;
        this.received = 0; // bytes received in total
        this.closedPromise = new Promise((resolve) => {
            sock.on('close', () => {
                this.closed = true;
                this._wake();
                resolve();
            });
        });
        sock.on('error', (e) => {
            this.error = e;
        });
        sock.on('data', (d) => {
            this.received += d.length;
            this.buf = Buffer.concat([this.buf, d]);
            while (this.buf.length >= 4) {
                const n = this.buf.readInt32LE(0);
                if (n < 16 || this.buf.length < n) break;
                this.frames.push(parseFrame(this.buf.subarray(0, n)));
                this.buf = this.buf.subarray(n);
            }
            this._wake();
        });
    }

    static open(port, host = '127.0.0.1', timeoutMs = 5000) {
        return new Promise((resolve, reject) => {
            const sock = net.connect({ port, host });
            const t = setTimeout(() => {
                sock.destroy();
                reject(new Error(`connect to ${host}:${port} timed out`));
            }, timeoutMs);
            sock.once('connect', () => {
                clearTimeout(t);
                sock.setNoDelay(true);
                resolve(new RawConn(sock));
            });
            sock.once('error', (e) => {
                clearTimeout(t);
                reject(e);
            });
        });
    }

    _wake() {
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
    }

    _changed(timeoutMs) {
        return new Promise((resolve) => {
            const t = setTimeout(resolve, timeoutMs);
            this.waiters.push(() => {
                clearTimeout(t);
                resolve();
            });
        });
    }

    write(bytes) {
        return new Promise((resolve, reject) => {
            this.sock.write(bytes, (e) => (e ? reject(e) : resolve()));
        });
    }

    /* Next frame; throws if none arrives within timeoutMs or the server closes. */
    async readFrame(timeoutMs = 5000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            if (this.frames.length) return this.frames.shift();
            if (this.closed) throw new Error('server closed the connection instead of replying');
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms`);
            await this._changed(left);
        }
    }

    /* Sends an OP_MSG command and returns the reply frame (asserting responseTo). */
    async request(body, opts = {}, timeoutMs = 5000) {
        const m = opMsg(body, opts);
        await this.write(m.bytes);
        const f = await this.readFrame(timeoutMs);
        if (f.responseTo !== m.requestId)
            throw new Error(`reply responseTo ${f.responseTo}, expected ${m.requestId}`);
        return f;
    }

    async command(body, timeoutMs = 5000) {
        return (await this.request(body, {}, timeoutMs)).body;
    }

    /* Resolves true if the server closes the connection within timeoutMs, false if not. */
    async waitClosed(timeoutMs = 3000) {
        if (this.closed) return true;
        let t;
        const r = await Promise.race([
            this.closedPromise.then(() => true),
            new Promise((res) => { t = setTimeout(() => res(false), timeoutMs); }),
        ]);
        clearTimeout(t);
        return r;
    }

    close() {
        this.sock.destroy();
    }

    get localPort() {
        return this.sock.localPort;
    }
}

module.exports = {
    OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG, CHECKSUM_PRESENT, MORE_TO_COME, EXHAUST_ALLOWED,
    BSON, crc32c, header, opMsg, opQuery, parseFrame, newRequestId, RawConn,
};
