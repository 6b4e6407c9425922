'use strict';
/*
 * test_failpoint.js: the test-only failCommand fail point (wire/wire_failpoint.c), which
 * the driver-spec suites use: configureFailPoint exists only with --setParameter
 * enableTestCommands=1, runs only on admin, and its modes (times, skip, alwaysOn, off) and
 * data (errorCode, errorLabels, closeConnection, writeConcernError) behave as mongod's
 * "failCommand" documentation in the drivers' specifications describes.
 */
const assert = require('assert/strict');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');

let srv, plain;
let client, admin, coll;

async function connect(port) {
    const c = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`,
                              { serverSelectionTimeoutMS: 3000, retryReads: false, retryWrites: false });
    await c.connect();
    return c;
}

const fp = (mode, data) => admin.command({ configureFailPoint: 'failCommand', mode, data });

h.before(async () => {
    srv = await h.startServer({ args: ['--setParameter', 'enableTestCommands=1'] });
    client = await connect(srv.port);
    admin = client.db('admin');
    coll = client.db('fp').collection('c');
    await coll.insertOne({ _id: 1 });
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
    if (plain) await plain.stop();
});

h.test('without enableTestCommands configureFailPoint does not exist', async () => {
    plain = await h.startServer();
    const c = await connect(plain.port);
    try {
        await assert.rejects(c.db('admin').command({ configureFailPoint: 'failCommand', mode: 'off' }),
                             (e) => e.code === 59);
    } finally {
        await c.close();
    }
});

h.test('configureFailPoint runs only on admin and knows only failCommand', async () => {
    await assert.rejects(client.db('fp').command({ configureFailPoint: 'failCommand', mode: 'off' }),
                         (e) => e.code === 13);
    await assert.rejects(admin.command({ configureFailPoint: 'nope', mode: 'off' }), (e) => e.code === 2);
    await assert.rejects(fp({ times: 1 }, {}), (e) => e.code === 2);
    await assert.rejects(fp('sometimes', { failCommands: ['find'] }), (e) => e.code === 2);
});

h.test('times: n fails the named command n times with errorCode and errorLabels', async () => {
    await fp({ times: 2 }, { failCommands: ['insert'], errorCode: 8, errorLabels: ['Custom'] });
    for (let i = 0; i < 2; i++) {
        await assert.rejects(coll.insertOne({ x: i }), (e) => e.code === 8 && e.hasErrorLabel('Custom'));
    }
    await coll.insertOne({ _id: 2 }); /* the third goes through */
    assert.equal(await coll.countDocuments({}), 2);
    /* other commands were never affected */
    assert.equal((await coll.findOne({ _id: 1 }))._id, 1);
    const r = await fp('off');
    assert.equal(Number(r.count), 2, 'count reports how many times it fired');
});

h.test('skip: n lets n commands through first; alwaysOn until off', async () => {
    await fp({ skip: 1 }, { failCommands: ['find'], errorCode: 11600 });
    await coll.findOne({});
    await assert.rejects(coll.findOne({}), (e) => e.code === 11600);
    await assert.rejects(coll.findOne({}), (e) => e.code === 11600);
    await fp('off');
    await coll.findOne({});
    await fp('alwaysOn', { failCommands: ['count'], errorCode: 2 });
    await assert.rejects(coll.estimatedDocumentCount(), (e) => e.code === 2);
    await assert.rejects(coll.estimatedDocumentCount(), (e) => e.code === 2);
    await fp('off');
    assert.equal(await coll.estimatedDocumentCount(), 2);
});

h.test('closeConnection closes the connection without a reply', async () => {
    await fp({ times: 1 }, { failCommands: ['count'], closeConnection: true });
    await assert.rejects(coll.estimatedDocumentCount(), (e) => e.name === 'MongoNetworkError' || /closed|network/i.test(e.message));
    assert.equal(await coll.estimatedDocumentCount(), 2, 'the next command runs on a new connection');
});

h.test('writeConcernError runs the command and adds the error to its reply', async () => {
    await fp({ times: 1 }, { failCommands: ['insert'], writeConcernError: { code: 100, errmsg: 'wc failed' } });
    await assert.rejects(coll.insertOne({ _id: 3 }), (e) => /wc failed/.test(e.message) || e.code === 100);
    assert.equal(await coll.countDocuments({ _id: 3 }), 1, 'the write itself happened');
});

h.run();
