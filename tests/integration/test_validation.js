'use strict';
/*
 * test_validation.js: schema validation through the node driver against a real nedbd:
 * create and collMod with `validator` ($jsonSchema, query operators, $expr),
 * validationLevel ("strict", "moderate", "off") and validationAction ("error", "warn"),
 * the write error 121 DocumentValidationFailure with errInfo {failingDocumentId, details}
 * on insert, update, replace and upsert, bypassDocumentValidation, listCollections
 * options, and $jsonSchema as an ordinary query filter.
 * Expected results follow MongoDB's "Schema Validation" documentation (its students
 * example, "Specify Validation Level for Existing Documents", "Choose How to Handle
 * Invalid Documents", "Bypass Schema Validation") and the $jsonSchema operator page.
 */
const assert = require('assert/strict');
const fs = require('fs');
const { MongoClient, MongoServerError, MongoBulkWriteError, Int32, Double } = require('mongodb');
const h = require('./lib/server');

let srv;
let client;
let db;

/* The students validator of MongoDB's "Specify JSON Schema Validation" page. */
const students = {
    $jsonSchema: {
        bsonType: 'object',
        title: 'Student Object Validation',
        required: ['address', 'major', 'name', 'year'],
        properties: {
            name: { bsonType: 'string', description: "'name' must be a string and is required" },
            year: { bsonType: 'int', minimum: 2017, maximum: 3017,
                    description: "'year' must be an integer in [ 2017, 3017 ] and is required" },
            gpa: { bsonType: ['double'], description: "'gpa' must be a double if the field exists" },
        },
    },
};

/* A write error's fields, whichever way the driver reported it. */
function writeError(e) {
    if (e instanceof MongoBulkWriteError) return e.writeErrors[0].err || e.writeErrors[0];
    return e.errorResponse || e;
}

async function expectValidationFailure(promise) {
    let caught;
    try {
        await promise;
    } catch (e) {
        caught = e;
    }
    assert.ok(caught, 'the write should have been refused');
    assert.ok(caught instanceof MongoServerError, `unexpected error ${caught}`);
    assert.equal(caught.code, 121);
    return caught;
}

/* countDocuments() runs an aggregation: count with the count command. */
async function count(c, query = {}) {
    return (await db.command({ count: c.collectionName, query })).n;
}

async function options(name) {
    const infos = await db.listCollections({ name }).toArray();
    assert.equal(infos.length, 1);
    return infos[0].options;
}

h.before(async () => {
    srv = await h.startServer();
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('validation');
});

h.after(async () => {
    if (client) await client.close();
    if (srv) await srv.stop();
});

h.test('createCollection with a $jsonSchema validator: invalid insert gets 121 with errInfo', async () => {
    await db.createCollection('students', { validator: students });
    const c = db.collection('students');
    const e = await expectValidationFailure(c.insertOne({
        _id: 7, name: 'Alice', year: new Int32(2019), major: 'History', gpa: new Int32(3),
        address: { city: 'NYC', street: '33rd Street' },
    }));
    assert.equal(e.codeName || 'DocumentValidationFailure', 'DocumentValidationFailure');
    const info = e.errInfo;
    assert.equal(info.failingDocumentId, 7);
    assert.equal(info.details.operatorName, '$jsonSchema');
    assert.equal(info.details.title, 'Student Object Validation');
    const rules = info.details.schemaRulesNotSatisfied;
    assert.equal(rules.length, 1);
    assert.equal(rules[0].operatorName, 'properties');
    const prop = rules[0].propertiesNotSatisfied[0];
    assert.equal(prop.propertyName, 'gpa');
    assert.equal(prop.description, "'gpa' must be a double if the field exists");
    assert.equal(prop.details[0].operatorName, 'bsonType');
    assert.deepEqual(prop.details[0].specifiedAs, { bsonType: ['double'] });
    assert.equal(prop.details[0].reason, 'type did not match');
    assert.equal(prop.details[0].consideredType, 'int');
    assert.equal(await count(c, {}), 0);
});

h.test('a valid document is inserted; a batch keeps its valid documents (ordered: false)', async () => {
    const c = db.collection('students');
    await c.insertOne({ _id: 1, name: 'Alice', year: new Int32(2019), major: 'History',
                        gpa: new Double(3.0), address: { city: 'NYC', street: '33rd Street' } });
    let caught;
    try {
        await c.insertMany([
            { _id: 2, name: 'Bob', year: new Int32(2020), major: 'Math', address: {} },
            { _id: 3, name: 'Cy', major: 'Art', address: {} },                 /* no year */
            { _id: 4, name: 'Di', year: new Int32(2021), major: 'Law', address: {} },
        ], { ordered: false });
    } catch (e) {
        caught = e;
    }
    assert.ok(caught instanceof MongoBulkWriteError);
    assert.equal(caught.result.insertedCount, 3 - 1);
    assert.equal(caught.writeErrors.length, 1);
    assert.equal(caught.writeErrors[0].index, 1);
    assert.equal(caught.writeErrors[0].code, 121);
    const info = caught.writeErrors[0].errInfo;
    assert.equal(info.failingDocumentId, 3);
    const req = info.details.schemaRulesNotSatisfied.find((r) => r.operatorName === 'required');
    assert.deepEqual(req.missingProperties, ['year']);
    assert.deepEqual((await c.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id),
                     [1, 2, 4]);
});

h.test('updates and replacements are validated; the document stays as it was', async () => {
    const c = db.collection('students');
    const e = await expectValidationFailure(c.updateOne({ _id: 1 }, { $set: { year: 'soon' } }));
    assert.equal(writeError(e).errInfo.failingDocumentId, 1);
    await expectValidationFailure(c.replaceOne({ _id: 2 }, { name: 'Bob' }));
    const e2 = await expectValidationFailure(
        c.updateOne({ _id: 99 }, { $set: { name: 'Eve' } }, { upsert: true }));
    assert.equal(writeError(e2).errInfo.failingDocumentId, 99);
    assert.equal((await c.findOne({ _id: 1 })).year, 2019);
    assert.equal((await c.findOne({ _id: 2 })).major, 'Math');
    assert.equal(await count(c, { _id: 99 }), 0);
    const ok = await c.updateOne({ _id: 1 }, { $set: { year: new Int32(2022) } });
    assert.equal(ok.modifiedCount, 1);
});

h.test('findOneAndUpdate that breaks the validator fails with 121', async () => {
    const c = db.collection('students');
    await expectValidationFailure(c.findOneAndUpdate({ _id: 2 }, { $unset: { major: '' } }));
    assert.equal((await c.findOne({ _id: 2 })).major, 'Math');
});

h.test('bypassDocumentValidation: true skips the validator', async () => {
    const c = db.collection('students');
    await c.insertOne({ _id: 50, name: 'NoYear' }, { bypassDocumentValidation: true });
    await c.updateOne({ _id: 2 }, { $set: { year: 'x' } }, { bypassDocumentValidation: true });
    assert.equal((await c.findOne({ _id: 50 })).name, 'NoYear');
    assert.equal((await c.findOne({ _id: 2 })).year, 'x');
    /* false is the default: still validated */
    await expectValidationFailure(c.insertOne({ _id: 51 }, { bypassDocumentValidation: false }));
});

h.test('listCollections reports the validator as given, level and action only when set', async () => {
    const o = await options('students');
    assert.deepEqual(o.validator, students);
    assert.equal(o.validationLevel, undefined);
    assert.equal(o.validationAction, undefined);
});

h.test('collMod adds a query-operator validator to an existing collection', async () => {
    const c = db.collection('contacts');
    await c.insertMany([{ _id: 1, phone: '555' }, { _id: 2, name: 'no contact' }]);
    const validator = { $or: [{ phone: { $type: 'string' } }, { email: { $regex: /@/ } }] };
    await db.command({ collMod: 'contacts', validator });
    assert.deepEqual((await options('contacts')).validator, validator);
    const e = await expectValidationFailure(c.insertOne({ _id: 3, email: 'nobody' }));
    assert.equal(e.errInfo.failingDocumentId, 3);
    assert.equal(e.errInfo.details.operatorName, '$or');
    await c.insertOne({ _id: 4, email: 'a@b' });
    /* strict (the default): an update of an already invalid document is validated too */
    await expectValidationFailure(c.updateOne({ _id: 2 }, { $set: { name: 'still none' } }));
});

h.test('validationLevel moderate: documents that were invalid may be updated', async () => {
    const c = db.collection('contacts');
    await db.command({ collMod: 'contacts', validationLevel: 'moderate' });
    const o = await options('contacts');
    assert.equal(o.validationLevel, 'moderate');
    assert.ok(o.validator, 'collMod of the level keeps the validator');
    const r = await c.updateOne({ _id: 2 }, { $set: { name: 'still none' } });
    assert.equal(r.modifiedCount, 1);
    /* a valid document must stay valid */
    await expectValidationFailure(c.updateOne({ _id: 1 }, { $unset: { phone: '' } }));
    /* inserts are always validated */
    await expectValidationFailure(c.insertOne({ _id: 5 }));
});

h.test('validationAction warn: invalid documents are written and logged', async () => {
    const c = db.collection('contacts');
    await db.command({ collMod: 'contacts', validationLevel: 'strict', validationAction: 'warn' });
    assert.equal((await options('contacts')).validationAction, 'warn');
    const r = await c.insertOne({ _id: 6, nothing: true });
    assert.equal(r.insertedId, 6);
    assert.equal(await count(c, { _id: 6 }), 1);
    const log = fs.readFileSync(srv.logPath, 'utf8');
    assert.match(log, /Document would fail validation: validation\.contacts .*"failingDocumentId" : 6/);
});

h.test('validationLevel off disables the validator', async () => {
    const c = db.collection('contacts');
    await db.command({ collMod: 'contacts', validationLevel: 'off', validationAction: 'error' });
    await c.insertOne({ _id: 7 });
    assert.equal(await count(c, { _id: 7 }), 1);
    await db.command({ collMod: 'contacts', validationLevel: 'strict' });
    await expectValidationFailure(c.insertOne({ _id: 8 }));
});

h.test('an $expr validator', async () => {
    await db.createCollection('orders', {
        validator: { $expr: { $eq: ['$total', { $multiply: ['$price', '$qty'] }] } },
    });
    const c = db.collection('orders');
    await c.insertOne({ _id: 1, price: 5, qty: 3, total: 15 });
    const e = await expectValidationFailure(c.insertOne({ _id: 2, price: 5, qty: 3, total: 16 }));
    assert.equal(e.errInfo.details.operatorName, '$expr');
    assert.deepEqual(e.errInfo.details.specifiedAs,
                     { $expr: { $eq: ['$total', { $multiply: ['$price', '$qty'] }] } });
    assert.equal(e.errInfo.details.reason, 'expression did not match');
    assert.equal(e.errInfo.details.expressionResult, false);
});

h.test('bad validation options are refused with mongod codes', async () => {
    const refuse = async (cmd, code) => {
        await assert.rejects(db.command(cmd), (e) => {
            assert.equal(e.code, code, `${JSON.stringify(cmd)}: ${e.message}`);
            return true;
        });
    };
    await refuse({ create: 'bad1', validator: 5 }, 14);
    await refuse({ create: 'bad2', validator: { a: { $foo: 1 } } }, 2);
    await refuse({ create: 'bad3', validator: { $jsonSchema: { type: 'integer' } } }, 2);
    await refuse({ create: 'bad4', validator: { $jsonSchema: { bogus: 1 } } }, 9);
    await refuse({ create: 'bad5', validationLevel: 'sometimes' }, 2);
    await refuse({ collMod: 'contacts', validationAction: 'shout' }, 2);
    const names = (await db.listCollections().toArray()).map((i) => i.name);
    assert.ok(!names.some((n) => n.startsWith('bad')), `created: ${names}`);
});

h.test('validators are refused on system collections and in admin, local and config (72)', async () => {
    const refuse72 = async (d, cmd) => {
        await assert.rejects(d.command(cmd), (e) => e.code === 72 && /Document validators/.test(e.message));
    };
    await refuse72(db, { create: 'system.js', validator: { a: 1 } });
    assert.equal((await db.listCollections({ name: 'system.js' }).toArray()).length, 0);
    for (const name of ['admin', 'local', 'config']) {
        const d = client.db(name);
        await refuse72(d, { create: 'v', validator: { a: { $exists: true } } });
        assert.equal((await d.listCollections({ name: 'v' }).toArray()).length, 0);
        await d.createCollection('plain');
        await refuse72(d, { collMod: 'plain', validator: { a: 1 } });
        await d.command({ collMod: 'plain', validator: {} }); /* an empty one is no validator */
        await d.collection('plain').drop();
    }
});

h.test('$jsonSchema works as a query filter in find, count and update', async () => {
    const c = db.collection('inventory');
    await c.insertMany([
        { item: 'journal', qty: new Int32(25), size: { h: new Double(14), w: new Double(21), uom: 'cm' }, instock: true },
        { item: 'notebook', qty: new Int32(50), size: { h: new Double(8.5), w: new Double(11), uom: 'in' }, instock: true },
        { item: 'paper', qty: new Int32(100), size: { h: new Double(8.5), w: new Double(11), uom: 'in' }, instock: 1 },
        { item: 'planner', qty: new Int32(75), size: { h: new Double(22.85), w: new Double(30) }, instock: false },
        { item: 'postcard', qty: new Int32(45), size: { h: new Double(10), w: new Double(15.25), uom: 'cm' }, instock: true },
        { item: 'apple', qty: new Int32(45), status: 'A', instock: true },
        { item: 'pears', qty: new Int32(50), status: 'A', instock: true },
    ]);
    const myschema = {
        required: ['item', 'qty', 'instock'],
        properties: {
            item: { bsonType: 'string' },
            qty: { bsonType: 'int' },
            size: {
                bsonType: 'object',
                required: ['uom'],
                properties: { uom: { bsonType: 'string' }, h: { bsonType: 'double' }, w: { bsonType: 'double' } },
            },
            instock: { bsonType: 'bool' },
        },
    };
    const match = (await c.find({ $jsonSchema: myschema }).toArray()).map((d) => d.item);
    assert.deepEqual(match, ['journal', 'notebook', 'postcard', 'apple', 'pears']);
    const nor = (await c.find({ $nor: [{ $jsonSchema: myschema }] }).toArray()).map((d) => d.item);
    assert.deepEqual(nor, ['paper', 'planner']);
    assert.equal((await db.command({ count: 'inventory', query: { $jsonSchema: myschema } })).n, 5);
    const u = await c.updateMany({ $nor: [{ $jsonSchema: myschema }] }, { $set: { bad: true } });
    assert.equal(u.modifiedCount, 2);
    const agg = await c.aggregate([{ $match: { $jsonSchema: myschema } }, { $count: 'n' }]).toArray();
    assert.deepEqual(agg, [{ n: 5 }]);
});

/* $out and $merge write like any other write: the target's validator applies, unless the
 * aggregate says bypassDocumentValidation ("Bypass Schema Validation" lists both stages). */
h.test('$out and $merge into a collection with a validator: 121 with errInfo, nothing written', async () => {
    await db.createCollection('agg_src');
    const src = db.collection('agg_src');
    await src.insertMany([{ _id: 1, n: 5 }, { _id: 2, n: -1 }]);
    await db.createCollection('agg_dst', { validator: { n: { $gte: 0 } } });
    const dst = db.collection('agg_dst');
    await dst.insertOne({ _id: 9, n: 9 });

    let e = await expectValidationFailure(src.aggregate([{ $out: 'agg_dst' }]).toArray());
    assert.equal(e.errInfo.failingDocumentId, 2);
    assert.deepEqual(await dst.find().toArray(), [{ _id: 9, n: 9 }], '$out left the target as it was');

    e = await expectValidationFailure(src.aggregate([{ $merge: { into: 'agg_dst' } }]).toArray());
    assert.equal(e.errInfo.failingDocumentId, 2);
    assert.deepEqual(await dst.find().toArray(), [{ _id: 9, n: 9 }], '$merge left the target as it was');

    /* an update through $merge is validated too */
    await expectValidationFailure(
        src.aggregate([{ $match: { _id: 1 } }, { $set: { _id: 9, n: -3 } }, { $merge: { into: 'agg_dst' } }]).toArray());
    assert.deepEqual(await dst.find().toArray(), [{ _id: 9, n: 9 }]);

    /* only valid documents: written */
    await src.aggregate([{ $match: { n: { $gte: 0 } } }, { $merge: { into: 'agg_dst' } }]).toArray();
    assert.deepEqual(await dst.find().sort({ _id: 1 }).toArray(), [{ _id: 1, n: 5 }, { _id: 9, n: 9 }]);

    /* bypassDocumentValidation writes them all */
    await src.aggregate([{ $out: 'agg_dst' }], { bypassDocumentValidation: true }).toArray();
    assert.deepEqual(await dst.find().sort({ _id: 1 }).toArray(), [{ _id: 1, n: 5 }, { _id: 2, n: -1 }]);
    assert.ok((await options('agg_dst')).validator, '$out keeps the target\'s options');
});

h.run();
