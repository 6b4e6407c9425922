/*
 * eng_seq.c: the sequencer (DESIGN.md section 3). One committer thread drains every queued
 * write intent, checks each op's expectation against the current state, gives the ops
 * their seqs, seals them into the log, issues one fdatasync for the whole batch, applies
 * them to the store, publishes the new committed seq, and only then completes the intents.
 * More concurrent writers make bigger batches (group commit).
 *
 * Invariants:
 *   1. Seqs are assigned here only, in queue order, with no gaps.
 *   2. An op is appended to the log before it is applied to the store, and the committed
 *      seq is published only after the fsync that makes it durable: a reader never sees
 *      a write that a crash could take back, and no client is told of one.
 *   3. If a write or fsync fails, no intent of the batch is told it succeeded, the store
 *      stays unpublished past the last durable seq, and the db turns read-only until it is
 *      reopened (PostgreSQL's rule: a failed fsync cannot be retried safely).
 *   4. ts never goes backwards and ct = (seconds of ts, 1, 2, ... within that second) is
 *      strictly increasing with seq.
 */
#include <string.h>
#include <sys/time.h>

#include "eng_store.h"

/* Copies the string src into dst[size], cut to size - 1 bytes (as snprintf "%s" would,
 * without its cost on the path of every write). Returns the length copied. */
static size_t name_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

void eng_wop_init(eng_wop_t *op, eng_wop_kind_t kind, const char *db, const char *coll)
{
    memset(op, 0, sizeof *op);
    op->kind = kind;
    name_copy(op->db, sizeof op->db, db);
    name_copy(op->coll, sizeof op->coll, coll);
    bson_init(&op->doc);
    bson_init(&op->prov);
    op->id.value_type = BSON_TYPE_EOD;
    op->expect = ENG_EXPECT_NONE;
    op->seq = -1;
}

void eng_wop_cleanup(eng_wop_t *op)
{
    bson_destroy(&op->doc);
    bson_destroy(&op->prov);
    if (op->id.value_type != BSON_TYPE_EOD)
        bson_value_destroy(&op->id);
    op->id.value_type = BSON_TYPE_EOD;
    if (op->dup_key)
        bson_destroy(op->dup_key);
    op->dup_key = NULL;
    if (op->info)
        bson_destroy(op->info);
    op->info = NULL;
}

void eng_submit(eng_db_t *db, eng_intent_t *intent)
{
    intent->conflict = false;
    intent->applied = 0;
    intent->first_seq = intent->last_seq = -1;
    bq_error_clear(&intent->err);
    for (size_t i = 0; i < intent->nops; i++) {
        intent->ops[i].seq = -1;
        bq_error_clear(&intent->ops[i].err);
        if (intent->ops[i].dup_key)
            bson_destroy(intent->ops[i].dup_key);
        intent->ops[i].dup_key = NULL;
        if (intent->ops[i].info)
            bson_destroy(intent->ops[i].info);
        intent->ops[i].info = NULL;
    }
    pthread_mutex_lock(&db->qlock);
    if (db->qlen == db->qcap) {
        size_t cap = db->qcap ? db->qcap * 2 : 64;
        eng_intent_t **q = realloc(db->queue, cap * sizeof *q);
        if (!q)
            abort();
        db->queue = q;
        db->qcap = cap;
    }
    db->queue[db->qlen++] = intent;
    pthread_cond_signal(&db->qcond);
    pthread_mutex_unlock(&db->qlock);
}

/* ---- one batch ---- */

typedef struct batch {
    eng_db_t *db;
    int64_t ts;
    uint32_t ct_t, ct_i;
    uint64_t next_seq;
    bool failed;          /* an I/O error: nothing of this batch is acknowledged */
    bq_error_t io_err;
} batch_t;

/* Seals one op into the log and applies it. */
static bool batch_append(batch_t *b, eng_op_t *op, bq_error_t *err)
{
    bson_t body;
    op->seq = (int64_t)b->next_seq;
    op->ts = b->ts;
    op->ct_t = b->ct_t;
    op->ct_i = ++b->ct_i;
    if (!eng_op_build(op, &body, err)) {
        bson_destroy(&body);
        return false;
    }
    if (!eng_log_append(b->db->log, &body, NULL, NULL, &b->io_err)) {
        bson_destroy(&body);
        if (b->io_err.code == BQ_ERR_BadValue) { /* too large: this op only */
            if (err)
                *err = b->io_err;
            bq_error_clear(&b->io_err);
            return false;
        }
        b->failed = true;
        if (err)
            *err = b->io_err;
        return false;
    }
    /* apply from the sealed bytes, as recovery will */
    eng_op_t sealed;
    bq_error_t aerr;
    bool ok = eng_op_parse(bson_get_data(&body), body.len, &sealed, &aerr) &&
              eng__store_apply(&b->db->store, &sealed, &aerr);
    bson_destroy(&body);
    b->next_seq++;
    if (!ok) { /* our own invariant is broken: the checks below should have caught it */
        b->failed = true;
        b->io_err = aerr;
        if (err)
            *err = aerr;
        return false;
    }
    return true;
}

static bool batch_catalog(batch_t *b, const char *db, const bson_t *cmd, int64_t *seq,
                          bq_error_t *err)
{
    char ns[80];
    snprintf(ns, sizeof ns, "%s.$cmd", db);
    eng_op_t op = {0};
    op.op = ENG_OP_CATALOG;
    op.ns = ns;
    op.ns_len = (uint32_t)strlen(ns);
    op.o = bson_get_data(cmd);
    op.o_len = cmd->len;
    if (!batch_append(b, &op, err))
        return false;
    *seq = op.seq;
    return true;
}

/* The implicit create of a collection by its first write. */
static bool ensure_collection(batch_t *b, eng_wop_t *w)
{
    if (eng__store_coll_current(&b->db->store, w->db, w->coll))
        return true;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "create", w->coll);
    int64_t seq;
    bool ok = batch_catalog(b, w->db, &cmd, &seq, &w->err);
    bson_destroy(&cmd);
    return ok;
}

/* Does the op's expectation hold right now? */
static bool expectation_holds(eng_db_t *db, const eng_wop_t *w)
{
    if (w->expect == ENG_EXPECT_NONE)
        return true;
    eng_coll_t *c = eng__store_coll_current(&db->store, w->db, w->coll);
    int64_t cur = c ? eng__store_current(c, &w->id, NULL) : ENG_EXPECT_ABSENT;
    return cur == w->expect;
}

static void dup_key_error(eng_wop_t *w)
{
    bson_t tmp = BSON_INITIALIZER;
    bson_append_value(&tmp, "_id", 3, &w->id);
    char *id = bson_as_relaxed_extended_json(&tmp, NULL);
    bq_error_set(&w->err, BQ_ERR_DuplicateKey,
                 "E11000 duplicate key error collection: %s.%s index: _id_ dup key: %s",
                 w->db, w->coll, id ? id : "{ _id: ? }");
    bson_free(id);
    bson_destroy(&tmp);
}

/* createIndexes / dropIndexes: checked against the current state (eng_index.c), then one
 * catalog op, or none when every requested index already exists. */
static bool apply_index_wop(batch_t *b, eng_wop_t *w, const char *ns)
{
    eng_coll_t *c = eng__store_coll_current(&b->db->store, w->db, w->coll);
    bson_iter_t it;
    bson_t cmd = BSON_INITIALIZER, list;
    bool ok;
    if (w->kind == ENG_WOP_INDEX_MOD) {
        bson_t mod, spec = BSON_INITIALIZER, idx;
        uint32_t mlen;
        const uint8_t *mdata;
        if (!c) {
            bson_destroy(&cmd);
            bson_destroy(&spec);
            bq_error_set(&w->err, BQ_ERR_NamespaceNotFound, "ns does not exist: %s", ns);
            return false;
        }
        w->info = bson_new();
        ok = bson_iter_init_find(&it, &w->doc, "index") && BSON_ITER_HOLDS_DOCUMENT(&it);
        if (ok) {
            bson_iter_document(&it, &mlen, &mdata);
            ok = bson_init_static(&mod, mdata, mlen) &&
                 eng__index_mod_check(c, &mod, &spec, w->info, &w->err);
        }
        if (ok) {
            bson_iter_t name;
            BSON_APPEND_UTF8(&cmd, "collMod", w->coll);
            BSON_APPEND_DOCUMENT_BEGIN(&cmd, "index", &idx);
            if (bson_iter_init_find(&name, &spec, "name"))
                bson_append_iter(&idx, "name", 4, &name);
            BSON_APPEND_DOCUMENT(&idx, "spec", &spec);
            bson_append_document_end(&cmd, &idx);
            ok = batch_catalog(b, w->db, &cmd, &w->seq, &w->err);
        }
        bson_destroy(&spec);
        bson_destroy(&cmd);
        return ok;
    }
    if (w->kind == ENG_WOP_DROP_INDEXES) {
        if (!c) {
            bson_destroy(&cmd);
            bq_error_set(&w->err, BQ_ERR_NamespaceNotFound, "ns not found %s", ns);
            return false;
        }
        BSON_APPEND_UTF8(&cmd, "dropIndexes", w->coll);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "index", &list);
        ok = bson_iter_init_find(&it, &w->doc, "index") &&
             eng__index_drop_check(c, bson_iter_value(&it), &list, &w->nindexes_before,
                                   &w->err);
        bson_append_array_end(&cmd, &list);
        if (ok)
            ok = batch_catalog(b, w->db, &cmd, &w->seq, &w->err);
        bson_destroy(&cmd);
        return ok;
    }
    bson_t specs, todo = BSON_INITIALIZER;
    uint32_t len;
    const uint8_t *data;
    ok = bson_iter_init_find(&it, &w->doc, "indexes") && BSON_ITER_HOLDS_ARRAY(&it);
    if (ok) {
        bson_iter_array(&it, &len, &data);
        ok = bson_init_static(&specs, data, len) &&
             eng__index_create_check(c, &specs, &todo, &w->nindexes_before, &w->dup_key,
                                     &w->err);
    }
    w->nindexes_after = w->nindexes_before + (int32_t)bson_count_keys(&todo);
    if (ok && !c) {
        w->created_coll = true;
        ok = ensure_collection(b, w);
    }
    if (ok && !bson_empty(&todo)) {
        BSON_APPEND_UTF8(&cmd, "createIndexes", w->coll);
        BSON_APPEND_ARRAY(&cmd, "indexes", &todo);
        ok = batch_catalog(b, w->db, &cmd, &w->seq, &w->err);
    }
    bson_destroy(&todo);
    bson_destroy(&cmd);
    return ok;
}

/* Applies one op of an intent. Returns false when the op failed (w->err set). */
static bool apply_wop(batch_t *b, eng_wop_t *w)
{
    eng_db_t *db = b->db;
    eng_op_t op = {0};
    char ns[sizeof w->db + sizeof w->coll]; /* "db.coll": both fit, with the dot and NUL */
    size_t dlen = strlen(w->db), clen = strlen(w->coll);
    memcpy(ns, w->db, dlen);
    ns[dlen] = '.';
    memcpy(ns + dlen + 1, w->coll, clen + 1);
    op.ns = ns;
    op.ns_len = (uint32_t)(dlen + 1 + clen);

    switch (w->kind) {
    case ENG_WOP_INSERT:
    case ENG_WOP_UPDATE: {
        eng_coll_t *c = eng__store_coll_current(&db->store, w->db, w->coll);
        int64_t cur = c ? eng__store_current(c, &w->id, NULL) : ENG_EXPECT_ABSENT;
        if (w->kind == ENG_WOP_INSERT && cur != ENG_EXPECT_ABSENT) {
            dup_key_error(w);
            return false;
        }
        if (w->expect != ENG_EXPECT_NONE && cur != w->expect) {
            bq_error_set(&w->err, BQ_ERR_WriteConflict, "write conflict on %s", ns);
            return false;
        }
        /* unique secondary indexes, against the state with this batch's earlier ops */
        if (c && !eng__index_check(c, &w->id, bson_get_data(&w->doc), w->doc.len,
                                   &w->dup_key, &w->err))
            return false;
        if (!ensure_collection(b, w))
            return false;
        op.op = cur == ENG_EXPECT_ABSENT ? ENG_OP_INSERT : ENG_OP_UPDATE;
        op.has_id = true;
        op.id = w->id;
        op.o = bson_get_data(&w->doc);
        op.o_len = w->doc.len;
        if (!bson_empty(&w->prov)) {
            op.prov = bson_get_data(&w->prov);
            op.prov_len = w->prov.len;
        }
        break;
    }
    case ENG_WOP_DELETE: {
        eng_coll_t *c = eng__store_coll_current(&db->store, w->db, w->coll);
        int64_t cur = c ? eng__store_current(c, &w->id, NULL) : ENG_EXPECT_ABSENT;
        if (cur == ENG_EXPECT_ABSENT || (w->expect != ENG_EXPECT_NONE && cur != w->expect)) {
            bq_error_set(&w->err, BQ_ERR_WriteConflict, "write conflict on %s", ns);
            return false;
        }
        op.op = ENG_OP_DELETE;
        op.has_id = true;
        op.id = w->id;
        break;
    }
    case ENG_WOP_CREATE: {
        if (eng__store_coll_current(&db->store, w->db, w->coll)) {
            bq_error_set(&w->err, BQ_ERR_NamespaceExists, "Collection %s already exists.", ns);
            return false;
        }
        bson_t cmd = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&cmd, "create", w->coll);
        bson_concat(&cmd, &w->doc);
        bool ok = batch_catalog(b, w->db, &cmd, &w->seq, &w->err);
        bson_destroy(&cmd);
        return ok;
    }
    case ENG_WOP_DROP:
    case ENG_WOP_COLLMOD: {
        if (!eng__store_coll_current(&db->store, w->db, w->coll)) {
            bq_error_set(&w->err, BQ_ERR_NamespaceNotFound, "ns not found: %s", ns);
            return false;
        }
        bson_t cmd = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&cmd, w->kind == ENG_WOP_DROP ? "drop" : "collMod", w->coll);
        if (w->kind == ENG_WOP_COLLMOD)
            bson_concat(&cmd, &w->doc);
        bool ok = batch_catalog(b, w->db, &cmd, &w->seq, &w->err);
        bson_destroy(&cmd);
        return ok;
    }
    case ENG_WOP_CREATE_INDEXES:
    case ENG_WOP_DROP_INDEXES:
    case ENG_WOP_INDEX_MOD:
        return apply_index_wop(b, w, ns);
    case ENG_WOP_DROP_DATABASE: {
        bson_t cmd = BSON_INITIALIZER;
        BSON_APPEND_INT32(&cmd, "dropDatabase", 1);
        bool ok = batch_catalog(b, w->db, &cmd, &w->seq, &w->err);
        bson_destroy(&cmd);
        return ok;
    }
    case ENG_WOP_RENAME: {
        char to_ns[ENG_NS_MAX + 80];
        snprintf(to_ns, sizeof to_ns, "%s.%s", w->to_db, w->to_coll);
        if (!eng__store_coll_current(&db->store, w->db, w->coll)) {
            bq_error_set(&w->err, BQ_ERR_NamespaceNotFound, "Source collection %s does not exist",
                         ns);
            return false;
        }
        if (!w->drop_target && eng__store_coll_current(&db->store, w->to_db, w->to_coll)) {
            bq_error_set(&w->err, BQ_ERR_NamespaceExists, "target namespace exists");
            return false;
        }
        bson_t cmd = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&cmd, "renameCollection", ns);
        BSON_APPEND_UTF8(&cmd, "to", to_ns);
        BSON_APPEND_BOOL(&cmd, "dropTarget", w->drop_target);
        bool ok = batch_catalog(b, w->db, &cmd, &w->seq, &w->err);
        bson_destroy(&cmd);
        return ok;
    }
    }
    if (!batch_append(b, &op, &w->err))
        return false;
    w->seq = op.seq;
    return true;
}

static void apply_intent(batch_t *b, eng_intent_t *in)
{
    if (atomic_load(&b->db->read_only) || b->failed) {
        bq_error_set(&in->err, BQ_ERR_NotWritablePrimary,
                     "the server is read-only after a failed fsync; restart it");
        return;
    }
    if (in->all_or_none) {
        for (size_t i = 0; i < in->nops; i++) {
            if (!expectation_holds(b->db, &in->ops[i])) {
                in->conflict = true;
                return;
            }
        }
    }
    for (size_t i = 0; i < in->nops && !b->failed; i++) {
        eng_wop_t *w = &in->ops[i];
        uint64_t before = b->next_seq;
        if (apply_wop(b, w)) {
            in->applied++;
            if (in->first_seq < 0)
                in->first_seq = (int64_t)before;
            in->last_seq = (int64_t)b->next_seq - 1;
        } else if (in->ordered) {
            break;
        }
    }
}

static void batch_clock(batch_t *b, eng_db_t *db)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int64_t ts = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    if (ts < db->last_ts)
        ts = db->last_ts; /* the wall clock went back: hold it */
    b->ts = ts;
    b->ct_t = (uint32_t)(ts / 1000);
    b->ct_i = b->ct_t == db->last_ct_t ? db->last_ct_i : 0;
}

static void *committer_main(void *arg)
{
    eng_db_t *db = arg;
    for (;;) {
        pthread_mutex_lock(&db->qlock);
        while (db->qlen == 0 && !db->stopping)
            pthread_cond_wait(&db->qcond, &db->qlock);
        if (db->qlen == 0 && db->stopping) {
            pthread_mutex_unlock(&db->qlock);
            return NULL;
        }
        eng_intent_t **intents = db->queue;
        size_t n = db->qlen;
        db->queue = NULL;
        db->qlen = db->qcap = 0;
        pthread_mutex_unlock(&db->qlock);

        batch_t b = {.db = db};
        bq_error_clear(&b.io_err);
        batch_clock(&b, db);
        uint8_t head[ENG_HASH_SIZE];
        eng_log_head(db->log, &b.next_seq, head);
        uint64_t first = b.next_seq;

        for (size_t i = 0; i < n; i++)
            apply_intent(&b, intents[i]);
        if (!b.failed && b.next_seq > first && !eng_log_sync(db->log, &b.io_err))
            b.failed = true;
        if (b.failed) {
            atomic_store(&db->read_only, true);
            for (size_t i = 0; i < n; i++) {
                intents[i]->err = b.io_err;
                bq_error_prefix(&intents[i]->err, "write not acknowledged, server now read-only");
            }
        } else if (b.next_seq > first) {
            db->last_ts = b.ts;
            db->last_ct_t = b.ct_t;
            db->last_ct_i = b.ct_i;
            uint64_t nops = b.next_seq - first, next;
            pthread_mutex_lock(&db->status_lock);
            eng_log_head(db->log, &next, db->status_head);
            db->status_batches++;
            db->status_ops += nops;
            if (nops > db->status_max_batch)
                db->status_max_batch = nops;
            pthread_mutex_unlock(&db->status_lock);
            atomic_store_explicit(&db->committed, (int64_t)b.next_seq - 1,
                                  memory_order_release);
        }
        for (size_t i = 0; i < n; i++)
            intents[i]->done(intents[i]);
        free(intents);
    }
}

bool eng__seq_start(eng_db_t *db, bq_error_t *err)
{
    pthread_mutex_init(&db->qlock, NULL);
    pthread_cond_init(&db->qcond, NULL);
    if (pthread_create(&db->committer, NULL, committer_main, db) != 0) {
        bq_error_set(err, BQ_ERR_InternalError, "cannot start the committer thread");
        return false;
    }
    db->committer_running = true;
    return true;
}

void eng__seq_stop(eng_db_t *db)
{
    if (!db->committer_running)
        return;
    pthread_mutex_lock(&db->qlock);
    db->stopping = true;
    pthread_cond_signal(&db->qcond);
    pthread_mutex_unlock(&db->qlock);
    pthread_join(db->committer, NULL);
    db->committer_running = false;
    free(db->queue);
    pthread_cond_destroy(&db->qcond);
    pthread_mutex_destroy(&db->qlock);
}
