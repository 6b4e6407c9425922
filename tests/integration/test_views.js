'use strict';
/*
 * test_views.js: read-only views through the node driver against a real nedbd: create
 * with viewOn and pipeline, find (filter, projection, sort, skip, limit, batches over
 * getMore), count, estimatedDocumentCount, countDocuments, distinct and aggregate through
 * a view, views of views, listCollections, collMod of a view's definition, drop, the
 * definition checks (no $out / $merge, even nested; cycles), commands refused on a view,
 * a view's default collation (MongoDB's "Collation" page, "Restrictions": operations on a
 * view use its collation, another one is refused, a view on a view shares its collation),
 * and a view surviving a restart (it is a catalog op in the log).
 * Expected results come from MongoDB's "Create and Query a View" page (its students
 * example) and the create / collMod / listCollections reference pages.
 */
const assert = require('assert/strict');
const fs = require('fs');
const { MongoClient } = require('mongodb');
const h = require('./lib/server');

let srv;
let firstDir = null; /* the first server's directory, kept across the restart */
let client;
let db;

/* The students collection of MongoDB's "Create and Query a View" page. */
const students = [
    { sID: 22001, name: 'Alex', year: 1, score: 4.0 },
    { sID: 21001, name: 'bernie', year: 2, score: 3.7 },
    { sID: 20010, name: 'Chris', year: 3, score: 2.5 },
    { sID: 22021, name: 'Drew', year: 1, score: 3.2 },
    { sID: 17301, name: 'harley', year: 6, score: 3.1 },
    { sID: 21022, name: 'Farmer', year: 1, score: 2.2 },
    { sID: 20020, name: 'george', year: 3, score: 2.8 },
    { sID: 18020, name: 'Harley', year: 5, score: 2.8 },
];

async function connect() {
    client = new MongoClient(`mongodb://127.0.0.1:${srv.port}/?directConnection=true`,
                             { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    db = client.db('views');
}

h.before(async () => {
    srv = await h.startServer();
    await connect();
    await db.collection('students').insertMany(students.map((s) => ({ ...s })));
});

h.after(async () => {
    if (client) await client.close();
    if (srv && srv.alive()) await srv.stop();
    if (firstDir && !process.env.NEDB_KEEP_TMP) fs.rmSync(firstDir, { recursive: true, force: true });
});

h.test('createView and find with a projection: the documentation example', async () => {
    await db.createCollection('firstYears', { viewOn: 'students', pipeline: [{ $match: { year: 1 } }] });
    const docs = await db.collection('firstYears').find({}, { projection: { _id: 0 } }).toArray();
    assert.deepEqual(docs, [
        { sID: 22001, name: 'Alex', year: 1, score: 4 },
        { sID: 22021, name: 'Drew', year: 1, score: 3.2 },
        { sID: 21022, name: 'Farmer', year: 1, score: 2.2 },
    ]);
});

h.test('find through a view: filter, sort, skip, limit', async () => {
    const v = db.collection('firstYears');
    const names = async (cur) => (await cur.toArray()).map((d) => d.name);
    assert.deepEqual(await names(v.find({ score: { $gt: 3 } }).sort({ score: -1 })), ['Alex', 'Drew']);
    assert.deepEqual(await names(v.find({}).sort({ score: 1 }).skip(1).limit(1)), ['Drew']);
    assert.deepEqual(await names(v.find({ name: 'bernie' })), []); /* year 2: not in the view */
});

h.test('a view cursor streams over getMore with the view as its namespace', async () => {
    const r = await db.command({ find: 'firstYears', batchSize: 1, sort: { sID: 1 } });
    assert.equal(r.cursor.ns, 'views.firstYears');
    assert.equal(r.cursor.firstBatch.length, 1);
    assert.equal(r.cursor.firstBatch[0].sID, 21022);
    assert.notEqual(Number(r.cursor.id), 0);
    const m = await db.command({ getMore: r.cursor.id, collection: 'firstYears', batchSize: 10 });
    assert.deepEqual(m.cursor.nextBatch.map((d) => d.sID), [22001, 22021]);
    assert.equal(Number(m.cursor.id), 0);
});

h.test('count, estimatedDocumentCount, countDocuments and distinct through a view', async () => {
    const v = db.collection('firstYears');
    assert.equal(await v.estimatedDocumentCount(), 3);
    assert.equal(await v.countDocuments({ score: { $lt: 3.5 } }), 2);
    assert.equal((await db.command({ count: 'firstYears', query: { score: { $lt: 3.5 } }, skip: 1 })).n, 1);
    assert.equal((await db.command({ count: 'firstYears', limit: 2 })).n, 2);
    assert.deepEqual((await v.distinct('name')).sort(), ['Alex', 'Drew', 'Farmer']);
    assert.deepEqual(await v.distinct('name', { score: { $gt: 3 } }), ['Alex', 'Drew']);
});

h.test('aggregate on a view runs after the view\'s pipeline', async () => {
    const r = await db.collection('firstYears').aggregate([
        { $group: { _id: '$year', n: { $sum: 1 }, best: { $max: '$score' } } },
    ]).toArray();
    assert.deepEqual(r, [{ _id: 1, n: 3, best: 4 }]);
});

h.test('a view of a view applies both pipelines, the inner one first', async () => {
    await db.createCollection('goodFirstYears', { viewOn: 'firstYears',
                                                  pipeline: [{ $match: { score: { $gte: 3 } } },
                                                             { $project: { _id: 0, name: 1 } }] });
    const v = db.collection('goodFirstYears');
    assert.deepEqual(await v.find({}).sort({ name: -1 }).toArray(), [{ name: 'Drew' }, { name: 'Alex' }]);
    assert.equal(await v.countDocuments({}), 2);
});

h.test('$lookup and $unionWith read a view through its pipeline', async () => {
    const r = await db.collection('students').aggregate([
        { $match: { name: { $in: ['Alex', 'bernie'] } } },
        { $lookup: { from: 'firstYears', localField: 'year', foreignField: 'year', as: 'mates' } },
        { $project: { _id: 0, name: 1, mates: '$mates.name' } },
        { $sort: { name: 1 } },
    ]).toArray();
    assert.deepEqual(r, [{ name: 'Alex', mates: ['Alex', 'Drew', 'Farmer'] }, { name: 'bernie', mates: [] }]);
    const u = await db.collection('students').aggregate([
        { $match: { year: 6 } }, { $project: { _id: 0, name: 1 } }, { $unionWith: 'goodFirstYears' },
    ]).toArray();
    assert.deepEqual(u.map((d) => d.name).sort(), ['Alex', 'Drew', 'harley']);
});

h.test('listCollections reports views with type "view" and their definition', async () => {
    const infos = await db.listCollections({ name: 'firstYears' }).toArray();
    assert.equal(infos.length, 1);
    assert.equal(infos[0].type, 'view');
    assert.deepEqual(infos[0].options, { viewOn: 'students', pipeline: [{ $match: { year: 1 } }] });
    assert.equal(infos[0].info.readOnly, true);
    const kinds = Object.fromEntries((await db.listCollections().toArray()).map((i) => [i.name, i.type]));
    assert.deepEqual(kinds, { students: 'collection', firstYears: 'view', goodFirstYears: 'view' });
    const views = await db.listCollections({ type: 'view' }, { nameOnly: true }).toArray();
    assert.deepEqual(views.map((i) => i.name).sort(), ['firstYears', 'goodFirstYears']);
});

h.test('a view definition may not contain $out or $merge, even nested (167)', async () => {
    await h.expectCode(db.createCollection('bad1', { viewOn: 'students', pipeline: [{ $out: 'x' }] }), 167);
    await h.expectCode(db.createCollection('bad2', {
        viewOn: 'students',
        pipeline: [{ $lookup: { from: 'students', pipeline: [{ $merge: { into: 'x' } }], as: 'l' } }],
    }), 167);
    await h.expectCode(db.createCollection('bad3', {
        viewOn: 'students', pipeline: [{ $facet: { a: [{ $out: 'x' }] } }],
    }), 167);
    const names = (await db.listCollections().toArray()).map((i) => i.name);
    assert.ok(!names.includes('bad1') && !names.includes('bad2') && !names.includes('bad3'), names.join());
});

h.test('bad definitions: unknown stage, wrong types, existing name', async () => {
    await h.expectCode(db.command({ create: 'bad4', viewOn: 'students', pipeline: [{ $nope: 1 }] }), 40324);
    await h.expectCode(db.command({ create: 'bad5', viewOn: 7, pipeline: [] }), 14);
    await h.expectCode(db.command({ create: 'bad6', viewOn: 'students', pipeline: {} }), 14);
    await h.expectCode(db.command({ create: 'firstYears', viewOn: 'students', pipeline: [] }), 48);
});

h.test('collMod changes a view\'s pipeline; a cycle is refused (5)', async () => {
    await db.command({ collMod: 'firstYears', pipeline: [{ $match: { year: 3 } }] });
    const names = (await db.collection('firstYears').find({}).sort({ sID: 1 }).toArray()).map((d) => d.name);
    assert.deepEqual(names, ['Chris', 'george']);
    const infos = await db.listCollections({ name: 'firstYears' }).toArray();
    assert.deepEqual(infos[0].options, { viewOn: 'students', pipeline: [{ $match: { year: 3 } }] });
    await h.expectCode(db.command({ collMod: 'firstYears', viewOn: 'goodFirstYears' }), 5);
    await h.expectCode(db.command({ collMod: 'students', viewOn: 'firstYears' }), 72);
    await db.command({ collMod: 'firstYears', pipeline: [{ $match: { year: 1 } }] });
    assert.equal(await db.collection('firstYears').countDocuments({}), 3);
});

h.test('commands that need a collection are refused on a view (166)', async () => {
    await h.expectCode(db.command({ listIndexes: 'firstYears' }), 166);
    await h.expectCode(db.collection('firstYears').aggregate([{ $out: 'firstYears' }]).toArray(), 166);
    await h.expectCode(db.collection('students').aggregate([{ $merge: { into: 'firstYears' } }]).toArray(), 166);
    const v = db.collection('firstYears');
    const before = await v.countDocuments({});
    await h.expectCode(v.insertOne({ x: 1 }), 166);
    await h.expectCode(v.updateOne({}, { $set: { x: 1 } }), 166);
    await h.expectCode(v.deleteMany({}), 166);
    await h.expectCode(v.findOneAndUpdate({}, { $set: { x: 1 } }), 166);
    assert.equal(await v.countDocuments({}), before, 'nothing was written through the view');
});

h.test('a view with a collation: reads use it, another one is refused (167)', async () => {
    const cdb = client.db('views_collation'); /* apart: a later test lists the views of db */
    const src = cdb.collection('words');
    await src.insertMany([{ _id: 1, w: 'abc' }, { _id: 2, w: 'ABC' }, { _id: 3, w: 'b' }, { _id: 4, w: 'Abd' }]);
    await cdb.createCollection('words_ci', { viewOn: 'words', pipeline: [], collation: { locale: 'en', strength: 2 } });
    const [info] = await cdb.listCollections({ name: 'words_ci' }).toArray();
    assert.equal(info.options.collation.locale, 'en');
    assert.equal(info.options.collation.strength, 2);
    assert.equal(info.options.collation.caseLevel, false, 'recorded with every field filled in');
    const v = cdb.collection('words_ci');
    assert.deepEqual((await v.find({ w: 'abc' }).toArray()).map((d) => d._id), [1, 2]);
    assert.deepEqual((await v.find({}).sort({ w: 1, _id: 1 }).toArray()).map((d) => d._id), [1, 2, 4, 3]);
    assert.equal((await cdb.command({ count: 'words_ci', query: { w: 'ABC' } })).n, 2);
    assert.deepEqual((await v.distinct('w')).length, 3, 'abc and ABC are one value');
    assert.deepEqual((await v.aggregate([{ $match: { w: 'abc' } }, { $count: 'n' }]).toArray()), [{ n: 2 }]);
    /* the same collation may be repeated; another one, or simple, is refused */
    assert.equal((await v.find({ w: 'abc' }, { collation: { locale: 'en', strength: 2 } }).toArray()).length, 2);
    await h.expectCode(v.find({ w: 'abc' }, { collation: { locale: 'fr' } }).toArray(), 167);
    await h.expectCode(v.find({}, { collation: { locale: 'simple' } }).toArray(), 167);
    await h.expectCode(cdb.command({ count: 'words_ci', query: {}, collation: { locale: 'en' } }), 167);
    await h.expectCode(v.aggregate([], { collation: { locale: 'en', strength: 3 } }).toArray(), 167);
    /* the source itself stays binary; a view without a collation too */
    assert.equal((await src.find({ w: 'abc' }).toArray()).length, 1);
    await cdb.createCollection('words_plain', { viewOn: 'words', pipeline: [] });
    assert.equal((await cdb.collection('words_plain').find({ w: 'abc' }).toArray()).length, 1);
    /* a view on a view shares its collation */
    await h.expectCode(cdb.createCollection('words_ci2', { viewOn: 'words_ci', pipeline: [] }), 167);
    await h.expectCode(cdb.createCollection('words_ci3', { viewOn: 'words_ci', pipeline: [],
                                                       collation: { locale: 'en', strength: 1 } }), 167);
    await cdb.createCollection('words_ci4', { viewOn: 'words_ci', pipeline: [], collation: { locale: 'en', strength: 2 } });
    assert.equal((await cdb.collection('words_ci4').find({ w: 'abc' }).toArray()).length, 2);
    await h.expectCode(cdb.createCollection('bad_coll', { viewOn: 'words', pipeline: [], collation: { locale: 'xx_nope' } }), 2);
});

h.test('a view survives a restart (its definition is a catalog op in the log)', async () => {
    await client.close();
    await srv.stop({ keep: true });
    firstDir = srv.dir;
    srv = await h.startServer({ dbpath: srv.dbpath });
    await connect();
    const infos = await db.listCollections({ name: 'goodFirstYears' }).toArray();
    assert.equal(infos[0].type, 'view');
    assert.deepEqual((await db.collection('goodFirstYears').find({}).toArray()).map((d) => d.name).sort(),
                     ['Alex', 'Drew']);
});

h.test('drop removes a view and leaves its source alone', async () => {
    assert.equal(await db.collection('goodFirstYears').drop(), true);
    const names = (await db.listCollections().toArray()).map((i) => i.name).sort();
    assert.deepEqual(names, ['firstYears', 'students']);
    assert.equal(await db.collection('students').countDocuments({}), students.length);
    /* a read of the dropped name sees an empty collection, as on mongod */
    assert.deepEqual(await db.collection('goodFirstYears').find({}).toArray(), []);
});

h.run();
