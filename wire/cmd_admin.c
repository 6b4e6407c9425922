/*
 * cmd_admin.c: the administrative commands that mongosh's helpers and Compass send, as a
 * standalone MongoDB 7.0 mongod answers them: currentOp (and the source of the $currentOp
 * stage), killOp, profile, fsync / fsyncUnlock, top, dataSize, validate,
 * getDefaultRWConcern and replSetGetStatus (the last two refused as a standalone refuses
 * them). It also owns the server's list of operations in progress, which wire_dispatch.c
 * feeds (wire_admin_op_begin / _end around every command that passed its checks), top's
 * per-namespace counters, the slow-operation threshold, and the fsync lock.
 *
 * What NEDB does differently, and why:
 *   - Every write is fsynced before it is acknowledged (DESIGN.md section 3), so fsync has
 *     nothing to flush: it sends an empty intent through the sequencer, which returns
 *     once every write queued before it is durable, and answers numFiles: 1 (one log).
 *   - fsync {lock: true} holds writes above the engine: wire_cmd_submit hands every intent
 *     with ops to wire_admin_hold_write, which queues it here while the lock count is
 *     above zero; the last fsyncUnlock submits them in the order they came. The command
 *     waiting is pending, as for any write, so no I/O thread blocks. Reads go on.
 *   - killOp answers as mongod does and marks the operation (killPending in currentOp).
 *     It really interrupts only a write held by the fsync lock (11601 Interrupted, never
 *     written): a command otherwise runs to completion on its I/O thread, and nothing
 *     inside a running handler polls the mark yet.
 *   - There is no profiler: profile accepts level 0 (and reads the settings with -1);
 *     levels 1 and 2 are refused with 238. slowms is honoured: it is the threshold of the
 *     slow-operation line of the command log (log level 2).
 *   - top counts, per "db.coll", what the dispatcher ends (under the same lock that
 *     unlists the operation, so no second lock per command): counts and microseconds of
 *     reads, writes, queries, getMores, inserts, updates, removes and other commands.
 *     NEDB takes no collection locks, so readLock / writeLock count the reading and the
 *     writing commands.
 *
 * This file must not touch the store other than through eng_db.h reads at a snapshot
 * and the sequencer.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bq.h"
#include "bq_key.h"
#include "cmd_view.h"
#include "eng.h"
#include "wire_cmd.h"

/* ================================================================ state */

typedef struct top_counter {
    int64_t time, count;
} top_counter_t;

enum { TOP_TOTAL, TOP_READ, TOP_WRITE, TOP_QUERIES, TOP_GETMORE, TOP_INSERT, TOP_UPDATE,
       TOP_REMOVE, TOP_COMMANDS, TOP_N };

static const char *const top_names[TOP_N] = {"total",   "readLock", "writeLock",
                                             "queries", "getmore",  "insert",
                                             "update",  "remove",   "commands"};

typedef struct top_entry {
    char ns[ENG_NS_MAX + 1];
    top_counter_t c[TOP_N];
    struct top_entry *next;
} top_entry_t;

#define TOP_BUCKETS 256

typedef struct held_write {
    eng_intent_t *intent;
    struct held_write *next;
} held_write_t;

struct wire_admin {
    pthread_mutex_t lock;     /* everything below */
    wire_request_t *ops;      /* operations in progress, newest first */
    int64_t next_opid;
    top_entry_t *top[TOP_BUCKETS];
    size_t top_n;
    int64_t fsync_locks;      /* the fsync lock count */
    held_write_t *held, **held_tail;
    double sample_rate;
    _Atomic int64_t slow_ms;  /* read without the lock by every command's log line */
};

struct wire_admin *wire_admin_new(void)
{
    struct wire_admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    a->held_tail = &a->held;
    a->sample_rate = 1.0;
    atomic_init(&a->slow_ms, 100); /* mongod's default slowms */
    return a;
}

void wire_admin_destroy(struct wire_admin *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < TOP_BUCKETS; i++) {
        for (top_entry_t *e = a->top[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    for (held_write_t *h = a->held, *next; h; h = next) {
        next = h->next; /* released at shutdown: none are left in practice */
        free(h);
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}

int64_t wire_admin_slow_ms(const wire_server_t *server)
{
    return server->admin ? atomic_load(&server->admin->slow_ms) : 100;
}

/* ================================================================ operations in progress */

void wire_admin_op_begin(wire_server_t *server, wire_request_t *req)
{
    struct wire_admin *a = server->admin;
    if (!a)
        return;
    req->started_ms = wire_now_ms();
    pthread_mutex_lock(&a->lock);
    req->opid = ++a->next_opid;
    req->op_prev = NULL;
    req->op_next = a->ops;
    if (a->ops)
        a->ops->op_prev = req;
    a->ops = req;
    pthread_mutex_unlock(&a->lock);
}

/* The string value of `key` in cmd, or NULL. */
static const char *cmd_str(const bson_t *cmd, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, cmd, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

/* The collection a command names (its first field's string, getMore's `collection`), or
 * NULL for a command that names none. */
static const char *op_coll(const wire_request_t *req)
{
    const bson_t *cmd = req->ctx.cmd;
    if (!strcmp(req->ctx.name, "getMore"))
        return cmd_str(cmd, "collection");
    bson_iter_t it;
    if (!bson_iter_init(&it, cmd) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    const char *c = bson_iter_utf8(&it, NULL);
    return *c ? c : NULL;
}

/* How a command is seen by currentOp (its `op`, as mongod reports it) and by top (the
 * counter it adds to); any command not listed is "command", counted under commands. */
static const struct {
    const char *name, *op;
    int top;
} op_kinds[] = {
    {"aggregate", "command", TOP_QUERIES}, {"count", "command", TOP_QUERIES},
    {"delete", "remove", TOP_REMOVE},      {"distinct", "command", TOP_QUERIES},
    {"find", "query", TOP_QUERIES},        {"findAndModify", "command", TOP_UPDATE},
    {"getMore", "getmore", TOP_GETMORE},   {"insert", "insert", TOP_INSERT},
    {"update", "update", TOP_UPDATE},
};

static size_t op_kind(const char *name)
{
    size_t i = 0;
    while (i < sizeof op_kinds / sizeof op_kinds[0] && strcmp(op_kinds[i].name, name))
        i++;
    return i; /* the count: not listed */
}

static const char *op_kind_op(const char *name)
{
    size_t i = op_kind(name);
    return i < sizeof op_kinds / sizeof op_kinds[0] ? op_kinds[i].op : "command";
}

static unsigned top_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % TOP_BUCKETS;
}

/* What one operation adds to top: the counters `slots` of namespace `ns`. */
typedef struct top_add {
    char ns[ENG_NS_MAX + 1];
    size_t len;
    int slots[3];
} top_add_t;

/* Fills *t for req (without the admin lock); false for a command top does not count. */
static bool top_prepare(const wire_request_t *req, top_add_t *t)
{
    const char *coll = op_coll(req);
    if (!coll || !req->cmd)
        return false;
    int len = snprintf(t->ns, sizeof t->ns, "%s.%s", req->ctx.db, coll);
    if (len < 0 || (size_t)len >= sizeof t->ns)
        return false;
    t->len = (size_t)len;
    size_t k = op_kind(req->cmd->name);
    t->slots[0] = TOP_TOTAL;
    t->slots[1] = (req->cmd->flags & WIRE_CMD_WRITE) ? TOP_WRITE : TOP_READ;
    t->slots[2] = k < sizeof op_kinds / sizeof op_kinds[0] ? op_kinds[k].top : TOP_COMMANDS;
    return true;
}

/* Adds one operation to top's counters of its namespace (the admin lock held). */
static void top_count(struct wire_admin *a, const top_add_t *t, uint64_t micros)
{
    const char *ns = t->ns;
    unsigned b = top_hash(ns);
    top_entry_t *e = a->top[b];
    while (e && strcmp(e->ns, ns))
        e = e->next;
    if (!e) {
        if (a->top_n >= 100000)
            return; /* a bound on memory: namespaces past it are not counted */
        e = calloc(1, sizeof *e);
        if (!e)
            return;
        memcpy(e->ns, ns, t->len + 1);
        e->next = a->top[b];
        a->top[b] = e;
        a->top_n++;
    }
    for (int i = 0; i < 3; i++) {
        e->c[t->slots[i]].time += (int64_t)micros;
        e->c[t->slots[i]].count++;
    }
}

void wire_admin_op_end(wire_server_t *server, wire_request_t *req, uint64_t micros)
{
    struct wire_admin *a = server->admin;
    if (!a || !req->opid)
        return;
    top_add_t t;
    bool counted = top_prepare(req, &t); /* outside the lock every command takes */
    pthread_mutex_lock(&a->lock);
    if (req->op_prev)
        req->op_prev->op_next = req->op_next;
    else
        a->ops = req->op_next;
    if (req->op_next)
        req->op_next->op_prev = req->op_prev;
    req->op_prev = req->op_next = NULL;
    req->opid = 0;
    if (counted)
        top_count(a, &t, micros);
    pthread_mutex_unlock(&a->lock);
}

/* One operation as currentOp shows it (the admin lock held: req cannot end meanwhile). */
static bson_t *op_doc(const wire_server_t *server, const wire_request_t *req, int64_t now_ms,
                      uint64_t now_us)
{
    bson_t *d = bson_new();
    char buf[96];
    BSON_APPEND_UTF8(d, "type", "op");
    BSON_APPEND_UTF8(d, "host", server->host);
    snprintf(buf, sizeof buf, "conn%llu", (unsigned long long)req->ctx.conn->id);
    BSON_APPEND_UTF8(d, "desc", buf);
    bq_num_append(d, "connectionId", (int64_t)req->ctx.conn->id);
    BSON_APPEND_UTF8(d, "client", req->ctx.conn->peer);
    BSON_APPEND_BOOL(d, "active", true);
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char date[40];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, sizeof buf, "%s.%03d+00:00", date, (int)(now_ms % 1000));
    BSON_APPEND_UTF8(d, "currentOpTime", buf);
    BSON_APPEND_BOOL(d, "threaded", true);
    bq_num_append(d, "opid", req->opid);
    bson_iter_t it;
    if (bson_iter_init_find(&it, req->ctx.cmd, "lsid") && BSON_ITER_HOLDS_DOCUMENT(&it))
        bson_append_iter(d, "lsid", -1, &it);
    uint64_t us = now_us > req->t0 ? now_us - req->t0 : 0;
    BSON_APPEND_INT64(d, "secs_running", (int64_t)(us / 1000000));
    BSON_APPEND_INT64(d, "microsecs_running", (int64_t)us);
    BSON_APPEND_UTF8(d, "op", op_kind_op(req->cmd->name));
    const char *coll = op_coll(req);
    char *ns = bson_strdup_printf("%s.%s", req->ctx.db, coll ? coll : "$cmd");
    BSON_APPEND_UTF8(d, "ns", ns);
    bson_free(ns);
    BSON_APPEND_BOOL(d, "redacted", false);
    BSON_APPEND_DOCUMENT(d, "command", req->ctx.cmd);
    BSON_APPEND_INT32(d, "numYields", 0);
    bson_t empty = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(d, "locks", &empty);
    BSON_APPEND_BOOL(d, "waitingForLock", req->held);
    BSON_APPEND_DOCUMENT(d, "lockStats", &empty);
    BSON_APPEND_BOOL(d, "waitingForFlowControl", false);
    BSON_APPEND_DOCUMENT(d, "flowControlStats", &empty);
    if (atomic_load(&req->killed))
        BSON_APPEND_BOOL(d, "killPending", true);
    return d;
}

/* idle_connections ($all, idleConnections) would add the connections that run nothing;
 * their lists belong to the I/O threads, so only active operations are listed. */
void wire_admin_current_ops(wire_server_t *server, bool idle_connections, bson_t ***docs,
                            size_t *n)
{
    (void)idle_connections;
    struct wire_admin *a = server->admin;
    *docs = NULL;
    *n = 0;
    if (!a)
        return;
    int64_t now_ms = wire_now_ms();
    uint64_t now_us = wire_server_uptime_micros(server);
    pthread_mutex_lock(&a->lock);
    for (wire_request_t *r = a->ops; r; r = r->op_next)
        (*n)++;
    *docs = calloc(*n ? *n : 1, sizeof **docs);
    if (!*docs)
        abort();
    /* oldest first, as they started: the list is newest first */
    size_t i = *n;
    for (wire_request_t *r = a->ops; r; r = r->op_next)
        (*docs)[--i] = op_doc(server, r, now_ms, now_us);
    pthread_mutex_unlock(&a->lock);
}

/* The fields of the currentOp command that are not part of its filter. */
static bool current_op_option(const char *key)
{
    static const char *const skip[] = {"currentOp", "$all", "$ownOps", "$truncateOps"};
    if (wire_generic_arg(key))
        return true;
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (!strcmp(key, skip[i]))
            return true;
    return false;
}

/* {currentOp: 1, $all?, $ownOps?, <filter fields>...}: {inprog: [operations matching the
 * filter]}. NEDB has no users: $ownOps lists every operation, as allUsers does. */
bool cmd_current_op(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_iter_t it;
    bool all = false;
    bson_iter_init(&it, ctx->cmd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "$all"))
            all = bson_iter_as_bool(&it);
        if (!current_op_option(k))
            bson_append_iter(&filter, k, -1, &it);
    }
    bq_match_t *m = wire_match_compile(ctx, &filter, NULL, err);
    bson_destroy(&filter);
    if (!m)
        return false;
    bson_t **docs;
    size_t n;
    wire_admin_current_ops(ctx->server, all, &docs, &n);
    bson_t arr;
    uint32_t k = 0;
    BSON_APPEND_ARRAY_BEGIN(ctx->reply, "inprog", &arr);
    for (size_t i = 0; i < n; i++) {
        if (bq_match_eval(m, docs[i])) {
            char key[16];
            const char *kp;
            bson_uint32_to_string(k++, &kp, key, sizeof key);
            BSON_APPEND_DOCUMENT(&arr, kp, docs[i]);
        }
        bson_destroy(docs[i]);
    }
    free(docs);
    bson_append_array_end(ctx->reply, &arr);
    bq_match_destroy(m);
    return true;
}

/* ================================================================ killOp */

/* The held write of `req` taken out of the hold list, or NULL (the admin lock held). */
static eng_intent_t *held_take(struct wire_admin *a, const wire_request_t *req)
{
    for (held_write_t **p = &a->held; *p; p = &(*p)->next) {
        if ((*p)->intent->owner != req)
            continue;
        held_write_t *h = *p;
        *p = h->next;
        if (a->held_tail == &h->next)
            a->held_tail = p;
        eng_intent_t *in = h->intent;
        free(h);
        return in;
    }
    return NULL;
}

/* Completes an intent that never reached the sequencer with err (as eng_submit would
 * have reset it, then failed it as a whole). */
static void intent_fail(eng_intent_t *in, int32_t code, const char *msg)
{
    in->conflict = false;
    in->applied = 0;
    in->first_seq = in->last_seq = -1;
    for (size_t i = 0; i < in->nops; i++)
        in->ops[i].seq = -1;
    bq_error_clear(&in->err);
    bq_error_set(&in->err, code, "%s", msg);
    in->done(in);
}

/* {killOp: 1, op: <opid>}: {info: "attempting to kill op"} whether or not the operation
 * exists, as mongod answers. */
bool cmd_kill_op(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, ctx->cmd, "op")) {
        bq_error_set(err, BQ_ERR_NoSuchKey, "Missing expected field \"op\"");
        return false;
    }
    if (!BSON_ITER_HOLDS_NUMBER(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "Expected field \"op\" to have numeric type, but found %s",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    int64_t opid = bson_iter_as_int64(&it);
    if (BSON_ITER_HOLDS_DOUBLE(&it) && (double)opid != bson_iter_double(&it)) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "Expected field \"op\" to have a value exactly representable as a "
                     "64-bit integer, but found op: %g",
                     bson_iter_double(&it));
        return false;
    }
    struct wire_admin *a = ctx->server->admin;
    eng_intent_t *killed = NULL;
    if (a) {
        pthread_mutex_lock(&a->lock);
        for (wire_request_t *r = a->ops; r; r = r->op_next) {
            if (r->opid != opid || r == ctx->req)
                continue;
            atomic_store(&r->killed, true);
            if (r->held && (killed = held_take(a, r)))
                r->held = false;
            break;
        }
        pthread_mutex_unlock(&a->lock);
    }
    wire_log(1, "conn%llu: going to kill op: %lld", (unsigned long long)ctx->conn->id,
             (long long)opid);
    if (killed)
        intent_fail(killed, BQ_ERR_Interrupted, "operation was interrupted");
    BSON_APPEND_UTF8(ctx->reply, "info", "attempting to kill op");
    return true;
}

/* ================================================================ profile */

static bool number_arg(bson_iter_t *it, const char *name, double *out, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_NUMBER(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'profile.%s' is the wrong type '%s', expected types "
                     "'[long, int, decimal, double]'",
                     name, bq_type_name(bson_iter_type(it)));
        return false;
    }
    *out = bson_iter_as_double(it);
    return true;
}

/* {profile: -1 | 0 | 1 | 2, slowms?, sampleRate?, filter?}: the settings before the
 * command, {was, slowms, sampleRate}. Only level 0 exists; 1 and 2 are refused (238)
 * before anything changes. */
bool cmd_profile(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    struct wire_admin *a = ctx->server->admin;
    bson_iter_t it;
    double level, slowms = 0, rate = 0;
    bool has_slowms = false, has_rate = false;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (!number_arg(&it, "profile", &level, err))
        return false;
    if (level != -1 && level != 0 && level != 1 && level != 2) {
        bq_error_set(err, BQ_ERR_BadValue, "Invalid profiling level: %g", level);
        return false;
    }
    if (bson_iter_init_find(&it, ctx->cmd, "slowms")) {
        if (!number_arg(&it, "slowms", &slowms, err))
            return false;
        has_slowms = true;
    }
    if (bson_iter_init_find(&it, ctx->cmd, "sampleRate")) {
        if (!number_arg(&it, "sampleRate", &rate, err))
            return false;
        if (!(rate >= 0.0 && rate <= 1.0)) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "'sampleRate' must be between 0.0 and 1.0 inclusive");
            return false;
        }
        has_rate = true;
    }
    if (level == 1 || level == 2) {
        bq_error_set(err, BQ_ERR_NotImplemented,
                     "profiling level %d is not supported by NEDB: there is no profiler and "
                     "no system.profile collection; level 0 with slowms sets the threshold "
                     "of the slow-operation log line",
                     (int)level);
        return false;
    }
    if (bson_iter_init_find(&it, ctx->cmd, "filter") &&
        !(BSON_ITER_HOLDS_UTF8(&it) && !strcmp(bson_iter_utf8(&it, NULL), "unset"))) {
        bq_error_set(err, BQ_ERR_NotImplemented,
                     "a profile filter is not supported by NEDB (only \"unset\")");
        return false;
    }
    int64_t was_slowms = wire_admin_slow_ms(ctx->server);
    double was_rate = 1.0;
    if (a) {
        pthread_mutex_lock(&a->lock);
        was_rate = a->sample_rate;
        if (level == 0 && has_rate)
            a->sample_rate = rate;
        pthread_mutex_unlock(&a->lock);
        /* slowms is set with -1 too, as mongod does */
        if (has_slowms)
            atomic_store(&a->slow_ms, (int64_t)slowms);
    }
    BSON_APPEND_INT32(ctx->reply, "was", 0);
    bq_num_append(ctx->reply, "slowms", was_slowms);
    BSON_APPEND_DOUBLE(ctx->reply, "sampleRate", was_rate);
    return true;
}

/* ================================================================ fsync */

bool wire_admin_hold_write(wire_server_t *server, eng_intent_t *intent)
{
    struct wire_admin *a = server->admin;
    if (!a || intent->nops == 0) /* an intent without ops is a barrier (fsync itself) */
        return false;
    pthread_mutex_lock(&a->lock);
    bool hold = a->fsync_locks > 0;
    if (hold) {
        held_write_t *h = malloc(sizeof *h);
        if (!h)
            abort();
        h->intent = intent;
        h->next = NULL;
        *a->held_tail = h;
        a->held_tail = &h->next;
        ((wire_request_t *)intent->owner)->held = true;
    }
    pthread_mutex_unlock(&a->lock);
    return hold;
}

/* Takes every held write out of the list (the admin lock held); the caller submits them
 * after unlocking. */
static held_write_t *held_detach(struct wire_admin *a)
{
    held_write_t *h = a->held;
    for (held_write_t *p = h; p; p = p->next)
        ((wire_request_t *)p->intent->owner)->held = false;
    a->held = NULL;
    a->held_tail = &a->held;
    return h;
}

static void held_submit(wire_server_t *server, held_write_t *h)
{
    while (h) {
        held_write_t *next = h->next;
        eng_submit(server->db, h->intent);
        free(h);
        h = next;
    }
}

void wire_admin_release_writes(wire_server_t *server)
{
    struct wire_admin *a = server->admin;
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->fsync_locks = 0;
    held_write_t *h = held_detach(a);
    pthread_mutex_unlock(&a->lock);
    held_submit(server, h);
}

bool wire_admin_fsync_locked(wire_server_t *server)
{
    struct wire_admin *a = server->admin;
    if (!a)
        return false;
    pthread_mutex_lock(&a->lock);
    bool locked = a->fsync_locks > 0;
    pthread_mutex_unlock(&a->lock);
    return locked;
}

/* Drops one fsync lock, the last one letting the held writes through; returns the count
 * left, or -1 when there was no lock to drop. */
static int64_t fsync_unlock_one(wire_server_t *server)
{
    struct wire_admin *a = server->admin;
    if (!a)
        return -1;
    pthread_mutex_lock(&a->lock);
    int64_t left = a->fsync_locks > 0 ? --a->fsync_locks : -1;
    held_write_t *h = left == 0 ? held_detach(a) : NULL;
    pthread_mutex_unlock(&a->lock);
    held_submit(server, h);
    return left;
}

typedef struct fsync_state {
    eng_intent_t intent; /* no ops: a barrier through the sequencer */
    bool lock;
} fsync_state_t;

static bool fsync_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    fsync_state_t *st = ctx->state;
    if (st->intent.err.code) {
        if (st->lock)
            fsync_unlock_one(ctx->server);
        *err = st->intent.err;
        return false;
    }
    if (!st->lock) {
        BSON_APPEND_INT32(ctx->reply, "numFiles", 1);
        return true;
    }
    struct wire_admin *a = ctx->server->admin;
    pthread_mutex_lock(&a->lock);
    int64_t count = a->fsync_locks;
    pthread_mutex_unlock(&a->lock);
    BSON_APPEND_UTF8(ctx->reply, "info", "now locked against writes, use db.fsyncUnlock() to "
                                         "unlock");
    BSON_APPEND_INT64(ctx->reply, "lockCount", count);
    BSON_APPEND_UTF8(ctx->reply, "seeAlso", "http://dochub.mongodb.org/core/fsynccommand");
    wire_log(0, "fsync lock taken (lock count %lld): writes are held until fsyncUnlock",
             (long long)count);
    return true;
}

/* {fsync: 1, lock?: bool}: once every write queued before it is durable, {numFiles: 1};
 * with lock: true the lock count goes up first (writes from then on are held) and the
 * reply is {info, lockCount, seeAlso}. */
bool cmd_fsync(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    bool lock = bson_iter_init_find(&it, ctx->cmd, "lock") && bson_iter_as_bool(&it);
    struct wire_admin *a = ctx->server->admin;
    if (lock && !a) {
        bq_error_set(err, BQ_ERR_IllegalOperation, "fsync lock is not available");
        return false;
    }
    fsync_state_t *st = calloc(1, sizeof *st);
    if (!st)
        abort();
    st->lock = lock;
    ctx->state = st;
    ctx->state_free = free;
    if (lock) {
        pthread_mutex_lock(&a->lock);
        a->fsync_locks++;
        pthread_mutex_unlock(&a->lock);
    }
    wire_cmd_submit(ctx, &st->intent, fsync_done);
    return true;
}

/* {fsyncUnlock: 1}: {info: "fsyncUnlock completed", lockCount}; the last one lets the
 * held writes through, in the order they came. */
bool cmd_fsync_unlock(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    int64_t left = fsync_unlock_one(ctx->server); /* checks and drops under one lock */
    if (left < 0) {
        bq_error_set(err, BQ_ERR_IllegalOperation, "fsyncUnlock called when not locked");
        return false;
    }
    wire_log(0, "fsyncUnlock completed, lock count now %lld", (long long)left);
    BSON_APPEND_UTF8(ctx->reply, "info", "fsyncUnlock completed");
    BSON_APPEND_INT64(ctx->reply, "lockCount", left);
    return true;
}

/* ================================================================ standalone refusals */

/* A standalone mongod refuses both (rwc_defaults_commands.cpp: 51300; replication
 * commands: 76 NoReplicationEnabled). */
bool cmd_get_default_rw_concern(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)ctx;
    bq_error_set(err, 51300, "'getDefaultRWConcern' is not supported on standalone nodes.");
    return false;
}

bool cmd_repl_set_get_status(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)ctx;
    bq_error_set(err, BQ_ERR_NoReplicationEnabled, "not running with --replSet");
    return false;
}

/* ================================================================ top */

/* {top: 1}: {totals: {note, "<db.coll>": {total, readLock, writeLock, queries, getmore,
 * insert, update, remove, commands}: each {time (microseconds), count}}}. */
bool cmd_top(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    struct wire_admin *a = ctx->server->admin;
    bson_t totals, ns, c;
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "totals", &totals);
    BSON_APPEND_UTF8(&totals, "note", "all times in microseconds");
    if (a) {
        pthread_mutex_lock(&a->lock);
        /* sorted by namespace, as mongod's map is */
        top_entry_t **all = calloc(a->top_n ? a->top_n : 1, sizeof *all);
        if (!all)
            abort();
        size_t n = 0;
        for (size_t b = 0; b < TOP_BUCKETS; b++)
            for (top_entry_t *e = a->top[b]; e; e = e->next)
                all[n++] = e;
        for (size_t i = 1; i < n; i++) { /* insertion sort: top is rarely run */
            top_entry_t *e = all[i];
            size_t j = i;
            for (; j > 0 && strcmp(all[j - 1]->ns, e->ns) > 0; j--)
                all[j] = all[j - 1];
            all[j] = e;
        }
        for (size_t i = 0; i < n; i++) {
            BSON_APPEND_DOCUMENT_BEGIN(&totals, all[i]->ns, &ns);
            for (int k = 0; k < TOP_N; k++) {
                BSON_APPEND_DOCUMENT_BEGIN(&ns, top_names[k], &c);
                BSON_APPEND_INT64(&c, "time", all[i]->c[k].time);
                BSON_APPEND_INT64(&c, "count", all[i]->c[k].count);
                bson_append_document_end(&ns, &c);
            }
            bson_append_document_end(&totals, &ns);
        }
        free(all);
        pthread_mutex_unlock(&a->lock);
    }
    bson_append_document_end(ctx->reply, &totals);
    return true;
}

/* ================================================================ dataSize */

/* {dataSize: "<db>.<coll>", estimate?}: {size, numObjects, millis} of the collection at
 * the newest snapshot (zeros for a missing collection or a view, as mongod). The range
 * form (keyPattern, min, max) is refused with 238. */
bool cmd_data_size(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    int64_t t0 = wire_now_ms();
    bson_iter_t it;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'dataSize' is the wrong type '%s', expected type 'string'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    const char *ns = bson_iter_utf8(&it, NULL);
    const char *dot = strchr(ns, '.');
    char db[64];
    if (!dot || dot == ns || (size_t)(dot - ns) >= sizeof db || !dot[1]) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid namespace specified '%s'", ns);
        return false;
    }
    memcpy(db, ns, (size_t)(dot - ns));
    db[dot - ns] = '\0';
    if (!wire_ns_check(db, dot + 1, err))
        return false;
    static const char *const range[] = {"keyPattern", "min", "max"};
    for (size_t i = 0; i < sizeof range / sizeof range[0]; i++) {
        if (bson_has_field(ctx->cmd, range[i])) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "dataSize over a key range (keyPattern, min, max) is not supported "
                         "by NEDB; give the namespace alone");
            return false;
        }
    }
    int64_t snap = eng_db_snapshot(ctx->server->db);
    uint64_t count = 0, bytes = 0;
    eng_coll_t *c = eng_coll_get(ctx->server->db, db, dot + 1, snap);
    if (c && !wire_view_is(ctx->server->db, db, dot + 1, snap))
        eng_coll_stats(c, snap, &count, &bytes);
    bq_num_append(ctx->reply, "size", (int64_t)bytes);
    bq_num_append(ctx->reply, "numObjects", (int64_t)count);
    BSON_APPEND_INT32(ctx->reply, "millis", (int32_t)(wire_now_ms() - t0));
    return true;
}

/* ================================================================ validate */

/*
 * What validate checks (NEDB keeps documents and index postings in memory, rebuilt from
 * the log at open, so there is no on-disk B-tree to walk):
 *   1. A scan of the collection at the newest snapshot: every document reads back (an old
 *      version that cannot be read from the log is a corrupt record), every document has
 *      an _id, and no two have the same _id (compared as MongoDB compares values).
 *   2. For every secondary index, the keys the scan's documents give it (MongoDB's rules:
 *      each element of an array, null for a missing field, undefined for an empty array,
 *      documents left out by sparse or a partial filter; distinct per document) are
 *      counted into keysPerIndex. For a single-field index without collation or partial
 *      filter, whose postings the engine answers lookups from, one lookup of every
 *      distinct key the scan saw must find exactly as many entries and documents as the
 *      scan counted (null, undefined and regex keys are not looked up); a difference makes
 *      the index, and the collection, invalid.
 *   3. With full: true, the whole log's hash chain is walked as nedbVerify does: a chain
 *      that does not verify makes the result invalid, with the first bad seq and why.
 * repair: true is refused: NEDB never rewrites what it stored (DESIGN.md section 4).
 */

typedef struct key_rec {
    uint8_t *data;
    size_t len;
    bson_value_t v; /* shallow: borrows from a document, valid until eng_db_close */
} key_rec_t;

typedef struct key_list {
    key_rec_t *k;
    size_t n, cap;
} key_list_t;

static void key_list_add(key_list_t *l, const bq_key_t *key, const bson_value_t *v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->k = realloc(l->k, l->cap * sizeof *l->k);
        if (!l->k)
            abort();
    }
    key_rec_t *r = &l->k[l->n++];
    r->len = key->len;
    r->data = malloc(key->len ? key->len : 1);
    if (!r->data)
        abort();
    if (key->len)
        memcpy(r->data, key->data, key->len);
    if (v)
        r->v = *v;
    else
        r->v.value_type = BSON_TYPE_EOD;
}

static void key_list_cleanup(key_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->k[i].data);
    free(l->k);
    memset(l, 0, sizeof *l);
}

static int key_rec_cmp(const void *pa, const void *pb)
{
    const key_rec_t *a = pa, *b = pb;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->len ? memcmp(a->data, b->data, a->len) : 0;
}

static void key_list_sort(key_list_t *l)
{
    if (l->n > 1)
        qsort(l->k, l->n, sizeof *l->k, key_rec_cmp);
}

/* The values one field of an index key takes in a document (eng_index.c's rules). */
typedef struct field_vals {
    bson_value_t v[64];
    size_t n;
    size_t total;   /* values seen, past the 64 kept too */
    bool present;
} field_vals_t;

static void field_vals_add(field_vals_t *f, const bson_value_t *v)
{
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    if (f->n < sizeof f->v / sizeof f->v[0])
        f->v[f->n++] = v ? *v : null_value;
    f->total++;
}

static bool field_vals_hit(void *p, const bq_path_hit_t *hit)
{
    field_vals_t *f = p;
    if (!hit->value) {
        field_vals_add(f, NULL);
        return false;
    }
    f->present = true;
    if (hit->value->value_type != BSON_TYPE_ARRAY) {
        field_vals_add(f, hit->value);
        return false;
    }
    bson_t arr;
    bson_iter_t it;
    size_t before = f->total;
    if (bson_init_static(&arr, hit->value->value.v_doc.data, hit->value->value.v_doc.data_len) &&
        bson_iter_init(&it, &arr)) {
        while (bson_iter_next(&it))
            field_vals_add(f, bson_iter_value(&it));
    }
    if (f->total == before) {
        static const bson_value_t undefined_value = {.value_type = BSON_TYPE_UNDEFINED};
        field_vals_add(f, &undefined_value);
    }
    return false;
}

/* The distinct values among f's (by MongoDB equality), compacted in place. */
static void field_vals_distinct(field_vals_t *f)
{
    bq_key_t a, b;
    bq_key_init(&a);
    bq_key_init(&b);
    size_t out = 0;
    for (size_t i = 0; i < f->n; i++) {
        bq_key_build(&a, &f->v[i]);
        bool seen = false;
        for (size_t j = 0; j < out && !seen; j++) {
            bq_key_build(&b, &f->v[j]);
            seen = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
        }
        if (!seen)
            f->v[out++] = f->v[i];
    }
    f->n = out;
    bq_key_cleanup(&a);
    bq_key_cleanup(&b);
}

/* One secondary index under validation. */
typedef struct vindex {
    const bson_t *spec;
    const char *name;
    char **fields;
    size_t nfields;
    bool sparse;
    bq_match_t *partial;
    bool lookup;        /* single field, no collation, no partial filter */
    int64_t keys;       /* keys the scan gave it */
    key_list_t seen;    /* lookup: every (document, distinct value) the scan gave */
    char error[256];    /* why it is invalid, "" when valid */
} vindex_t;

static void vindex_cleanup(vindex_t *x)
{
    for (size_t i = 0; i < x->nfields; i++)
        bson_free(x->fields[i]);
    free(x->fields);
    bq_match_destroy(x->partial);
    key_list_cleanup(&x->seen);
}

static void vindex_init(vindex_t *x, const bson_t *spec)
{
    memset(x, 0, sizeof *x);
    x->spec = spec;
    x->name = cmd_str(spec, "name");
    if (!x->name)
        x->name = "";
    bson_iter_t it, k;
    if (bson_iter_init_find(&it, spec, "key") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &k)) {
        while (bson_iter_next(&k)) {
            x->fields = realloc(x->fields, (x->nfields + 1) * sizeof *x->fields);
            if (!x->fields)
                abort();
            x->fields[x->nfields++] = bson_strdup(bson_iter_key(&k));
        }
    }
    x->sparse = bson_iter_init_find(&it, spec, "sparse") && bson_iter_as_bool(&it);
    bool collated = bson_has_field(spec, "collation");
    if (bson_iter_init_find(&it, spec, "partialFilterExpression") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t f;
        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&f, data, len)) {
            bq_error_t e;
            x->partial = bq_match_compile(&f, &e);
        }
        if (!x->partial)
            snprintf(x->error, sizeof x->error, "index '%s': its partialFilterExpression "
                                                "does not compile", x->name);
    }
    x->lookup = x->nfields == 1 && !collated && !bson_has_field(spec, "partialFilterExpression");
}

/* Counts the keys document doc gives index x (and records them for the lookup check). */
static void vindex_doc(vindex_t *x, const bson_t *doc)
{
    if (x->partial && !bq_match_eval(x->partial, doc))
        return;
    if (x->nfields == 0)
        return;
    field_vals_t *f = calloc(x->nfields, sizeof *f);
    if (!f)
        abort();
    bool any = false;
    int64_t keys = 1;
    for (size_t i = 0; i < x->nfields; i++) {
        bq_path_walk(doc, x->fields[i], 0, field_vals_hit, &f[i]);
        if (f[i].total == 0)
            field_vals_add(&f[i], NULL);
        any = any || f[i].present;
        if (f[i].total <= sizeof f[i].v / sizeof f[i].v[0])
            field_vals_distinct(&f[i]);
        keys *= (int64_t)(f[i].total <= sizeof f[i].v / sizeof f[i].v[0] ? f[i].n
                                                                         : f[i].total);
    }
    if (!(x->sparse && !any)) {
        x->keys += keys;
        if (x->lookup && f[0].total <= sizeof f[0].v / sizeof f[0].v[0]) {
            bq_key_t k;
            bq_key_init(&k);
            for (size_t i = 0; i < f[0].n; i++) {
                if (!eng_index_value_ok(&f[0].v[i]))
                    continue;
                bq_key_build(&k, &f[0].v[i]);
                key_list_add(&x->seen, &k, &f[0].v[i]);
            }
            bq_key_cleanup(&k);
        } else {
            x->lookup = false; /* a document with too many values: count only */
        }
    }
    free(f);
}

/* Check 2: one lookup of every distinct key the scan saw; the entries and the documents
 * found must be the ones the scan counted. */
static void vindex_check(vindex_t *x, eng_coll_t *c, int64_t snap, size_t docs_with_keys)
{
    if (!x->lookup || x->error[0])
        return;
    key_list_sort(&x->seen);
    size_t ndistinct = 0;
    bson_value_t *vals = malloc((x->seen.n ? x->seen.n : 1) * sizeof *vals);
    if (!vals)
        abort();
    for (size_t i = 0; i < x->seen.n; i++)
        if (i == 0 || key_rec_cmp(&x->seen.k[i - 1], &x->seen.k[i]) != 0)
            vals[ndistinct++] = x->seen.k[i].v;
    eng_doc_t *found = NULL;
    size_t nfound = 0, entries = 0;
    if (ndistinct &&
        eng_coll_index_lookup(c, snap, x->fields[0], vals, ndistinct, &found, &nfound,
                              &entries)) {
        if (entries != x->seen.n || nfound != docs_with_keys)
            snprintf(x->error, sizeof x->error,
                     "index '%s' has %zu entries in %zu documents for the keys that a scan "
                     "finds %zu times in %zu documents",
                     x->name, entries, nfound, x->seen.n, docs_with_keys);
    }
    free(found);
    free(vals);
}

/* validate's errors: messages of its own (formatted into buf) or borrowed (an index's). */
typedef struct verrors {
    const char *msg[8];
    char buf[4][640];
    size_t n, nbuf;
} verrors_t;

static void verrors_add(verrors_t *e, const char *msg)
{
    if (e->n < sizeof e->msg / sizeof e->msg[0])
        e->msg[e->n++] = msg;
}

static void verrors_addf(verrors_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void verrors_addf(verrors_t *e, const char *fmt, ...)
{
    if (e->nbuf == sizeof e->buf / sizeof e->buf[0])
        return;
    char *b = e->buf[e->nbuf++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof e->buf[0], fmt, ap);
    va_end(ap);
    verrors_add(e, b);
}

static void append_str_array(bson_t *doc, const char *key, const char *const *s, size_t n)
{
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(doc, key, &arr);
    for (size_t i = 0; i < n; i++) {
        char k[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, k, sizeof k);
        BSON_APPEND_UTF8(&arr, kp, s[i]);
    }
    bson_append_array_end(doc, &arr);
}

/* {validate: <coll>, full?, repair?, metadata?, checkBSONConformance?, background?}:
 * {ns, nInvalidDocuments, nNonCompliantDocuments, nrecords, nIndexes, keysPerIndex,
 * indexDetails, valid, repaired, warnings, errors, extraIndexEntries, missingIndexEntries,
 * corruptRecords, advice?} as mongod 7.0 gives them. Errors: 26 for a missing collection,
 * 166 for a view, 238 for repair: true. */
bool cmd_validate(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    bool full, repair, metadata, flag;
    if (!wire_arg_coll(ctx, false, &coll, err) ||
        !wire_arg_bool(ctx, "full", false, &full, err) ||
        !wire_arg_bool(ctx, "repair", false, &repair, err) ||
        !wire_arg_bool(ctx, "metadata", false, &metadata, err) ||
        !wire_arg_bool(ctx, "checkBSONConformance", false, &flag, err) ||
        !wire_arg_bool(ctx, "background", false, &flag, err))
        return false;
    if (repair) {
        bq_error_set(err, BQ_ERR_NotImplemented,
                     "validate with repair: true is not supported by NEDB: the log is never "
                     "rewritten; run validate without repair to see what is wrong");
        return false;
    }
    if (!wire_view_refuse(ctx, coll, "validate", err))
        return false;
    eng_db_t *db = ctx->server->db;
    int64_t snap = eng_db_snapshot(db);
    eng_coll_t *c = eng_coll_get(db, ctx->db, coll, snap);
    if (!c) {
        bq_error_set(err, BQ_ERR_NamespaceNotFound,
                     "Collection '%s.%s' does not exist to validate.", ctx->db, coll);
        return false;
    }
    const bson_t **specs;
    size_t nix = eng_coll_indexes(c, snap, &specs);
    vindex_t *ix = calloc(nix ? nix : 1, sizeof *ix);
    size_t *with_keys = calloc(nix ? nix : 1, sizeof *with_keys);
    if (!ix || !with_keys)
        abort();
    for (size_t i = 0; i < nix; i++)
        vindex_init(&ix[i], specs[i]);

    /* check 1 (and the keys of check 2) */
    verrors_t errors = {0};
    bool ok = true;
    int64_t nrecords = 0, no_id = 0, corrupt = 0, dup_ids = 0;
    key_list_t ids = {0};
    if (!metadata) {
        eng_scan_t scan;
        eng_doc_t d;
        bq_key_t k;
        bq_key_init(&k);
        eng_scan_init(&scan, c, snap, false);
        while (eng_scan_next(&scan, &d)) {
            bson_t doc;
            bson_iter_t it;
            nrecords++;
            if (!bson_init_static(&doc, d.data, d.len)) {
                corrupt++;
                continue;
            }
            if (bson_iter_init_find(&it, &doc, "_id")) {
                bq_key_build(&k, bson_iter_value(&it));
                key_list_add(&ids, &k, NULL);
            } else {
                no_id++;
            }
            for (size_t i = 0; i < nix; i++) {
                size_t before = ix[i].seen.n;
                vindex_doc(&ix[i], &doc);
                if (ix[i].seen.n > before)
                    with_keys[i]++;
            }
        }
        bq_key_cleanup(&k);
        const bq_error_t *se = eng_scan_error(&scan);
        if (se) {
            corrupt++;
            verrors_addf(&errors,
                         "a document version could not be read back from the log: %.480s",
                         se->message);
        }
        key_list_sort(&ids);
        for (size_t i = 1; i < ids.n; i++)
            if (key_rec_cmp(&ids.k[i - 1], &ids.k[i]) == 0)
                dup_ids++;
        key_list_cleanup(&ids);
        if (no_id)
            verrors_addf(&errors, "%lld documents have no _id", (long long)no_id);
        if (dup_ids)
            verrors_addf(&errors, "%lld documents share an _id with another document",
                         (long long)dup_ids);
        for (size_t i = 0; i < nix; i++)
            vindex_check(&ix[i], c, snap, with_keys[i]);
    }
    for (size_t i = 0; i < nix; i++)
        if (ix[i].error[0])
            verrors_add(&errors, ix[i].error);

    /* check 3 */
    eng_verify_report_t rep;
    memset(&rep, 0, sizeof rep);
    rep.valid = true;
    if (full && !(ok = eng_db_verify(db, &rep, err)))
        goto out;
    if (!rep.valid)
        verrors_addf(&errors, "the log's hash chain does not verify at seq %llu (%s): %.480s",
                     (unsigned long long)rep.bad_seq, eng_verify_reason_name(rep.reason),
                     rep.detail);

    bool valid = errors.n == 0;
    bson_t *r = ctx->reply, sub, det;
    char *ns = bson_strdup_printf("%s.%s", ctx->db, coll);
    BSON_APPEND_UTF8(r, "ns", ns);
    bson_free(ns);
    BSON_APPEND_INT32(r, "nInvalidDocuments", 0);
    BSON_APPEND_INT32(r, "nNonCompliantDocuments", 0);
    bq_num_append(r, "nrecords", nrecords);
    BSON_APPEND_INT32(r, "nIndexes", (int32_t)(nix + 1));
    BSON_APPEND_DOCUMENT_BEGIN(r, "keysPerIndex", &sub);
    bq_num_append(&sub, "_id_", nrecords - no_id);
    for (size_t i = 0; i < nix; i++)
        bq_num_append(&sub, ix[i].name, ix[i].keys);
    bson_append_document_end(r, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(r, "indexDetails", &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&sub, "_id_", &det);
    BSON_APPEND_BOOL(&det, "valid", dup_ids == 0 && no_id == 0);
    bson_append_document_end(&sub, &det);
    for (size_t i = 0; i < nix; i++) {
        BSON_APPEND_DOCUMENT_BEGIN(&sub, ix[i].name, &det);
        BSON_APPEND_BOOL(&det, "valid", ix[i].error[0] == '\0');
        bson_append_document_end(&sub, &det);
    }
    bson_append_document_end(r, &sub);
    BSON_APPEND_BOOL(r, "valid", valid);
    BSON_APPEND_BOOL(r, "repaired", false);
    const char *warnings[1];
    size_t nwarn = 0;
    if (metadata)
        warnings[nwarn++] = "metadata: true checks the index definitions only; no document "
                            "was read";
    append_str_array(r, "warnings", warnings, nwarn);
    append_str_array(r, "errors", errors.msg, errors.n);
    append_str_array(r, "extraIndexEntries", NULL, 0);
    append_str_array(r, "missingIndexEntries", NULL, 0);
    append_str_array(r, "corruptRecords", NULL, 0);
    if (!valid)
        BSON_APPEND_UTF8(r, "advice", "A corrupt namespace has been detected. See "
                                      "http://dochub.mongodb.org/core/data-recovery for "
                                      "recovery steps.");
out:
    for (size_t i = 0; i < nix; i++)
        vindex_cleanup(&ix[i]);
    free(ix);
    free(with_keys);
    free(specs);
    return ok;
}
