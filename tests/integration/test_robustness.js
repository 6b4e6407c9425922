'use strict';
/*
 * test_robustness.js: bad input never takes nedbd down (DESIGN.md sections 8 and 9).
 *
 * Every hostile frame goes on its own raw socket while a "keeper" connection pings the
 * server every 20 ms; after each case the keeper must still be getting answers. Malformed
 * frames (garbage, absurd or negative lengths, a wrong checksum, unknown required flag bits,
 * OP_COMPRESSED, two body sections) close that one connection; a well-delimited frame whose
 * BSON is invalid is answered with InvalidBSON (22) and the connection is kept.
 *
 * Then: 1,000 connections held open at once, nedbd raising its own fd limit, shutdown on
 * SIGTERM with clients connected, and the command line (--help, --version, bad flags).
 *
 * File descriptors: holding N connections needs N descriptors in this process and N in
 * nedbd. Node cannot raise its own RLIMIT_NOFILE, so the test reads the soft limit from
 * /proc/self/limits and holds min(1000, soft limit - 200) connections, saying so in a `#`
 * line when that is fewer than 1,000 (raise it with `ulimit -n 4096` before running).
 * nedbd is expected to raise its own soft limit to its hard limit: the fd-limit test starts
 * it under `ulimit -Sn 256` and holds 400 connections.
 */
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const h = require('./lib/server');
const w = require('./lib/wire');
const { RawConn, BSON } = w;

let srv;
let keeper;
let observer; // a second idle connection for serverStatus, so requests never share a socket

/* Pings on one connection every 20 ms for as long as the file runs. */
class Keeper {
    constructor(conn) {
        this.conn = conn;
        this.answers = 0;
        this.error = null;
        this.running = true;
        this.loop = this._loop();
    }

    async _loop() {
        while (this.running) {
            try {
                const r = await this.conn.command({ ping: 1, $db: 'admin' }, 3000);
                if (r.ok !== 1) throw new Error(`ping answered ${JSON.stringify(r)}`);
                this.answers++;
            } catch (e) {
                this.error = this.error || e;
                return;
            }
            await h.sleep(20);
        }
    }

    /* Asserts the keeper is healthy and has been answered since `since` answers. */
    async check(since) {
        const deadline = Date.now() + 2000;
        while (this.answers <= since + 1 && !this.error && Date.now() < deadline) await h.sleep(20);
        if (this.error) throw new Error(`keeper connection failed: ${this.error.message}`);
        assert.ok(this.answers > since + 1, `keeper got ${this.answers - since} answers in 2 s`);
        assert.ok(srv.alive(), 'nedbd died');
    }

    async stop() {
        this.running = false;
        await this.loop;
        this.conn.close();
    }
}

let baseFds; // nedbd's open descriptors with only the keeper connected

h.before(async () => {
    srv = await h.startServer();
    keeper = new Keeper(await RawConn.open(srv.port));
    observer = await RawConn.open(srv.port);
    await h.sleep(100);
    baseFds = fdCount(srv.pid);
});

h.after(async () => {
    if (observer) observer.close();
    if (keeper) await keeper.stop();
    if (srv && srv.alive()) srv.kill();
});

/* Opens a socket, sends `bytes`, and asserts the server closes it within timeoutMs
 * without answering with a reply frame; then the keeper and a fresh connection still work. */
async function expectClosed(bytes, what, timeoutMs = 3000) {
    const since = keeper.answers;
    const c = await RawConn.open(srv.port);
    const port = c.localPort;
    try {
        await c.write(bytes).catch(() => {}); // the server may close while we write
        const closed = await c.waitClosed(timeoutMs);
        assert.ok(closed, `${what}: connection still open ${timeoutMs} ms later`);
        assert.equal(c.frames.length, 0, `${what}: server answered with a frame ` +
                     `(opCode ${c.frames[0] && c.frames[0].opCode})`);
    } finally {
        c.close();
    }
    await keeper.check(since);
    await freshPing();
    // DESIGN.md section 8: a malformed frame closes its connection "with a log line". At
    // --log-level 1 every connection also logs its accept and end; look for a third line.
    const why = () => fs.readFileSync(srv.logPath, 'utf8').split('\n')
        .filter((l) => l.includes(`127.0.0.1:${port}`) && !/accepted|end connection/i.test(l));
    for (let i = 0; i < 20 && why().length === 0; i++) await h.sleep(50);
    assert.ok(why().length > 0, `${what}: no log line says why connection 127.0.0.1:${port} was closed`);
}

async function freshPing() {
    const c = await RawConn.open(srv.port);
    try {
        assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1, 'ping on a fresh connection');
    } finally {
        c.close();
    }
}

function rssKiB(pid) {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)/m);
    return m ? Number(m[1]) : 0;
}

function fdCount(pid) {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/* Waits up to 3 s for nedbd's open descriptors to come back to at most `limit`. */
async function fdsBackTo(pid, limit) {
    let n = fdCount(pid);
    for (let i = 0; i < 60 && n > limit; i++) {
        await h.sleep(50);
        n = fdCount(pid);
    }
    return n;
}

async function connectionsCurrent() {
    const r = await observer.command({ serverStatus: 1, $db: 'admin' });
    return Number(r.connections.current);
}

/* ------------------------------------------------------------ well-formed baseline */

h.test('test library: CRC-32C gives the Castagnoli check value', () => {
    assert.equal(w.crc32c(Buffer.from('123456789')), 0xe3069283);
});

h.test('baseline: hand-built OP_MSG ping is answered with OP_MSG ok:1', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const f = await c.request({ ping: 1, $db: 'admin' });
        assert.equal(f.opCode, w.OP_MSG);
        assert.equal(f.flags & ~w.CHECKSUM_PRESENT, 0, `reply flagBits ${f.flags}`);
        assert.equal(f.body.ok, 1);
        assert.equal(f.length, c.received, 'messageLength is the whole reply');
    } finally {
        c.close();
    }
});

h.test('a frame split into 1-byte writes is reassembled and answered', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const m = w.opMsg({ ping: 1, $db: 'admin' });
        for (const byte of m.bytes) {
            await c.write(Buffer.from([byte]));
            await h.sleep(2);
        }
        const f = await c.readFrame();
        assert.equal(f.responseTo, m.requestId);
        assert.equal(f.body.ok, 1);
    } finally {
        c.close();
    }
});

h.test('several frames in one write are each answered, in order', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const ms = [1, 2, 3, 4, 5].map(() => w.opMsg({ ping: 1, $db: 'admin' }));
        await c.write(Buffer.concat(ms.map((m) => m.bytes)));
        for (const m of ms) {
            const f = await c.readFrame();
            assert.equal(f.responseTo, m.requestId);
            assert.equal(f.body.ok, 1);
        }
    } finally {
        c.close();
    }
});

/* ------------------------------------------------------------ hostile frames */

h.test('(a) garbage bytes close that connection only: HTTP request', async () => {
    await expectClosed(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'), 'HTTP GET');
});

h.test('(a) garbage bytes close that connection only: 4 KiB of 0xFF', async () => {
    await expectClosed(Buffer.alloc(4096, 0xff), '0xFF bytes');
});

h.test('(a) garbage bytes close that connection only: unknown opcode', async () => {
    const body = Buffer.alloc(48, 0x41);
    await expectClosed(Buffer.concat([w.header(64, 7, 0, 9999), body]), 'opcode 9999');
});

h.test('(b) a truncated frame then close leaves no connection behind', async () => {
    const base = await connectionsCurrent();
    const since = keeper.answers;
    const c = await RawConn.open(srv.port);
    const m = w.opMsg({ ping: 1, $db: 'admin', pad: 'x'.repeat(200) });
    await c.write(m.bytes.subarray(0, 60));
    await h.sleep(100);
    assert.equal(c.frames.length, 0, 'answered a partial frame');
    assert.ok(!c.closed, 'closed a connection that only sent part of a frame');
    c.sock.end(); // half-close: the server sees EOF in the middle of a frame
    await c.waitClosed(3000);
    c.close();
    let now;
    for (let i = 0; i < 30; i++) {
        now = await connectionsCurrent();
        if (now <= base) break;
        await h.sleep(100);
    }
    assert.ok(now <= base, `connections.current ${base} before, ${now} after the truncated connection closed`);
    await keeper.check(since);
    await freshPing();
});

h.test('(c) a 2 GiB length prefix closes the connection, nothing is allocated', async () => {
    const rss0 = rssKiB(srv.pid);
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(0x7fffffff, 0); // 2 GiB - 1, the largest int32
    hdr.writeInt32LE(1, 4);
    hdr.writeInt32LE(w.OP_MSG, 12);
    await expectClosed(Buffer.concat([hdr, Buffer.alloc(64)]), '2 GiB length');
    const hdr2 = Buffer.from(hdr);
    hdr2.writeUInt32LE(0x80000000, 0); // exactly 2 GiB, which is INT32_MIN as an int32
    await expectClosed(Buffer.concat([hdr2, Buffer.alloc(64)]), '2^31 length');
    const hdr3 = Buffer.from(hdr);
    hdr3.writeInt32LE(48000001, 0); // one byte over maxMessageSizeBytes
    await expectClosed(Buffer.concat([hdr3, Buffer.alloc(64)]), 'maxMessageSizeBytes + 1');
    const grown = rssKiB(srv.pid) - rss0;
    assert.ok(grown < 64 * 1024, `nedbd RSS grew by ${grown} KiB`);
});

h.test('(d) negative and too-small lengths close the connection', async () => {
    for (const len of [-1, -16, 0, 15]) {
        const hdr = Buffer.alloc(16);
        hdr.writeInt32LE(len, 0);
        hdr.writeInt32LE(1, 4);
        hdr.writeInt32LE(w.OP_MSG, 12);
        await expectClosed(Buffer.concat([hdr, Buffer.alloc(32)]), `length ${len}`);
    }
});

/* Raw BSON bytes {a: "hi"} with a string length that runs past the document. */
function badStringDoc() {
    const good = Buffer.from(BSON.serialize({ ping: 1, $db: 'admin', a: 'hi' }));
    const i = good.indexOf(Buffer.from('\x02a\x00', 'latin1'));
    const bad = Buffer.from(good);
    bad.writeInt32LE(1000, i + 3); // string length 1000 in a 40-byte document
    return bad;
}

/* Raw BSON bytes with an element of unknown type 0x42. */
function badTypeDoc() {
    const good = Buffer.from(BSON.serialize({ ping: 1, $db: 'admin', a: 5 }));
    const i = good.indexOf(Buffer.from('\x10a\x00', 'latin1'));
    const bad = Buffer.from(good);
    bad[i] = 0x42;
    return bad;
}

for (const [what, make] of [['a string length past the end', badStringDoc],
                            ['an unknown element type', badTypeDoc]]) {
    h.test(`(e) invalid BSON body (${what}): InvalidBSON 22 reply, connection kept`, async () => {
        const since = keeper.answers;
        const c = await RawConn.open(srv.port);
        try {
            const f = await c.request(make());
            assert.equal(f.opCode, w.OP_MSG);
            assert.equal(f.body.ok, 0, `reply ${JSON.stringify(f.body)}`);
            assert.equal(f.body.code, 22, `code ${f.body.code}: ${f.body.errmsg}`);
            assert.equal(f.body.codeName, 'InvalidBSON');
            assert.equal(typeof f.body.errmsg, 'string');
            assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1, 'ping after InvalidBSON');
        } finally {
            c.close();
        }
        await keeper.check(since);
    });
}

h.test('(f) OP_MSG with the checksum flag and a wrong CRC-32C closes the connection', async () => {
    const good = w.opMsg({ ping: 1, $db: 'admin' }, { checksum: true });
    const crc = good.bytes.readUInt32LE(good.bytes.length - 4);
    const bad = w.opMsg({ ping: 1, $db: 'admin' }, { checksum: (crc ^ 0x1) >>> 0, requestId: good.requestId });
    await expectClosed(bad.bytes, 'wrong CRC-32C');
});

h.test('(f) OP_MSG with the checksum flag and the right CRC-32C is answered', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const f = await c.request({ ping: 1, $db: 'admin' }, { checksum: true });
        assert.equal(f.body.ok, 1);
        if (f.flags & w.CHECKSUM_PRESENT) assert.equal(f.checksumOk, true, 'reply carries a wrong CRC-32C');
    } finally {
        c.close();
    }
});

h.test('(g) OP_QUERY hello / isMaster on admin.$cmd is answered with OP_REPLY', async () => {
    const c = await RawConn.open(srv.port);
    try {
        for (const cmd of [{ hello: 1 }, { isMaster: 1 }, { ismaster: 1 },
                           { $query: { isMaster: 1 } }]) {
            const q = w.opQuery('admin.$cmd', cmd);
            await c.write(q.bytes);
            const f = await c.readFrame();
            const what = JSON.stringify(cmd);
            assert.equal(f.opCode, w.OP_REPLY, `${what}: opCode`);
            assert.equal(f.responseTo, q.requestId, `${what}: responseTo`);
            assert.equal(f.cursorId, 0n, `${what}: cursorID`);
            assert.equal(f.startingFrom, 0, `${what}: startingFrom`);
            assert.equal(f.numberReturned, 1, `${what}: numberReturned`);
            assert.equal(f.docs.length, 1, `${what}: documents`);
            const r = f.body;
            assert.equal(r.ok, 1, `${what}: reply ${JSON.stringify(r)}`);
            if ('hello' in cmd) assert.equal(r.isWritablePrimary, true, `${what}: isWritablePrimary`);
            else assert.equal(r.ismaster, true, `${what}: ismaster`);
            assert.equal(r.maxWireVersion, 21, `${what}: maxWireVersion`);
            assert.equal(r.minWireVersion, 0, `${what}: minWireVersion`);
        }
        // The same connection goes on with OP_MSG, as drivers do after the handshake.
        assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    } finally {
        c.close();
    }
});

h.test('(g) OP_QUERY of anything but the handshake is refused as MongoDB 7.0 does, connection kept', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const cases = [
            ['admin.$cmd', { ping: 1 }, 352],          // UnsupportedOpQueryCommand
            ['test.$cmd', { serverStatus: 1 }, 352],
            ['test.coll', { a: 1 }, 5739101],          // a legacy query: "OP_QUERY is no longer supported"
            ['test.coll', {}, 5739101],                // ... whatever the query, even an empty one
        ];
        for (const [ns, query, code] of cases) {
            const q = w.opQuery(ns, query);
            await c.write(q.bytes);
            const f = await c.readFrame();
            const what = `${ns} ${JSON.stringify(query)}`;
            assert.equal(f.opCode, w.OP_REPLY, `${what}: opCode`);
            assert.equal(f.responseTo, q.requestId, `${what}: responseTo`);
            assert.equal(f.body.ok, 0, `${what}: ${JSON.stringify(f.body)}`);
            assert.equal(f.body.code, code, `${what}: ${JSON.stringify(f.body)}`);
        }
        assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1, 'OP_MSG ping afterwards');
    } finally {
        c.close();
    }
});

h.test('(h) OP_MSG moreToCome ping gets no reply; the next request does', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const quiet = w.opMsg({ ping: 1, $db: 'admin' }, { flags: w.MORE_TO_COME });
        const loud = w.opMsg({ ping: 1, $db: 'admin' });
        await c.write(quiet.bytes);
        await h.sleep(200);
        assert.equal(c.frames.length, 0, 'moreToCome ping was answered');
        await c.write(loud.bytes);
        const f = await c.readFrame();
        assert.equal(f.responseTo, loud.requestId, `first reply answers request ${f.responseTo}`);
        await h.sleep(200);
        assert.equal(c.frames.length, 0, 'an extra reply arrived');
        assert.ok(!c.closed, 'connection closed after moreToCome');
    } finally {
        c.close();
    }
});

h.test('unknown required flag bit (bit 2) closes the connection', async () => {
    const m = w.opMsg({ ping: 1, $db: 'admin' }, { flags: 1 << 2 });
    await expectClosed(m.bytes, 'flag bit 2');
});

h.test('optional flag bit exhaustAllowed on a ping is ignored', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const f = await c.request({ ping: 1, $db: 'admin' }, { flags: w.EXHAUST_ALLOWED });
        assert.equal(f.body.ok, 1);
        assert.equal(f.flags & w.MORE_TO_COME, 0, 'moreToCome set on a ping reply');
    } finally {
        c.close();
    }
});

h.test('OP_COMPRESSED (not negotiated) closes the connection', async () => {
    const inner = w.opMsg({ ping: 1, $db: 'admin' });
    const body = Buffer.alloc(9);
    body.writeInt32LE(w.OP_MSG, 0);
    body.writeInt32LE(inner.bytes.length - 16, 4);
    body[8] = 0; // noop compressor
    const payload = Buffer.concat([body, inner.bytes.subarray(16)]);
    await expectClosed(Buffer.concat([w.header(16 + payload.length, 9, 0, w.OP_COMPRESSED), payload]),
                       'OP_COMPRESSED');
});

h.test('OP_MSG with two kind-0 sections closes the connection', async () => {
    const a = Buffer.from(BSON.serialize({ ping: 1, $db: 'admin' }));
    const payload = Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.from([0]), a, Buffer.from([0]), a]);
    await expectClosed(Buffer.concat([w.header(16 + payload.length, 11, 0, w.OP_MSG), payload]),
                       'two body sections');
});

h.test('OP_MSG section that overruns the message closes the connection', async () => {
    const a = Buffer.from(BSON.serialize({ ping: 1, $db: 'admin' }));
    const seqHdr = Buffer.alloc(4);
    seqHdr.writeInt32LE(5000); // kind-1 size far past the end of the message
    const payload = Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.from([0]), a, Buffer.from([1]), seqHdr,
                                   Buffer.from('documents\0')]);
    await expectClosed(Buffer.concat([w.header(16 + payload.length, 12, 0, w.OP_MSG), payload]),
                       'overlong kind-1 section');
});

h.test('kind-1 document sequence is accepted next to the body', async () => {
    const c = await RawConn.open(srv.port);
    try {
        const f = await c.request({ ping: 1, $db: 'admin' },
                                  { sequences: [{ id: 'documents', docs: [{ _id: 1 }, { _id: 2 }] }] });
        assert.equal(f.body.ok, 1, `reply ${JSON.stringify(f.body)}`);
    } finally {
        c.close();
    }
});

h.test('large frames: a 15 MiB command is answered, a 17 MiB document is refused, server stays up', async () => {
    const since = keeper.answers;
    const c = await RawConn.open(srv.port);
    try {
        const big = await c.command({ ping: 1, $db: 'admin', pad: 'x'.repeat(15 * 1024 * 1024) }, 20000);
        assert.equal(big.ok, 1, 'ping with a 15 MiB field');
    } finally {
        c.close();
    }
    // A body over maxBsonObjectSize (16 MiB) inside a legal message: an error reply or a
    // closed connection are both acceptable; an ok reply or a dead server are not.
    const d = await RawConn.open(srv.port);
    try {
        const m = w.opMsg({ ping: 1, $db: 'admin', pad: 'x'.repeat(17 * 1024 * 1024) });
        await d.write(m.bytes).catch(() => {});
        const f = await d.readFrame(20000).catch(() => null);
        if (f) assert.equal(f.body.ok, 0, `17 MiB document accepted: ${JSON.stringify(f.body).slice(0, 200)}`);
        else assert.ok(d.closed, 'neither a reply nor a close for a 17 MiB document');
    } finally {
        d.close();
    }
    await keeper.check(since);
}, { timeoutMs: 60000 });

h.test('50 connections x 100 pipelined pings across the I/O threads: all answered in order', async () => {
    const conns = await Promise.all(Array.from({ length: 50 }, () => RawConn.open(srv.port)));
    try {
        await Promise.all(conns.map(async (c) => {
            const ms = Array.from({ length: 100 }, () => w.opMsg({ ping: 1, $db: 'admin' }));
            await c.write(Buffer.concat(ms.map((m) => m.bytes)));
            for (const m of ms) {
                const f = await c.readFrame(10000);
                assert.equal(f.responseTo, m.requestId, 'replies out of order');
                assert.equal(f.body.ok, 1);
            }
        }));
    } finally {
        conns.forEach((c) => c.close());
    }
}, { timeoutMs: 60000 });

h.test('connection churn (500 open/hello/close) leaks no descriptors', async () => {
    for (let i = 0; i < 10; i++) {
        const conns = await Promise.all(Array.from({ length: 50 }, () => RawConn.open(srv.port)));
        await Promise.all(conns.map((c) => c.command({ hello: 1, $db: 'admin' })));
        conns.forEach((c) => c.close());
    }
    const n = await fdsBackTo(srv.pid, baseFds);
    assert.ok(n <= baseFds, `nedbd holds ${n} descriptors, ${baseFds} before the churn`);
}, { timeoutMs: 60000 });

h.test('kind-1 sequences that repeat or collide with a body field are refused, server stays up', async () => {
    const since = keeper.answers;
    const cases = [
        ['repeated identifier', { ping: 1, $db: 'admin' },
         [{ id: 'documents', docs: [{ a: 1 }] }, { id: 'documents', docs: [{ a: 2 }] }]],
        ['identifier equal to a body field', { ping: 1, $db: 'admin', documents: [] },
         [{ id: 'documents', docs: [{ a: 1 }] }]],
    ];
    for (const [what, body, sequences] of cases) {
        const c = await RawConn.open(srv.port);
        try {
            const m = w.opMsg(body, { sequences });
            await c.write(m.bytes);
            const f = await c.readFrame(3000).catch(() => null);
            if (f) {
                assert.equal(f.responseTo, m.requestId, `${what}: responseTo`);
                assert.equal(f.body.ok, 0, `${what}: accepted: ${JSON.stringify(f.body)}`);
                assert.ok(Number.isInteger(f.body.code) && f.body.code > 0, `${what}: code ${f.body.code}`);
            } else {
                assert.ok(c.closed, `${what}: neither an error reply nor a close`);
            }
        } finally {
            c.close();
        }
    }
    await keeper.check(since);
});

h.test('the keeper was answered throughout, and every closed connection released its fd', async () => {
    await keeper.check(keeper.answers - 2);
    assert.ok(keeper.answers > 20, `only ${keeper.answers} keeper pings answered`);
    const n = await fdsBackTo(srv.pid, baseFds);
    assert.ok(n <= baseFds, `nedbd holds ${n} descriptors, ${baseFds} at the start`);
});

/* ------------------------------------------------------------ many connections */

/* Opens n connections in batches, each sends hello and waits for the answer. */
async function openMany(port, n) {
    const conns = [];
    for (let i = 0; i < n; i += 100) {
        const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, async () => {
            const c = await RawConn.open(port, '127.0.0.1', 10000);
            conns.push(c);
            const r = await c.command({ hello: 1, $db: 'admin' }, 10000);
            if (r.ok !== 1 || r.isWritablePrimary !== true) throw new Error(`hello answered ${JSON.stringify(r)}`);
            return c;
        })).catch((e) => {
            conns.forEach((c) => c.close());
            throw new Error(`after ${conns.length} connections: ${e.message}`);
        });
        void batch;
    }
    return conns;
}

h.test('1,000 connections held open at once, each answered, while ping goes on', async () => {
    const { soft } = h.openFileLimit();
    const n = Math.min(1000, soft - 200);
    if (n < 1000) h.comment(`fd soft limit ${soft}: holding ${n} connections instead of 1000 (ulimit -n 4096 to fix)`);
    const since = keeper.answers;
    const conns = await openMany(srv.port, n);
    try {
        await keeper.check(since);
        const current = await connectionsCurrent();
        assert.ok(current >= n + 1, `connections.current ${current} with ${n + 1} open`);
        // Every held connection still works, not only the newest.
        const some = [conns[0], conns[Math.floor(n / 2)], conns[n - 1]];
        for (const c of some) assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    } finally {
        conns.forEach((c) => c.close());
    }
    await keeper.check(keeper.answers);
}, { timeoutMs: 120000 });

h.test('nedbd raises its own fd soft limit (started under ulimit -Sn 256, holds 400)', async () => {
    const { hard } = h.openFileLimit();
    if (hard < 1024) {
        h.comment(`fd hard limit ${hard}: cannot check this here`);
        return;
    }
    const s = await h.startServer({
        logLevel: 0,
        wrap: (bin, args) => ['bash', ['-c', 'ulimit -Sn 256 && exec "$0" "$@"', bin, ...args]],
    });
    try {
        const lim = h.openFileLimit(s.pid);
        assert.ok(lim.soft > 256, `nedbd soft fd limit still ${lim.soft}`);
        const conns = await openMany(s.port, 400);
        conns.forEach((c) => c.close());
    } finally {
        await s.stop({ timeoutMs: 5000 });
    }
}, { timeoutMs: 120000 });

/* ------------------------------------------------------------ shutdown */

h.test('SIGTERM with 50 clients (25 mid-ping, one mid-frame): exit 0 within 5 s, no torn replies', async () => {
    const s = await h.startServer({ logLevel: 0 });
    const conns = await openMany(s.port, 50);
    const partial = await RawConn.open(s.port);
    await partial.write(w.opMsg({ ping: 1, $db: 'admin' }).bytes.subarray(0, 20));
    // Commands in flight when SIGTERM lands: each is either answered whole or its
    // connection closed; never a half-written reply.
    const pings = conns.slice(0, 25).map((c) => {
        const m = w.opMsg({ ping: 1, $db: 'admin' });
        c.sock.write(m.bytes);
        return m;
    });
    const t0 = Date.now();
    try {
        await s.stop({ timeoutMs: 5000 });
    } finally {
        partial.close();
    }
    assert.ok(Date.now() - t0 < 5000);
    await Promise.all(conns.map((c) => c.waitClosed(2000)));
    pings.forEach((m, i) => {
        const c = conns[i];
        assert.equal(c.buf.length, 0, `connection ${i}: ${c.buf.length} bytes of a partial reply`);
        for (const f of c.frames) {
            assert.equal(f.responseTo, m.requestId, `connection ${i}: reply to ${f.responseTo}`);
            assert.equal(f.body.ok, 1, `connection ${i}: ${JSON.stringify(f.body)}`);
        }
    });
    const stillOpen = conns.filter((c) => !c.closed).length;
    conns.forEach((c) => c.close());
    assert.equal(stillOpen, 0, `${stillOpen} client sockets still open after nedbd exited`);
}, { timeoutMs: 60000 });

h.test('SIGTERM the moment the port accepts still exits 0 (10 times)', async () => {
    // Once a TCP connect succeeds a client may think the server is up; the signal handlers
    // must be in place by then, or SIGTERM kills nedbd by default action instead of a clean stop.
    for (let i = 0; i < 10; i++) {
        const s = await h.startServer({ logLevel: 0, ready: 'tcp' });
        s.proc.kill('SIGTERM');
        const res = await Promise.race([s.exited, h.sleep(5000).then(() => null)]);
        if (!res) s.kill();
        assert.ok(res, `round ${i}: still running 5 s after SIGTERM`);
        assert.equal(res.signal, null, `round ${i}: killed by ${res.signal} (handler not installed yet?)`);
        assert.equal(res.code, 0, `round ${i}: exit ${res.code}`);
        fs.rmSync(s.dir, { recursive: true, force: true });
    }
}, { timeoutMs: 90000 });

h.test('SIGINT also stops nedbd with exit 0', async () => {
    const s = await h.startServer({ logLevel: 0 });
    const c = await RawConn.open(s.port);
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    s.proc.kill('SIGINT');
    const res = await Promise.race([s.exited, h.sleep(5000).then(() => null)]);
    c.close();
    if (!res) s.kill();
    assert.ok(res, 'nedbd still running 5 s after SIGINT');
    assert.equal(res.code, 0, `exit ${res.signal || res.code}`);
}, { timeoutMs: 30000 });

h.test('the main server is still up and exits 0 on SIGTERM', async () => {
    await keeper.check(keeper.answers);
    await keeper.stop();
    keeper = null;
    observer.close();
    observer = null;
    await srv.stop({ timeoutMs: 5000 });
});

/* ------------------------------------------------------------ command line */

function projectVersion() {
    const m = fs.readFileSync(path.join(h.ROOT, 'CMakeLists.txt'), 'utf8').match(/project\(\s*nedb\s+VERSION\s+([\d.]+)/);
    return m && m[1];
}

h.test('nedbd --help: usage on stdout naming every flag, exit 0', () => {
    const r = h.runNedbdSync(['--help']);
    assert.equal(r.status, 0, `exit ${r.status}, stderr ${r.stderr}`);
    assert.match(r.stdout, /usage/i);
    for (const flag of ['--bind', '--port', '--dbpath', '--threads', '--log-level', '--version', '--help'])
        assert.ok(r.stdout.includes(flag), `--help does not mention ${flag}`);
});

h.test('nedbd --version: prints the project version, exit 0', () => {
    const r = h.runNedbdSync(['--version']);
    assert.equal(r.status, 0, `exit ${r.status}`);
    const v = projectVersion();
    assert.ok(v, 'no project VERSION in CMakeLists.txt');
    assert.ok(r.stdout.includes(v), `--version printed ${JSON.stringify(r.stdout)}, project version ${v}`);
});

h.test('nedbd --bogus: usage on stderr, nothing on stdout, exit 2', () => {
    const r = h.runNedbdSync(['--bogus']);
    assert.equal(r.status, 2, `exit ${r.status}`);
    assert.match(r.stderr, /usage/i);
    assert.ok(r.stderr.includes('--bogus'), 'stderr does not name the bad flag');
    assert.equal(r.stdout, '');
});

h.test('nedbd with bad flag values exits non-zero with a message, without serving', () => {
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'nedb-it-cli-'));
    try {
        for (const args of [['--port', 'abc'], ['--port', '70000'], ['--threads', '0'],
                            ['--log-level', '9'], ['--port']]) {
            const r = h.runNedbdSync([...args, '--dbpath', path.join(dir, 'data')], { timeout: 5000 });
            assert.ok(h.refused(r), `${args.join(' ')}: ${r.what}`);
            assert.ok(r.stderr.trim().length > 0, `${args.join(' ')}: nothing on stderr`);
        }
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

h.test('a second nedbd on a port in use fails to start with a message', async () => {
    const s = await h.startServer({ logLevel: 0 });
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'nedb-it-cli-'));
    try {
        const r = h.runNedbdSync(['--port', String(s.port), '--dbpath', path.join(dir, 'data')], { timeout: 5000 });
        assert.ok(h.refused(r), r.what);
        assert.ok(r.stderr.trim().length > 0, 'nothing on stderr');
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
        await s.stop({ timeoutMs: 5000 });
    }
});

h.test('--log-level 1 logs connections and failed commands; 0 does not', async () => {
    for (const level of [1, 0]) {
        const s = await h.startServer({ logLevel: level });
        const c = await RawConn.open(s.port);
        const port = c.localPort;
        const r = await c.command({ nedbNoSuchCommand: 1, $db: 'admin' });
        assert.equal(r.ok, 0);
        c.close();
        await h.sleep(200);
        await s.stop({ timeoutMs: 5000, keep: true });
        const log = fs.readFileSync(s.logPath, 'utf8').split('\n').slice(1).join('\n');
        fs.rmSync(s.dir, { recursive: true, force: true });
        const hasConn = log.includes(`127.0.0.1:${port}`);
        const hasCmd = log.includes('nedbNoSuchCommand');
        if (level === 1) {
            assert.ok(hasConn, `level 1: no line names the connection 127.0.0.1:${port}`);
            assert.ok(hasCmd, 'level 1: no line names the failed command');
        } else {
            assert.ok(!hasConn && !hasCmd, `level 0 logged per-connection/command lines:\n${log}`);
        }
    }
}, { timeoutMs: 60000 });

h.test('--log-level 3 (or NEDBD_DEBUG=1 without the flag) logs every command; the flag wins', async () => {
    const cases = [
        { opts: { logLevel: 3 }, logged: true },
        { opts: { logLevel: null, env: { NEDBD_DEBUG: '1' } }, logged: true },
        { opts: { logLevel: 0, env: { NEDBD_DEBUG: '1' } }, logged: false },
        { opts: { logLevel: 1 }, logged: false },
    ];
    for (const { opts, logged } of cases) {
        const s = await h.startServer(opts);
        const c = await RawConn.open(s.port);
        assert.equal((await c.command({ buildInfo: 1, $db: 'admin' })).ok, 1);
        c.close();
        await s.stop({ timeoutMs: 5000, keep: true });
        const log = fs.readFileSync(s.logPath, 'utf8').split('\n').slice(1);
        fs.rmSync(s.dir, { recursive: true, force: true });
        const what = JSON.stringify(opts);
        const hit = log.some((l) => /buildInfo/.test(l));
        assert.equal(hit, logged, `${what}: successful buildInfo ${hit ? '' : 'not '}logged`);
    }
}, { timeoutMs: 60000 });

for (const threads of [1, 8]) {
    h.test(`--threads ${threads}: 40 concurrent connections are served`, async () => {
        const s = await h.startServer({ logLevel: 0, threads });
        try {
            const conns = await openMany(s.port, 40);
            await Promise.all(conns.map(async (c) => {
                for (let i = 0; i < 10; i++) assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
            }));
            conns.forEach((c) => c.close());
            const opts = await (async () => {
                const c = await RawConn.open(s.port);
                try { return await c.command({ getCmdLineOpts: 1, $db: 'admin' }); } finally { c.close(); }
            })();
            assert.equal(opts.argv[opts.argv.indexOf('--threads') + 1], String(threads), 'argv --threads');
        } finally {
            await s.stop({ timeoutMs: 5000 });
        }
    }, { timeoutMs: 60000 });
}

h.run();
