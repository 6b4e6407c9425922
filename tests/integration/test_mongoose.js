'use strict';
/*
 * test_mongoose.js: mongoose 9 (node_modules/mongoose) connects to nedbd and reaches the
 * server through its connection object. Only connection-level behaviour here: documents and
 * models belong with the CRUD tests.
 */
const assert = require('assert/strict');
const mongoose = require('mongoose');
const h = require('./lib/server');
const { RawConn } = require('./lib/wire');

let srv;
let conn;

h.before(async () => {
    srv = await h.startServer();
});

h.after(async () => {
    if (conn) await conn.close().catch(() => {});
    if (srv && srv.alive()) srv.kill();
});

h.test('mongoose.createConnection() opens (readyState 1) and the database is the URI one', async () => {
    conn = mongoose.createConnection(`mongodb://127.0.0.1:${srv.port}/nedb_mongoose`, {
        serverSelectionTimeoutMS: 3000,
        autoIndex: false,
        autoCreate: false,
    });
    await conn.asPromise();
    assert.equal(conn.readyState, 1);
    assert.equal(conn.name, 'nedb_mongoose');
});

h.test('admin ping, buildInfo and serverStatus through the mongoose connection', async () => {
    const admin = conn.db.admin();
    assert.equal((await admin.ping()).ok, 1);
    const info = await admin.serverInfo();
    const c = await RawConn.open(srv.port);
    try {
        const bi = await c.command({ buildInfo: 1, $db: 'admin' });
        assert.equal(info.version, bi.version);
    } finally {
        c.close();
    }
    const ss = await admin.serverStatus();
    assert.equal(Number(ss.pid), srv.pid);
});

h.test('an unknown command rejects with code 59 through mongoose', async () => {
    const err = await conn.db.command({ nedbNoSuchCommand: 1 }).then(() => null, (e) => e);
    assert.ok(err, 'succeeded');
    assert.equal(err.code, 59);
    assert.equal(err.codeName, 'CommandNotFound');
});

h.test('the default mongoose.connect() / disconnect() cycle works twice', async () => {
    for (let i = 0; i < 2; i++) {
        await mongoose.connect(`mongodb://127.0.0.1:${srv.port}/test`, { serverSelectionTimeoutMS: 3000 });
        assert.equal(mongoose.connection.readyState, 1, `round ${i}`);
        assert.equal((await mongoose.connection.db.admin().ping()).ok, 1);
        await mongoose.disconnect();
        assert.equal(mongoose.connection.readyState, 0, `round ${i} after disconnect`);
    }
});

h.test('nedbd exits 0 on SIGTERM with a mongoose connection open', async () => {
    await srv.stop({ timeoutMs: 5000 });
});

h.run();
