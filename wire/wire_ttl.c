/*
 * wire_ttl.c: the TTL monitor (MongoDB 7.0's TTLMonitor): a background pass every
 * ttlMonitorSleepSecs (default 60) that deletes the documents that TTL indexes, clustered
 * collections and time-series collections with expireAfterSeconds say have expired.
 *
 * What expires, as MongoDB 7.0 documents it ("TTL Indexes", "Expire Data from Collections
 * by Setting TTL", "Set up Automatic Removal for Time Series Collections"):
 *   - a single-field secondary index with expireAfterSeconds: a document whose indexed
 *     field is a date, or an array holding dates (the earliest counts), at or before now -
 *     expireAfterSeconds. A missing field or a value that is not a date never expires.
 *     Compound indexes ignore the option; so do indexes of capped collections. A partial
 *     index expires only what its partialFilterExpression covers. A hidden index still
 *     expires documents (hidden only hides it from the planner).
 *   - a clustered collection with expireAfterSeconds: by its cluster key, _id, when that
 *     is a date.
 *   - a time-series collection with expireAfterSeconds: a bucket goes once every
 *     measurement in it has expired, that is by the bucket's control.max.<timeField>. NEDB
 *     keeps one measurement per bucket (cmd_timeseries.h), so each measurement goes by its
 *     own time.
 *
 * Where it lives. The engine keeps index specs but gives them no meaning beyond keys,
 * uniqueness and lookups; what a TTL index means (dates, arrays, partial filters, hidden
 * indexes) and the time-series bucket layout are MongoDB semantics that the wire layer
 * already owns (cmd_index.c validates the option, cmd_timeseries.c builds the buckets), and
 * the engine knows nothing of wall-clock policy. So the monitor is a client of the engine
 * like any command: it reads at a snapshot through eng_db.h and writes through the
 * sequencer, and nothing below wire/ changes.
 *
 * How it runs. One dedicated thread, started after the engine opens and stopped
 * (wire_ttl_stop) before it closes. It never touches an I/O thread: it waits on its own
 * condition variable for its deletes to be durable (the sequencer's done callback only
 * signals it), so no event loop ever blocks on an fsync. A pass:
 *   1. is skipped while ttlMonitorEnabled is false (and then not counted in passes, as
 *      mongod does), while the store is read-only after a failed fsync, and while the
 *      server is fsync-locked;
 *   2. takes a snapshot, lists every collection at it, and for each one with TTL rules
 *      scans its documents at that snapshot;
 *   3. submits the expired ones as ordinary delete ops (ENG_WOP_DELETE, exactly what a
 *      delete command submits), one intent per collection (in batches of at most
 *      TTL_BATCH), each op expecting the version it read: a concurrent update wins and
 *      the document is looked at again on the next pass. The deletes are sealed in the hash
 *      chain like any other, and history keeps the deleted versions: a read as of an
 *      earlier seq still sees them.
 * metrics.ttl {deletedDocuments, passes} in serverStatus come from here.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_timeseries.h"
#include "wire_cmd.h"

#define TTL_SLEEP_DEFAULT 60
#define TTL_BATCH 10000 /* deletes per intent */

struct wire_ttl {
    wire_server_t *server;
    pthread_t tid;
    pthread_mutex_t lock;       /* guards stopping, the wake-ups and the intent below */
    pthread_cond_t cond;        /* parameter changes, stop, and intent completion */
    bool stopping;
    bool intent_done;
    _Atomic int32_t sleep_secs;
    _Atomic bool enabled;
    _Atomic int64_t deleted;
    _Atomic int64_t passes;
};

/* One rule of a collection: documents whose date at `path` is at or before `cutoff_ms`
 * (and that `partial` matches, when set) have expired. */
typedef struct ttl_rule {
    char *path;
    int64_t cutoff_ms;
    bq_match_t *partial;
} ttl_rule_t;

typedef struct ttl_rules {
    ttl_rule_t *v;
    size_t n, cap;
} ttl_rules_t;

/* expireAfterSeconds as a whole number of seconds; false when it is not a usable number
 * (the create and collMod checks keep such values out; a log from elsewhere might not). */
static bool expire_seconds(const bson_iter_t *it, int64_t *out)
{
    if (!BSON_ITER_HOLDS_NUMBER(it))
        return false;
    double d = bson_iter_as_double(it);
    if (isnan(d) || d < 0 || d > (double)INT32_MAX)
        return false;
    *out = bson_iter_as_int64(it);
    return true;
}

static void rules_add(ttl_rules_t *r, const char *path, int64_t now_ms, int64_t expire,
                      bq_match_t *partial)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            abort();
    }
    ttl_rule_t *x = &r->v[r->n++];
    x->path = bson_strdup(path);
    x->cutoff_ms = now_ms - expire * 1000;
    x->partial = partial;
}

static void rules_clear(ttl_rules_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        bson_free(r->v[i].path);
        bq_match_destroy(r->v[i].partial);
    }
    r->n = 0;
}

/* The TTL rules of one collection at snap, from its options and its index specs. */
static void rules_collect(eng_coll_t *c, const eng_coll_info_t *info, int64_t snap,
                          int64_t now_ms, ttl_rules_t *r)
{
    const bson_t *opts = info->options;
    bson_iter_t it, sub;
    if (bson_has_field(opts, "viewOn"))
        return;
    int64_t expire;
    bool has_expire = bson_iter_init_find(&it, opts, "expireAfterSeconds") &&
                      expire_seconds(&it, &expire);
    bool buckets = strncmp(info->name, WIRE_TS_BUCKETS_PREFIX,
                           strlen(WIRE_TS_BUCKETS_PREFIX)) == 0;
    if (has_expire && buckets) {
        /* time series: the bucket's newest time */
        if (bson_iter_init_find(&it, opts, "timeseries") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
            bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, "timeField") &&
            BSON_ITER_HOLDS_UTF8(&sub)) {
            char *path = bson_strdup_printf("control.max.%s", bson_iter_utf8(&sub, NULL));
            rules_add(r, path, now_ms, expire, NULL);
            bson_free(path);
        }
    } else if (has_expire && bson_iter_init_find(&it, opts, "clusteredIndex") &&
               (BSON_ITER_HOLDS_DOCUMENT(&it) ||
                (BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it)))) {
        rules_add(r, "_id", now_ms, expire, NULL); /* the cluster key */
    }
    bool capped = bson_iter_init_find(&it, opts, "capped") && bson_iter_as_bool(&it);
    if (capped)
        return; /* TTL indexes do not apply to capped collections */
    const bson_t **specs = NULL;
    size_t n = eng_coll_indexes(c, snap, &specs);
    for (size_t i = 0; i < n; i++) {
        const bson_t *spec = specs[i];
        if (!bson_iter_init_find(&it, spec, "expireAfterSeconds") || !expire_seconds(&it, &expire))
            continue;
        if (!bson_iter_init_find(&it, spec, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
            !bson_iter_recurse(&it, &sub) || !bson_iter_next(&sub))
            continue;
        const char *path = bson_iter_key(&sub);
        if (bson_iter_next(&sub))
            continue; /* compound: no TTL */
        bq_match_t *partial = NULL;
        if (bson_iter_init_find(&it, spec, "partialFilterExpression") &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_t filter;
            bq_error_t e;
            bq_error_clear(&e);
            if (!bson_init_static(&filter, data, len) ||
                !(partial = bq_match_compile(&filter, &e))) {
                bson_iter_t nm;
                wire_log(1, "TTL: index %s of %s.%s: partialFilterExpression does not "
                            "compile, skipped: %s",
                         bson_iter_init_find(&nm, spec, "name") && BSON_ITER_HOLDS_UTF8(&nm)
                             ? bson_iter_utf8(&nm, NULL)
                             : "?",
                         info->db, info->name, e.message);
                continue;
            }
        }
        rules_add(r, path, now_ms, expire, partial);
    }
    free(specs);
}

/* The earliest date at a path (element of an array or the value itself). */
typedef struct earliest {
    bool found;
    int64_t ms;
} earliest_t;

static bool earliest_cb(void *ctx, const bq_path_hit_t *hit)
{
    earliest_t *e = ctx;
    if (hit->value && hit->value->value_type == BSON_TYPE_DATE_TIME) {
        int64_t ms = hit->value->value.v_datetime;
        if (!e->found || ms < e->ms)
            e->ms = ms;
        e->found = true;
    }
    return false;
}

/* wire_scan_collect's keep: 1 when one of the rules says the document has expired. */
static int keep_expired(void *arg, const eng_doc_t *d, bq_error_t *err)
{
    (void)err;
    const ttl_rules_t *r = arg;
    bson_t doc;
    if (!bson_init_static(&doc, d->data, d->len))
        return 0;
    for (size_t i = 0; i < r->n; i++) {
        earliest_t e = {0};
        bq_path_walk(&doc, r->v[i].path, BQ_PATH_EXPAND_LEAF_ARRAYS, earliest_cb, &e);
        if (!e.found || e.ms > r->v[i].cutoff_ms)
            continue;
        if (r->v[i].partial && !bq_match_eval(r->v[i].partial, &doc))
            continue;
        return 1;
    }
    return 0;
}

/* The sequencer's done callback (committer thread): wakes the monitor. */
static void ttl_intent_done(eng_intent_t *intent)
{
    struct wire_ttl *t = intent->owner;
    pthread_mutex_lock(&t->lock);
    t->intent_done = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* Deletes docs[0..n) of db.coll, each expecting the version read; returns how many went.
 * False when the whole intent failed (read-only, I/O): the pass stops. */
static bool ttl_delete(struct wire_ttl *t, const char *db, const char *coll,
                       const eng_doc_t *docs, size_t n, int64_t *deleted)
{
    eng_wop_t *ops = calloc(n, sizeof *ops);
    if (!ops)
        abort();
    size_t nops = 0;
    for (size_t i = 0; i < n; i++) {
        bson_t doc;
        bson_iter_t id;
        if (!bson_init_static(&doc, docs[i].data, docs[i].len) ||
            !bson_iter_init_find(&id, &doc, "_id"))
            continue;
        eng_wop_t *w = &ops[nops++];
        eng_wop_init(w, ENG_WOP_DELETE, db, coll);
        bson_value_copy(bson_iter_value(&id), &w->id);
        w->expect = docs[i].seq;
    }
    eng_intent_t intent;
    memset(&intent, 0, sizeof intent);
    intent.ops = ops;
    intent.nops = nops;
    intent.ordered = false;
    intent.durable = true;
    intent.done = ttl_intent_done;
    intent.owner = t;
    bool ok = true;
    if (nops) {
        pthread_mutex_lock(&t->lock);
        t->intent_done = false;
        pthread_mutex_unlock(&t->lock);
        eng_submit(t->server->db, &intent);
        pthread_mutex_lock(&t->lock);
        while (!t->intent_done)
            pthread_cond_wait(&t->cond, &t->lock);
        pthread_mutex_unlock(&t->lock);
        if (intent.err.code) {
            wire_log(1, "TTL: deleting from %s.%s failed: %s", db, coll, intent.err.message);
            ok = false;
        }
        for (size_t i = 0; ok && i < nops; i++)
            if (ops[i].seq >= 0)
                (*deleted)++;
    }
    for (size_t i = 0; i < nops; i++)
        eng_wop_cleanup(&ops[i]);
    free(ops);
    return ok;
}

/* May the monitor write now? Not after a failed fsync, nor under an fsync lock. */
static bool ttl_may_write(struct wire_ttl *t)
{
    return !eng_db_read_only(t->server->db) && !wire_admin_fsync_locked(t->server);
}

/* One pass over every collection. */
static void ttl_pass(struct wire_ttl *t)
{
    eng_db_t *db = t->server->db;
    int64_t snap = eng_db_snapshot(db);
    int64_t now = wire_now_ms();
    eng_coll_info_t *colls = NULL;
    size_t ncolls = eng_catalog_list(db, NULL, snap, &colls);
    ttl_rules_t rules = {0};
    int64_t deleted = 0;
    for (size_t i = 0; i < ncolls; i++) {
        pthread_mutex_lock(&t->lock);
        bool stop = t->stopping;
        pthread_mutex_unlock(&t->lock);
        if (stop || !atomic_load(&t->enabled) || !ttl_may_write(t))
            break;
        rules_clear(&rules);
        rules_collect(colls[i].coll, &colls[i], snap, now, &rules);
        if (rules.n == 0)
            continue;
        eng_doc_t *docs = NULL;
        bq_error_t e;
        bq_error_clear(&e);
        size_t n = wire_scan_collect(colls[i].coll, snap, keep_expired, &rules, &docs, &e);
        if (n == WIRE_COLLECT_ERROR) {
            wire_log(1, "TTL: reading %s.%s failed: %s", colls[i].db, colls[i].name,
                     e.message);
            continue;
        }
        bool ok = true;
        for (size_t off = 0; ok && off < n; off += TTL_BATCH)
            ok = ttl_delete(t, colls[i].db, colls[i].name, docs + off,
                            n - off < TTL_BATCH ? n - off : TTL_BATCH, &deleted);
        free(docs);
        if (!ok)
            break;
    }
    rules_clear(&rules);
    free(rules.v);
    free(colls);
    atomic_fetch_add(&t->deleted, deleted);
    if (deleted)
        wire_log(2, "TTL: deleted %lld expired documents", (long long)deleted);
}

static void *ttl_main(void *arg)
{
    struct wire_ttl *t = arg;
    struct timespec last;
    clock_gettime(CLOCK_MONOTONIC, &last);
    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        struct timespec now, due = last;
        due.tv_sec += atomic_load(&t->sleep_secs);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < due.tv_sec || (now.tv_sec == due.tv_sec && now.tv_nsec < due.tv_nsec)) {
            /* woken early by a parameter change or stop: look at the time again */
            pthread_cond_timedwait(&t->cond, &t->lock, &due);
            continue;
        }
        pthread_mutex_unlock(&t->lock);
        if (atomic_load(&t->enabled) && ttl_may_write(t)) {
            ttl_pass(t);
            atomic_fetch_add(&t->passes, 1);
        }
        clock_gettime(CLOCK_MONOTONIC, &last);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

struct wire_ttl *wire_ttl_start(wire_server_t *server, int32_t sleep_secs, bool enabled,
                                bq_error_t *err)
{
    struct wire_ttl *t = calloc(1, sizeof *t);
    if (!t) {
        bq_error_set(err, BQ_ERR_InternalError, "out of memory starting the TTL monitor");
        return NULL;
    }
    t->server = server;
    atomic_init(&t->sleep_secs, sleep_secs > 0 ? sleep_secs : TTL_SLEEP_DEFAULT);
    atomic_init(&t->enabled, enabled);
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&t->tid, NULL, ttl_main, t) != 0) {
        bq_error_set(err, BQ_ERR_InternalError, "cannot start the TTL monitor thread");
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    return t;
}

void wire_ttl_stop(struct wire_ttl *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->tid, NULL); /* a pass in progress finishes its intent first */
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int32_t wire_ttl_sleep_secs(const struct wire_ttl *t)
{
    return t ? atomic_load(&t->sleep_secs) : TTL_SLEEP_DEFAULT;
}

bool wire_ttl_enabled(const struct wire_ttl *t)
{
    return t ? atomic_load(&t->enabled) : false;
}

static void ttl_wake(struct wire_ttl *t)
{
    pthread_mutex_lock(&t->lock);
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void wire_ttl_set_sleep_secs(struct wire_ttl *t, int32_t secs)
{
    if (!t || secs <= 0)
        return;
    atomic_store(&t->sleep_secs, secs);
    ttl_wake(t);
}

void wire_ttl_set_enabled(struct wire_ttl *t, bool on)
{
    if (!t)
        return;
    atomic_store(&t->enabled, on);
    ttl_wake(t);
}

void wire_ttl_metrics(const struct wire_ttl *t, int64_t *deleted, int64_t *passes)
{
    *deleted = t ? atomic_load(&t->deleted) : 0;
    *passes = t ? atomic_load(&t->passes) : 0;
}
