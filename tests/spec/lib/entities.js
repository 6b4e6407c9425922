'use strict';
/*
 * lib/entities.js: the entity map of one unified test ("Entity Map", "entity" and
 * "storeEventsAsEntity" in the unified test format) and the client entity's event capture.
 *
 * Every entry is { kind, value, ... } with kind one of client, database, collection,
 * session, cursor, bson. Names are unique; fetching checks the kind. Entity types this runner
 * does not support (bucket, thread, clientEncryption, change streams, stored event lists)
 * raise UnsupportedError so the test is skipped.
 *
 * Client entities connect with directConnection to the nedbd under test; uriOptions go into
 * the connection string so they override it (as the spec asks). Command monitoring events
 * are recorded while `listening` is true, filtered by observeEvents,
 * ignoreCommandMonitoringEvents, configureFailPoint and the sensitive commands of the
 * Command Logging and Monitoring spec (unless observeSensitiveCommands).
 */
const { MongoClient, ReadPreference } = require('mongodb');
const { UnsupportedError, numeric, isDocument } = require('./matcher');

const COMMAND_EVENTS = {
    commandStarted: 'commandStartedEvent',
    commandSucceeded: 'commandSucceededEvent',
    commandFailed: 'commandFailedEvent',
};
const CMAP_EVENTS = {
    connectionPoolCreated: 'poolCreatedEvent',
    connectionPoolReady: 'poolReadyEvent',
    connectionPoolCleared: 'poolClearedEvent',
    connectionPoolClosed: 'poolClosedEvent',
    connectionCreated: 'connectionCreatedEvent',
    connectionReady: 'connectionReadyEvent',
    connectionClosed: 'connectionClosedEvent',
    connectionCheckOutStarted: 'connectionCheckOutStartedEvent',
    connectionCheckOutFailed: 'connectionCheckOutFailedEvent',
    connectionCheckedOut: 'connectionCheckedOutEvent',
    connectionCheckedIn: 'connectionCheckedInEvent',
};
const SUPPORTED_EVENTS = new Set([...Object.values(COMMAND_EVENTS), ...Object.values(CMAP_EVENTS)]);
const SENSITIVE = new Set(['authenticate', 'saslstart', 'saslcontinue', 'getnonce', 'createuser',
    'updateuser', 'copydbgetnonce', 'copydbsaslstart', 'copydb']);
const HELLO = new Set(['hello', 'ismaster']);

/* A value from a test file (Int32, Double, Long ...) as a plain JS scalar for driver options. */
function plain(v) {
    const n = numeric(v);
    if (n !== null) return typeof n === 'bigint' ? Number(n) : n;
    return v;
}

function uriValue(v) {
    v = plain(v);
    if (isDocument(v)) return Object.entries(v).map(([k, x]) => `${k}:${uriValue(x)}`).join(',');
    return String(v);
}

function hasPlaceholder(v) {
    if (v === null || typeof v !== 'object') return false;
    if (Object.prototype.hasOwnProperty.call(v, '$$placeholder')) return true;
    return Object.values(v).some(hasPlaceholder);
}

function readPreferenceOf(rp) {
    if (!rp) return undefined;
    if (typeof rp === 'string') return ReadPreference.fromString(rp);
    const opts = {};
    if (rp.maxStalenessSeconds !== undefined) opts.maxStalenessSeconds = plain(rp.maxStalenessSeconds);
    if (rp.hedge !== undefined) opts.hedge = rp.hedge;
    return new ReadPreference(rp.mode.toLowerCase() === 'primarypreferred' ? 'primaryPreferred'
        : rp.mode.charAt(0).toLowerCase() + rp.mode.slice(1), rp.tagSets, opts);
}

function writeConcernOf(wc) {
    if (!wc) return undefined;
    const out = {};
    for (const [k, v] of Object.entries(wc)) {
        if (k === 'w') out.w = plain(v);
        else if (k === 'journal' || k === 'j') out.journal = v;
        else if (k === 'wtimeoutMS' || k === 'wtimeout') out.wtimeoutMS = plain(v);
        else throw new UnsupportedError(`writeConcern option ${k}`);
    }
    return out;
}

/* collectionOrDatabaseOptions -> driver options. */
function collOrDbOptions(o) {
    const out = {};
    for (const [k, v] of Object.entries(o || {})) {
        if (k === 'readConcern') out.readConcern = v;
        else if (k === 'readPreference') out.readPreference = readPreferenceOf(v);
        else if (k === 'writeConcern') out.writeConcern = writeConcernOf(v);
        else if (k === 'timeoutMS') out.timeoutMS = plain(v);
        else throw new UnsupportedError(`collection/database option ${k}`);
    }
    return out;
}

class ClientEntity {
    constructor(id, spec, baseUri) {
        const known = new Set(['id', 'uriOptions', 'useMultipleMongoses', 'observeEvents',
            'ignoreCommandMonitoringEvents', 'observeSensitiveCommands', 'serverApi']);
        for (const k of Object.keys(spec)) {
            if (!known.has(k)) throw new UnsupportedError(`client option ${k}`);
        }
        this.id = id;
        this.observe = new Set(spec.observeEvents || []);
        for (const e of this.observe) {
            if (!SUPPORTED_EVENTS.has(e)) throw new UnsupportedError(`observeEvents ${e}`);
        }
        this.ignore = new Set(['configurefailpoint',
            ...(spec.ignoreCommandMonitoringEvents || []).map((s) => s.toLowerCase())]);
        this.observeSensitive = spec.observeSensitiveCommands === true;
        this.events = []; // { name: '<type>Event', family: 'command'|'cmap', ev }
        this.listening = true;
        this.checkedOut = 0;
        this.sensitiveRequests = new Set();

        const uriOptions = spec.uriOptions || {};
        if (hasPlaceholder(uriOptions)) throw new UnsupportedError('uriOptions $$placeholder');
        const params = new URLSearchParams();
        params.set('directConnection', 'true');
        if (uriOptions.serverSelectionTimeoutMS === undefined) params.set('serverSelectionTimeoutMS', '5000');
        for (const [k, v] of Object.entries(uriOptions)) {
            if (k === 'readPreferenceTags' && Array.isArray(v)) {
                for (const t of v) params.append(k, uriValue(t));
            } else {
                params.set(k, uriValue(v));
            }
        }
        const opts = { monitorCommands: true };
        if (spec.serverApi) {
            opts.serverApi = { version: spec.serverApi.version };
            if (spec.serverApi.strict !== undefined) opts.serverApi.strict = spec.serverApi.strict;
            if (spec.serverApi.deprecationErrors !== undefined) {
                opts.serverApi.deprecationErrors = spec.serverApi.deprecationErrors;
            }
        }
        this.client = new MongoClient(`${baseUri}?${params.toString()}`, opts);
        for (const [driverName, name] of Object.entries(COMMAND_EVENTS)) {
            this.client.on(driverName, (ev) => this.onCommand(name, ev));
        }
        for (const [driverName, name] of Object.entries(CMAP_EVENTS)) {
            this.client.on(driverName, (ev) => this.onCmap(name, ev));
        }
    }

    isSensitive(name, ev) {
        if (this.observeSensitive) return false;
        const n = String(ev.commandName || '').toLowerCase();
        if (SENSITIVE.has(n)) return true;
        if (HELLO.has(n)) {
            if (name === 'commandStartedEvent') {
                const c = ev.command || {};
                return c.speculativeAuthenticate !== undefined || Object.keys(c).length === 0;
            }
            return this.sensitiveRequests.has(ev.requestId) || (ev.reply && Object.keys(ev.reply).length === 0);
        }
        return false;
    }

    onCommand(name, ev) {
        if (!this.listening) return;
        if (this.ignore.has(String(ev.commandName || '').toLowerCase())) return;
        if (this.isSensitive(name, ev)) {
            if (name === 'commandStartedEvent') this.sensitiveRequests.add(ev.requestId);
            return;
        }
        this.events.push({ name, family: 'command', ev, observed: this.observe.has(name) });
    }

    onCmap(name, ev) {
        if (name === 'connectionCheckedOutEvent') this.checkedOut++;
        if (name === 'connectionCheckedInEvent') this.checkedOut--;
        if (!this.listening) return;
        this.events.push({ name, family: 'cmap', ev, observed: this.observe.has(name) });
    }

    /* Observed events of one family (command, cmap), in order. */
    observed(family) {
        return this.events.filter((e) => e.family === family && e.observed);
    }
}

class EntityMap {
    constructor(runner) {
        this.runner = runner;
        this.map = new Map();
    }

    has(name) { return this.map.has(name); }

    add(name, entry) {
        if (typeof name !== 'string' || !name) throw new Error(`bad entity name ${name}`);
        if (this.map.has(name)) throw new Error(`entity ${name} already exists`);
        this.map.set(name, entry);
    }

    get(name, kind) {
        const e = this.map.get(name);
        if (!e) throw new Error(`no entity named ${name}`);
        const kinds = Array.isArray(kind) ? kind : [kind];
        if (kind && !kinds.includes(e.kind)) throw new Error(`entity ${name} is a ${e.kind}, not a ${kinds.join('/')}`);
        return e;
    }

    /* For the matcher: a BSON entity's value, or a session's lsid. */
    getForMatch(name, kind) {
        if (kind === 'session-lsid') return this.get(name, 'session').lsid;
        return this.get(name, 'bson').value;
    }

    /* createEntities: one entity object ({ <type>: {...} }) after another. */
    async create(list) {
        for (const obj of list) {
            const types = Object.keys(obj);
            if (types.length !== 1) throw new Error(`entity object with keys ${types.join(', ')}`);
            const type = types[0];
            const spec = obj[type];
            switch (type) {
            case 'client': {
                const c = new ClientEntity(spec.id, spec, this.runner.baseUri);
                if (spec.storeEventsAsEntities) throw new UnsupportedError('storeEventsAsEntities');
                // No explicit connect(): the driver connects on the first operation, so the
                // connection it creates is observed during the test's operations (CMAP events)
                // and connect() itself adds no checkout of its own.
                this.add(spec.id, { kind: 'client', value: c.client, client: c });
                break;
            }
            case 'database': {
                const c = this.get(spec.client, 'client');
                const db = c.value.db(spec.databaseName, collOrDbOptions(spec.databaseOptions));
                this.add(spec.id, { kind: 'database', value: db, name: spec.databaseName, client: c });
                break;
            }
            case 'collection': {
                const d = this.get(spec.database, 'database');
                const coll = d.value.collection(spec.collectionName, collOrDbOptions(spec.collectionOptions));
                this.add(spec.id, { kind: 'collection', value: coll, name: spec.collectionName, database: d });
                break;
            }
            case 'session': {
                const c = this.get(spec.client, 'client');
                const opts = { ...(spec.sessionOptions || {}) };
                for (const [k, v] of Object.entries(opts)) {
                    if (k === 'defaultTransactionOptions') opts[k] = transactionOptions(v);
                    else if (k === 'causalConsistency' || k === 'snapshot') opts[k] = v;
                    else if (k === 'defaultTimeoutMS') opts[k] = plain(v);
                    else throw new UnsupportedError(`session option ${k}`);
                }
                const session = c.value.startSession(opts);
                this.add(spec.id, { kind: 'session', value: session, lsid: session.id, client: c });
                break;
            }
            default:
                throw new UnsupportedError(`${type} entities are not supported`);
            }
        }
    }

    clients() {
        return [...this.map.values()].filter((e) => e.kind === 'client').map((e) => e.client);
    }

    /* End sessions, close cursors, then close clients; errors are ignored. */
    async close() {
        const entries = [...this.map.values()];
        for (const e of entries) {
            try {
                if (e.kind === 'session') await e.value.endSession();
                else if (e.kind === 'cursor') await e.value.cursor.close();
            } catch (err) { /* cleanup */ }
        }
        for (const e of entries) {
            if (e.kind !== 'client') continue;
            e.client.listening = false;
            try {
                await e.value.close(true);
            } catch (err) { /* cleanup */ }
        }
        this.map.clear();
    }
}

function transactionOptions(o) {
    const out = {};
    for (const [k, v] of Object.entries(o || {})) {
        if (k === 'readConcern') out.readConcern = v;
        else if (k === 'writeConcern') out.writeConcern = writeConcernOf(v);
        else if (k === 'readPreference') out.readPreference = readPreferenceOf(v);
        else if (k === 'maxCommitTimeMS') out.maxCommitTimeMS = plain(v);
        else throw new UnsupportedError(`transaction option ${k}`);
    }
    return out;
}

module.exports = {
    EntityMap,
    ClientEntity,
    plain,
    readPreferenceOf,
    writeConcernOf,
    transactionOptions,
    SUPPORTED_EVENTS,
};
