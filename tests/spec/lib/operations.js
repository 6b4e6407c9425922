'use strict';
/*
 * lib/operations.js: the entity operations of the unified test format mapped onto the
 * pinned node driver, and the conversion of its results to the documents the spec expects
 * ("Converting Returned Model Objects to Documents", "Iterating Returned Iterables").
 *
 * OPERATIONS[kind][name] = { args: [...known arguments], required: [...], root, run }:
 *   args     every argument the operation accepts besides `session`; anything else makes the
 *            test skip (the spec asks runners to raise an error for unknown arguments; for
 *            us that is a runner limitation, never a pass);
 *   root     how expectResult is matched: true (a root-level document), false (a plain
 *            value, e.g. distinct), 'elements' (an array of root-level documents);
 *   run(entity, args, ctx) -> result (already a plain document/array/scalar, a cursor
 *            wrapper { cursor }, or undefined).
 *
 * Arguments arrive with their Extended JSON types (Int32, Double ...) so documents keep
 * their BSON types on the wire; scalar options are turned into JS values by optionsOf().
 */
const { UnsupportedError } = require('./matcher');
const { plain, readPreferenceOf, writeConcernOf, transactionOptions } = require('./entities');

/* ------------------------------------------------------------ argument helpers */

/* The option object for the driver: every argument except `exclude`, with session,
 * readPreference, writeConcern resolved and scalars made plain. */
function optionsOf(args, exclude, ctx, rename = {}) {
    const out = {};
    for (const [k, v] of Object.entries(args)) {
        if (exclude.includes(k)) continue;
        const key = rename[k] || k;
        if (k === 'session') out.session = ctx.entities.get(v, 'session').value;
        else if (k === 'readPreference') out.readPreference = readPreferenceOf(v);
        else if (k === 'writeConcern') out.writeConcern = writeConcernOf(v);
        else if (k === 'comment') out.comment = v;
        else out[key] = plain(v);
    }
    return out;
}

const WRITE = ['comment', 'writeConcern', 'rawData', 'timeoutMS'];

/* Returned documents keep their BSON number classes (Int32, Double, Long) so that $$type can
 * tell int, long and double apart; these are decoding options, never sent to the server.
 * setExactTypes(false) turns this off for the retryable-reads files (and the unified
 * format's poc-retryable-reads): under promoteValues:
 * false node driver 7.8 also decodes a server error's `code` as an Int32, and its
 * isRetryableReadError() only retries a `typeof code === 'number'`, so no read would ever
 * be retried (mongod's replies are the same; the quirk is the driver's). */
const EXACT = { promoteValues: false, promoteLongs: false };
let exactTypes = true;
const exact = (o) => (exactTypes ? { ...o, ...EXACT } : o);
function setExactTypes(on) {
    exactTypes = on;
}
const READ = ['comment', 'readConcern', 'readPreference', 'maxTimeMS', 'rawData', 'timeoutMS'];

/* The driver's result objects as documents: only their documented fields, and fields the
 * driver leaves null/undefined (upsertedId without an upsert) are absent. */
function insertOneResult(r) {
    const out = { acknowledged: r.acknowledged };
    if (r.insertedId !== undefined && r.insertedId !== null) out.insertedId = r.insertedId;
    return out;
}

function insertManyResult(r) {
    const out = { acknowledged: r.acknowledged, insertedCount: r.insertedCount };
    if (r.insertedIds) out.insertedIds = { ...r.insertedIds };
    return out;
}

function updateResult(r) {
    const out = { acknowledged: r.acknowledged, matchedCount: r.matchedCount, modifiedCount: r.modifiedCount,
        upsertedCount: r.upsertedCount };
    if (r.upsertedId !== null && r.upsertedId !== undefined) out.upsertedId = r.upsertedId;
    return out;
}

function deleteResult(r) {
    return { acknowledged: r.acknowledged, deletedCount: r.deletedCount };
}

/* BulkWriteResult (also the `result` of a MongoBulkWriteError) as the spec's document. */
function bulkWriteResult(r) {
    if (!r) return undefined;
    const ids = (m) => {
        const out = {};
        for (const [k, v] of Object.entries(m || {})) out[k] = v;
        return out;
    };
    return {
        deletedCount: r.deletedCount,
        insertedCount: r.insertedCount,
        insertedIds: ids(r.insertedIds),
        matchedCount: r.matchedCount,
        modifiedCount: r.modifiedCount,
        upsertedCount: r.upsertedCount,
        upsertedIds: ids(r.upsertedIds),
    };
}

const MODEL_ARGS = {
    insertOne: ['document'],
    updateOne: ['filter', 'update', 'upsert', 'arrayFilters', 'collation', 'hint', 'sort'],
    updateMany: ['filter', 'update', 'upsert', 'arrayFilters', 'collation', 'hint'],
    replaceOne: ['filter', 'replacement', 'upsert', 'collation', 'hint', 'sort'],
    deleteOne: ['filter', 'collation', 'hint'],
    deleteMany: ['filter', 'collation', 'hint'],
};

function writeModel(req) {
    const keys = Object.keys(req);
    if (keys.length !== 1 || !MODEL_ARGS[keys[0]]) throw new UnsupportedError(`bulkWrite request ${keys.join(',')}`);
    const type = keys[0];
    const body = {};
    for (const [k, v] of Object.entries(req[type])) {
        if (!MODEL_ARGS[type].includes(k)) throw new UnsupportedError(`bulkWrite ${type} argument ${k}`);
        body[k] = k === 'upsert' ? plain(v) : v;
    }
    return { [type]: body };
}

function returnDocumentOf(v) {
    if (v === undefined) return undefined;
    const s = String(v).toLowerCase();
    if (s !== 'before' && s !== 'after') throw new Error(`returnDocument must be Before or After, got ${v}`);
    return s;
}

/* Creates the server-side cursor without consuming a document (hasNext buffers). */
async function primed(cursor) {
    await cursor.hasNext();
    return { cursor };
}

/* ------------------------------------------------------------ the table */

const FIND_ARGS = ['filter', 'sort', 'projection', 'skip', 'limit', 'batchSize', 'singleBatch', 'hint',
    'max', 'min', 'maxTimeMS', 'maxAwaitTimeMS', 'returnKey', 'showRecordId', 'noCursorTimeout',
    'allowPartialResults', 'collation', 'allowDiskUse', 'let', 'comment', 'readConcern',
    'readPreference', 'rawData', 'timeoutMS'];

function findOptions(args, ctx) {
    if (args.cursorType !== undefined) throw new UnsupportedError('find cursorType');
    return optionsOf(args, ['filter'], ctx);
}

const collection = {
    aggregate: {
        args: ['pipeline', 'allowDiskUse', 'batchSize', 'bypassDocumentValidation', 'collation', 'hint',
            'let', 'maxAwaitTimeMS', ...READ, 'writeConcern'],
        required: ['pipeline'],
        root: 'elements',
        run: (c, a, ctx) => c.aggregate(a.pipeline, exact(optionsOf(a, ['pipeline'], ctx))).toArray(),
    },
    bulkWrite: {
        args: ['requests', 'ordered', 'bypassDocumentValidation', 'let', ...WRITE],
        required: ['requests'],
        root: true,
        run: async (c, a, ctx) => bulkWriteResult(await c.bulkWrite(a.requests.map(writeModel),
            optionsOf(a, ['requests'], ctx))),
    },
    countDocuments: {
        args: ['filter', 'skip', 'limit', 'collation', 'hint', ...READ],
        required: ['filter'],
        root: false,
        run: (c, a, ctx) => c.countDocuments(a.filter, optionsOf(a, ['filter'], ctx)),
    },
    estimatedDocumentCount: {
        args: [...READ],
        root: false,
        run: (c, a, ctx) => c.estimatedDocumentCount(optionsOf(a, [], ctx)),
    },
    count: {
        args: ['filter', 'skip', 'limit', 'collation', 'hint', ...READ],
        root: false,
        run: (c, a, ctx) => {
            if (typeof c.count !== 'function') throw new UnsupportedError('collection.count is not in this driver');
            return c.count(a.filter || {}, optionsOf(a, ['filter'], ctx));
        },
    },
    deleteOne: {
        args: ['filter', 'collation', 'hint', 'let', ...WRITE],
        required: ['filter'],
        root: true,
        run: async (c, a, ctx) => deleteResult(await c.deleteOne(a.filter, optionsOf(a, ['filter'], ctx))),
    },
    deleteMany: {
        args: ['filter', 'collation', 'hint', 'let', ...WRITE],
        required: ['filter'],
        root: true,
        run: async (c, a, ctx) => deleteResult(await c.deleteMany(a.filter, optionsOf(a, ['filter'], ctx))),
    },
    distinct: {
        args: ['fieldName', 'filter', 'collation', 'hint', ...READ],
        required: ['fieldName', 'filter'],
        root: false,
        run: (c, a, ctx) => c.distinct(a.fieldName, a.filter, exact(optionsOf(a, ['fieldName', 'filter'], ctx))),
    },
    find: {
        args: FIND_ARGS,
        root: 'elements',
        run: (c, a, ctx) => c.find(a.filter || {}, exact(findOptions(a, ctx))).toArray(),
    },
    findOne: {
        args: FIND_ARGS.filter((k) => k !== 'limit' && k !== 'batchSize' && k !== 'singleBatch'),
        root: true,
        run: (c, a, ctx) => c.findOne(a.filter || {}, exact(findOptions(a, ctx))),
    },
    createFindCursor: {
        args: FIND_ARGS,
        root: true,
        run: (c, a, ctx) => primed(c.find(a.filter || {}, exact(findOptions(a, ctx)))),
    },
    findOneAndDelete: {
        args: ['filter', 'projection', 'sort', 'collation', 'hint', 'let', 'maxTimeMS', ...WRITE],
        required: ['filter'],
        root: true,
        run: (c, a, ctx) => c.findOneAndDelete(a.filter, exact(optionsOf(a, ['filter'], ctx))),
    },
    findOneAndReplace: {
        args: ['filter', 'replacement', 'projection', 'sort', 'collation', 'hint', 'let', 'maxTimeMS',
            'returnDocument', 'upsert', 'bypassDocumentValidation', ...WRITE],
        required: ['filter', 'replacement'],
        root: true,
        run: (c, a, ctx) => {
            const o = optionsOf(a, ['filter', 'replacement', 'returnDocument'], ctx);
            if (a.returnDocument !== undefined) o.returnDocument = returnDocumentOf(a.returnDocument);
            return c.findOneAndReplace(a.filter, a.replacement, exact(o));
        },
    },
    findOneAndUpdate: {
        args: ['filter', 'update', 'projection', 'sort', 'collation', 'hint', 'let', 'maxTimeMS',
            'returnDocument', 'upsert', 'bypassDocumentValidation', 'arrayFilters', ...WRITE],
        required: ['filter', 'update'],
        root: true,
        run: (c, a, ctx) => {
            const o = optionsOf(a, ['filter', 'update', 'returnDocument'], ctx);
            if (a.returnDocument !== undefined) o.returnDocument = returnDocumentOf(a.returnDocument);
            return c.findOneAndUpdate(a.filter, a.update, exact(o));
        },
    },
    insertOne: {
        args: ['document', 'bypassDocumentValidation', ...WRITE],
        required: ['document'],
        root: true,
        run: async (c, a, ctx) => insertOneResult(await c.insertOne(a.document, optionsOf(a, ['document'], ctx))),
    },
    insertMany: {
        args: ['documents', 'ordered', 'bypassDocumentValidation', ...WRITE],
        required: ['documents'],
        root: true,
        run: async (c, a, ctx) => insertManyResult(await c.insertMany(a.documents, optionsOf(a, ['documents'], ctx))),
    },
    replaceOne: {
        args: ['filter', 'replacement', 'upsert', 'collation', 'hint', 'sort', 'let', 'bypassDocumentValidation',
            ...WRITE],
        required: ['filter', 'replacement'],
        root: true,
        run: async (c, a, ctx) => updateResult(await c.replaceOne(a.filter, a.replacement,
            optionsOf(a, ['filter', 'replacement'], ctx))),
    },
    updateOne: {
        args: ['filter', 'update', 'upsert', 'arrayFilters', 'collation', 'hint', 'sort', 'let',
            'bypassDocumentValidation', ...WRITE],
        required: ['filter', 'update'],
        root: true,
        run: async (c, a, ctx) => updateResult(await c.updateOne(a.filter, a.update,
            optionsOf(a, ['filter', 'update'], ctx))),
    },
    updateMany: {
        args: ['filter', 'update', 'upsert', 'arrayFilters', 'collation', 'hint', 'let',
            'bypassDocumentValidation', ...WRITE],
        required: ['filter', 'update'],
        root: true,
        run: async (c, a, ctx) => updateResult(await c.updateMany(a.filter, a.update,
            optionsOf(a, ['filter', 'update'], ctx))),
    },
    createIndex: {
        args: ['keys', 'name', 'unique', 'sparse', 'background', 'expireAfterSeconds',
            'partialFilterExpression', 'collation', 'hidden', 'wildcardProjection', 'commitQuorum',
            'maxTimeMS', 'storageEngine', 'weights', 'default_language', 'language_override',
            'textIndexVersion', '2dsphereIndexVersion', 'bits', 'min', 'max', 'version', ...WRITE],
        required: ['keys'],
        root: false,
        run: (c, a, ctx) => c.createIndex(a.keys, optionsOf(a, ['keys'], ctx)),
    },
    dropIndex: {
        args: ['name', 'maxTimeMS', ...WRITE],
        required: ['name'],
        root: true,
        run: async (c, a, ctx) => { await c.dropIndex(a.name, optionsOf(a, ['name'], ctx)); },
    },
    dropIndexes: {
        args: ['maxTimeMS', ...WRITE],
        root: true,
        run: async (c, a, ctx) => { await c.dropIndexes(optionsOf(a, [], ctx)); },
    },
    listIndexes: {
        args: ['batchSize', 'comment', 'rawData', 'timeoutMS', 'maxTimeMS'],
        root: 'elements',
        run: (c, a, ctx) => c.listIndexes(optionsOf(a, [], ctx)).toArray(),
    },
    listIndexNames: {
        args: ['batchSize', 'comment', 'rawData'],
        root: false,
        run: async (c, a, ctx) => (await c.listIndexes(optionsOf(a, [], ctx)).toArray()).map((i) => i.name),
    },
    rename: {
        args: ['to', 'dropTarget', 'comment'],
        required: ['to'],
        root: true,
        run: async (c, a, ctx) => { await c.rename(a.to, optionsOf(a, ['to'], ctx)); },
    },
    createSearchIndex: {
        args: ['model'],
        required: ['model'],
        root: false,
        run: (c, a) => c.createSearchIndex(a.model),
    },
    createSearchIndexes: {
        args: ['models'],
        required: ['models'],
        root: false,
        run: (c, a) => c.createSearchIndexes(a.models),
    },
    dropSearchIndex: {
        args: ['name'],
        required: ['name'],
        root: true,
        run: async (c, a) => { await c.dropSearchIndex(a.name); },
    },
    updateSearchIndex: {
        args: ['name', 'definition'],
        required: ['name', 'definition'],
        root: true,
        run: async (c, a) => { await c.updateSearchIndex(a.name, a.definition); },
    },
    listSearchIndexes: {
        args: ['name', 'aggregationOptions'],
        root: 'elements',
        run: (c, a) => {
            const opts = a.aggregationOptions ? optionsOf(a.aggregationOptions, [], null) : {};
            return (a.name !== undefined ? c.listSearchIndexes(a.name, opts) : c.listSearchIndexes(opts)).toArray();
        },
    },
};

const database = {
    aggregate: {
        args: ['pipeline', 'allowDiskUse', 'batchSize', 'bypassDocumentValidation', 'collation', 'hint',
            'let', 'maxAwaitTimeMS', ...READ, 'writeConcern'],
        required: ['pipeline'],
        root: 'elements',
        run: (d, a, ctx) => d.aggregate(a.pipeline, exact(optionsOf(a, ['pipeline'], ctx))).toArray(),
    },
    createCollection: {
        args: ['collection', 'capped', 'size', 'max', 'storageEngine', 'validator', 'validationLevel',
            'validationAction', 'indexOptionDefaults', 'viewOn', 'pipeline', 'collation', 'timeseries',
            'expireAfterSeconds', 'clusteredIndex', 'changeStreamPreAndPostImages', 'encryptedFields',
            ...WRITE],
        required: ['collection'],
        root: true,
        run: async (d, a, ctx) => { await d.createCollection(a.collection, optionsOf(a, ['collection'], ctx)); },
    },
    dropCollection: {
        args: ['collection', 'encryptedFields', ...WRITE],
        required: ['collection'],
        root: true,
        run: async (d, a, ctx) => { await d.dropCollection(a.collection, optionsOf(a, ['collection'], ctx)); },
    },
    listCollections: {
        args: ['filter', 'batchSize', 'nameOnly', 'authorizedCollections', 'comment', 'rawData', 'timeoutMS'],
        root: 'elements',
        run: (d, a, ctx) => d.listCollections(a.filter || {}, optionsOf(a, ['filter'], ctx)).toArray(),
    },
    listCollectionNames: {
        args: ['filter', 'batchSize', 'authorizedCollections', 'comment', 'rawData'],
        root: false,
        run: async (d, a, ctx) => (await d.listCollections(a.filter || {},
            { ...optionsOf(a, ['filter'], ctx), nameOnly: true }).toArray()).map((c) => c.name),
    },
    modifyCollection: {
        // Not a driver API: the collMod command with the test's arguments.
        args: ['collection', 'validator', 'validationLevel', 'validationAction', 'index',
            'changeStreamPreAndPostImages', 'expireAfterSeconds', 'timeseries', 'comment'],
        required: ['collection'],
        root: true,
        run: (d, a, ctx) => {
            const { collection: name, session: s, ...rest } = a;
            return d.command({ collMod: name, ...rest }, s ? { session: ctx.entities.get(s, 'session').value } : {});
        },
    },
    runCommand: {
        args: ['command', 'commandName', 'readPreference'],
        required: ['command', 'commandName'],
        root: true,
        run: (d, a, ctx) => d.command(a.command, optionsOf(a, ['command', 'commandName'], ctx)),
    },
    runCursorCommand: {
        args: ['command', 'commandName', 'readPreference', 'batchSize', 'maxTimeMS', 'comment'],
        required: ['command', 'commandName'],
        root: 'elements',
        run: (d, a, ctx) => commandCursor(d, a, ctx).toArray(),
    },
    createCommandCursor: {
        args: ['command', 'commandName', 'readPreference', 'batchSize', 'maxTimeMS', 'comment'],
        required: ['command', 'commandName'],
        root: true,
        run: (d, a, ctx) => primed(commandCursor(d, a, ctx)),
    },
};

function commandCursor(d, a, ctx) {
    const o = optionsOf(a, ['command', 'commandName', 'batchSize', 'maxTimeMS', 'comment'], ctx);
    const cur = d.runCursorCommand(a.command, o);
    if (a.batchSize !== undefined) cur.setBatchSize(plain(a.batchSize));
    if (a.maxTimeMS !== undefined) cur.setMaxTimeMS(plain(a.maxTimeMS));
    if (a.comment !== undefined) cur.setComment(a.comment);
    return cur;
}

/* clientBulkWrite: { <type>: { namespace, ... } } -> the driver's { name: <type>, namespace, ... }. */
const CLIENT_MODEL_ARGS = Object.fromEntries(Object.entries(MODEL_ARGS).map(([k, v]) => [k, ['namespace', ...v]]));

function clientModel(req) {
    const keys = Object.keys(req);
    if (keys.length !== 1 || !CLIENT_MODEL_ARGS[keys[0]]) throw new UnsupportedError(`clientBulkWrite model ${keys.join(',')}`);
    const type = keys[0];
    const model = { name: type };
    for (const [k, v] of Object.entries(req[type])) {
        if (!CLIENT_MODEL_ARGS[type].includes(k)) throw new UnsupportedError(`clientBulkWrite ${type} argument ${k}`);
        model[k] = k === 'upsert' ? plain(v) : v;
    }
    return model;
}

/* ClientBulkWriteResult (or a MongoClientBulkWriteError's partialResult) as a document: the
 * per-operation result Maps become documents keyed by index; absent when summary-only. */
function clientBulkWriteResult(r) {
    if (!r) return undefined;
    const out = {};
    for (const k of ['acknowledged', 'insertedCount', 'upsertedCount', 'matchedCount', 'modifiedCount', 'deletedCount']) {
        if (r[k] !== undefined) out[k] = r[k];
    }
    for (const k of ['insertResults', 'updateResults', 'deleteResults']) {
        if (!r[k]) continue;
        const doc = {};
        for (const [i, v] of r[k]) {
            const entry = {};
            for (const [f, x] of Object.entries(v)) if (x !== undefined && x !== null) entry[f] = x;
            doc[String(i)] = entry;
        }
        out[k] = doc;
    }
    return out;
}

const client = {
    clientBulkWrite: {
        args: ['models', 'ordered', 'bypassDocumentValidation', 'let', 'verboseResults', ...WRITE],
        required: ['models'],
        root: true,
        run: async (c, a, ctx) => clientBulkWriteResult(await c.bulkWrite(a.models.map(clientModel),
            optionsOf(a, ['models'], ctx))),
    },
    listDatabases: {
        args: ['filter', 'nameOnly', 'authorizedDatabases', 'comment'],
        root: 'elements',
        run: async (c, a, ctx) => (await c.db('admin').admin().listDatabases(optionsOf(a, [], ctx))).databases,
    },
    listDatabaseNames: {
        args: ['filter', 'authorizedDatabases', 'comment'],
        root: false,
        run: async (c, a, ctx) => (await c.db('admin').admin().listDatabases(
            { ...optionsOf(a, [], ctx), nameOnly: true })).databases.map((d) => d.name),
    },
    close: {
        args: [],
        root: true,
        run: async (c, a, ctx, entity) => {
            entity.client.listening = false;
            await c.close();
        },
    },
};

const session = {
    endSession: {
        args: [],
        root: true,
        run: async (s) => { await s.endSession(); },
    },
    startTransaction: {
        args: ['readConcern', 'writeConcern', 'readPreference', 'maxCommitTimeMS'],
        root: true,
        run: (s, a) => { s.startTransaction(transactionOptions(a)); },
    },
    commitTransaction: {
        args: [],
        root: true,
        run: async (s) => { await s.commitTransaction(); },
    },
    abortTransaction: {
        args: [],
        root: true,
        run: async (s) => { await s.abortTransaction(); },
    },
    withTransaction: {
        args: ['callback', 'readConcern', 'writeConcern', 'readPreference', 'maxCommitTimeMS'],
        required: ['callback'],
        root: true,
        run: async (s, a, ctx) => {
            const { callback, ...opts } = a;
            await s.withTransaction(async () => {
                for (const op of callback) await ctx.runOperation(op, { propagate: true });
            }, transactionOptions(opts));
        },
    },
};

const cursor = {
    iterateUntilDocumentOrError: {
        args: [],
        root: true,
        run: async (w) => {
            const doc = await w.cursor.next();
            if (doc === null) throw new Error('iterateUntilDocumentOrError: the cursor is exhausted');
            return doc;
        },
    },
    iterateOnce: {
        args: [],
        root: true,
        run: async (w) => {
            const doc = await w.cursor.tryNext();
            return doc === null ? undefined : doc;
        },
    },
    close: {
        args: [],
        root: true,
        run: async (w) => {
            try {
                await w.cursor.close();
            } catch (e) { /* the spec: suppress all errors when closing a cursor */ }
        },
    },
};

const OPERATIONS = { collection, database, client, session, cursor };

/* Every operation name of any entity kind (for the pre-scan of a test). */
const ALL_NAMES = new Set(Object.values(OPERATIONS).flatMap((t) => Object.keys(t)));

module.exports = { OPERATIONS, ALL_NAMES, bulkWriteResult, clientBulkWriteResult, setExactTypes };
