/*
 * cmd_aggregate_out.c: the writes of a pipeline that ends in $out (and, later, $merge).
 *
 * cmd_aggregate.c runs the pipeline to its end at the command's snapshot and hands the
 * documents here. They are written like any other write (DESIGN.md section 3): one intent
 * of ordinary ops through the sequencer, sealed into the chain and visible to time
 * travel, acknowledged after the fsync unless writeConcern says j: false.
 *
 * $out replaces the target's contents. mongod writes a temporary collection and renames
 * it over the target; here the same end state is one all-or-none intent computed against
 * the target as it is now: an update (full post-image) for every document whose _id is
 * already there and changed, a delete for every document no longer produced, an insert
 * for every new one. The collection keeps its options, and history shows exactly what
 * changed. A missing target is created, even when the pipeline produced nothing. If
 * another writer changes the target between computing and committing, the intent is
 * computed again from a newer snapshot.
 *
 * Nothing is written when a produced document cannot be stored (two with one _id: 11000;
 * a bad _id; too large): mongod's $out leaves the target untouched then too.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd_aggregate.h"

#define OUT_MAX_RETRIES 1000

typedef struct out_state {
    eng_intent_t intent;
    eng_wop_t *ops;         /* aligned array, never moved */
    size_t nops, cap;
    char db[64], coll[ENG_NS_MAX + 1];
    bson_t **docs;          /* prepared documents, _id first, owned */
    bson_t **provs;         /* their sealed provenance (empty when none), owned */
    bson_value_t *ids;      /* their _ids (borrowed from docs), sorted */
    size_t n;
    bool durable;
    int retries;
    char ns[ENG_NS_MAX + 32]; /* the reply cursor's ns */
} out_state_t;

/* The command's previous state (the pipeline) is kept alive through this chain. */
typedef struct out_hold {
    out_state_t *st;
    void *prev;
    void (*prev_free)(void *);
} out_hold_t;

static void out_ops_clear(out_state_t *st)
{
    for (size_t i = 0; i < st->nops; i++)
        eng_wop_cleanup(&st->ops[i]);
    bson_free(st->ops);
    st->ops = NULL;
    st->nops = st->cap = 0;
}

static void out_state_free(out_state_t *st)
{
    out_ops_clear(st);
    for (size_t i = 0; i < st->n; i++) {
        bson_destroy(st->docs[i]);
        bson_destroy(st->provs[i]);
    }
    free(st->docs);
    free(st->provs);
    free(st->ids);
    free(st);
}

static void out_hold_free(void *p)
{
    out_hold_t *h = p;
    out_state_free(h->st);
    if (h->prev_free)
        h->prev_free(h->prev);
    free(h);
}

static bool write_durable(const wire_cmd_ctx_t *ctx)
{
    bson_iter_t it, wc;
    if (bson_iter_init_find(&it, ctx->cmd, "writeConcern") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &wc) && bson_iter_find(&wc, "j"))
        return bson_iter_as_bool(&wc);
    return true;
}

/* A produced document made ready for storage: _id first (an ObjectId when missing), the
 * _id's type checked, provenance fields validated and sealed (DESIGN.md section 7). */
static bool out_doc_prepare(wire_cmd_ctx_t *ctx, int64_t snap, const bson_t *doc, bson_t **out,
                            bson_t *prov, bq_error_t *err)
{
    bson_iter_t it;
    bson_t *tmp = bson_new();
    bson_init(prov);
    *out = NULL;
    if (bson_iter_init_find(&it, doc, "_id")) {
        bson_type_t t = bson_iter_type(&it);
        if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX || t == BSON_TYPE_UNDEFINED) {
            bq_error_set(err, BQ_ERR_InvalidIdField, "The '_id' value cannot be of type %s",
                         bq_type_name(t));
            bson_destroy(tmp);
            return false;
        }
        bson_append_iter(tmp, "_id", 3, &it);
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(tmp, "_id", &oid);
    }
    bool has_prov = false;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "_id"))
            continue;
        if (!strcmp(k, "_caused_by") || !strcmp(k, "_evidence") || !strcmp(k, "_confidence"))
            has_prov = true;
        bson_append_iter(tmp, k, -1, &it);
    }
    if (has_prov) {
        bson_t sealed;
        bool has;
        bson_destroy(prov);
        if (!eng_prov_prepare(ctx->server->db, ctx->db, snap, tmp, &sealed, prov, &has, err)) {
            bson_destroy(&sealed);
            bson_destroy(tmp);
            return false;
        }
        bson_destroy(tmp);
        tmp = bson_copy(&sealed);
        bson_destroy(&sealed);
    }
    if (tmp->len > WIRE_MAX_BSON_SIZE) {
        bq_error_set(err, BQ_ERR_BSONObjectTooLarge,
                     "object to insert too large. size in bytes: %u, max size: %d", tmp->len,
                     WIRE_MAX_BSON_SIZE);
        bson_destroy(tmp);
        return false;
    }
    *out = tmp;
    return true;
}

static int id_cmp(const void *a, const void *b)
{
    return bq_value_compare(a, b);
}

static bool id_produced(const out_state_t *st, const bson_value_t *id)
{
    return bsearch(id, st->ids, st->n, sizeof *st->ids, id_cmp) != NULL;
}

static eng_wop_t *out_op_add(out_state_t *st, eng_wop_kind_t kind)
{
    BSON_ASSERT(st->nops < st->cap);
    eng_wop_t *w = &st->ops[st->nops++];
    eng_wop_init(w, kind, st->db, st->coll);
    return w;
}

/* Computes the ops that turn the target, as of now, into the produced documents. */
static void out_compute(wire_cmd_ctx_t *ctx, out_state_t *st)
{
    out_ops_clear(st);
    int64_t snap = eng_db_snapshot(ctx->server->db);
    eng_coll_t *c = eng_coll_get(ctx->server->db, st->db, st->coll, snap);
    uint64_t existing = 0, bytes;
    if (c)
        eng_coll_stats(c, snap, &existing, &bytes);
    st->cap = st->n + (size_t)existing + 1;
    st->ops = bson_aligned_alloc0(BSON_ALIGNOF(eng_wop_t), st->cap * sizeof *st->ops);
    if (!st->ops)
        abort();
    if (!c) {
        out_op_add(st, ENG_WOP_CREATE);
    } else {
        eng_scan_t scan;
        eng_doc_t d;
        eng_scan_init(&scan, c, snap, false);
        while (eng_scan_next(&scan, &d) && st->nops < st->cap) {
            bson_iter_t it;
            if (!bson_iter_init_from_data(&it, d.data, d.len) || !bson_iter_find(&it, "_id"))
                continue;
            if (id_produced(st, bson_iter_value(&it)))
                continue;
            eng_wop_t *w = out_op_add(st, ENG_WOP_DELETE);
            bson_value_copy(bson_iter_value(&it), &w->id);
            w->expect = d.seq;
        }
    }
    for (size_t i = 0; i < st->n; i++) {
        bson_iter_t it;
        bson_iter_init_find(&it, st->docs[i], "_id");
        eng_doc_t d;
        bool found = c && eng_coll_find_id(c, snap, bson_iter_value(&it), &d);
        if (found && d.len == st->docs[i]->len &&
            memcmp(d.data, bson_get_data(st->docs[i]), d.len) == 0)
            continue; /* unchanged */
        if (st->nops >= st->cap)
            break; /* the target grew meanwhile: the expectations will fail and we retry */
        eng_wop_t *w = out_op_add(st, found ? ENG_WOP_UPDATE : ENG_WOP_INSERT);
        bson_concat(&w->doc, st->docs[i]);
        bson_concat(&w->prov, st->provs[i]);
        bson_value_copy(bson_iter_value(&it), &w->id);
        w->expect = found ? d.seq : ENG_EXPECT_ABSENT;
    }
}

static bool out_resume(wire_cmd_ctx_t *ctx, bq_error_t *err);

static bool out_submit(wire_cmd_ctx_t *ctx, out_state_t *st)
{
    out_compute(ctx, st);
    if (st->nops == 0) {
        /* nothing to change: reply at once */
        bson_t c, arr;
        BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "cursor", &c);
        BSON_APPEND_ARRAY_BEGIN(&c, "firstBatch", &arr);
        bson_append_array_end(&c, &arr);
        BSON_APPEND_INT64(&c, "id", 0);
        BSON_APPEND_UTF8(&c, "ns", st->ns);
        bson_append_document_end(ctx->reply, &c);
        return true;
    }
    memset(&st->intent, 0, sizeof st->intent);
    st->intent.ops = st->ops;
    st->intent.nops = st->nops;
    st->intent.ordered = true;
    st->intent.all_or_none = true;
    st->intent.durable = st->durable;
    wire_cmd_submit(ctx, &st->intent, out_resume);
    return true;
}

static bool out_resume(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    out_state_t *st = ((out_hold_t *)ctx->state)->st;
    eng_intent_t *in = &st->intent;
    if (in->err.code) {
        *err = in->err;
        return false;
    }
    if (in->conflict) {
        if (++st->retries > OUT_MAX_RETRIES) {
            bq_error_set(err, BQ_ERR_WriteConflict, "$out: write conflict: gave up after %d "
                                                    "attempts",
                         OUT_MAX_RETRIES);
            return false;
        }
        return out_submit(ctx, st);
    }
    for (size_t i = 0; i < st->nops; i++) {
        const eng_wop_t *w = &st->ops[i];
        if (w->err.code && !(w->kind == ENG_WOP_CREATE && w->err.code == BQ_ERR_NamespaceExists)) {
            *err = w->err;
            return false;
        }
    }
    bson_t c, arr;
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "cursor", &c);
    BSON_APPEND_ARRAY_BEGIN(&c, "firstBatch", &arr);
    bson_append_array_end(&c, &arr);
    BSON_APPEND_INT64(&c, "id", 0);
    BSON_APPEND_UTF8(&c, "ns", st->ns);
    bson_append_document_end(ctx->reply, &c);
    return true;
}

bool wire_agg_out_write(wire_cmd_ctx_t *ctx, const agg_out_t *out, bson_t **docs, size_t n,
                        int64_t snap, const char *ns, bq_error_t *err)
{
    out_state_t *st = BSON_ALIGNED_ALLOC0(out_state_t); /* embeds an intent */
    st->docs = calloc(n ? n : 1, sizeof *st->docs);
    st->ids = calloc(n ? n : 1, sizeof *st->ids);
    st->provs = calloc(n ? n : 1, sizeof *st->provs);
    if (!st->docs || !st->ids || !st->provs)
        abort();
    snprintf(st->ns, sizeof st->ns, "%s", ns);
    const char *tdb = out->db[0] ? out->db : ctx->db;
    size_t tdb_len = strnlen(tdb, sizeof out->db);
    memcpy(st->db, tdb, tdb_len < sizeof st->db ? tdb_len : sizeof st->db - 1);
    snprintf(st->coll, sizeof st->coll, "%s", out->coll);
    st->durable = write_durable(ctx);
    bool ok = true;
    if (tdb_len >= sizeof st->db) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid database name: '%s'", tdb);
        ok = false;
    } else if (out->merge) {
        bq_error_set(err, BQ_ERR_NotImplemented, "$merge is not implemented yet in NEDB");
        ok = false;
    } else if (!wire_ns_check(st->db, st->coll, err)) {
        ok = false;
    } else if (!strncmp(st->coll, "system.", 7)) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid $out target namespace, %s.%s",
                     st->db, st->coll);
        ok = false;
    }
    if (ok && eng_db_read_only(ctx->server->db)) {
        bq_error_set(err, BQ_ERR_NotWritablePrimary,
                     "the server is read-only after a failed fsync; restart it");
        ok = false;
    }
    for (size_t i = 0; i < n; i++) {
        if (ok) {
            bson_t prov;
            ok = out_doc_prepare(ctx, snap, docs[i], &st->docs[st->n], &prov, err);
            if (ok)
                st->provs[st->n] = bson_copy(&prov);
            bson_destroy(&prov);
            if (ok) {
                bson_iter_t it;
                bson_iter_init_find(&it, st->docs[st->n], "_id");
                st->ids[st->n] = *bson_iter_value(&it);
                st->n++;
            }
        }
        bson_destroy(docs[i]);
    }
    free(docs);
    if (ok && st->n > 1) {
        qsort(st->ids, st->n, sizeof *st->ids, id_cmp);
        for (size_t i = 1; i < st->n; i++) {
            if (bq_value_compare(&st->ids[i - 1], &st->ids[i]) == 0) {
                bson_t kv = BSON_INITIALIZER;
                bson_append_value(&kv, "_id", 3, &st->ids[i]);
                char *j = bson_as_relaxed_extended_json(&kv, NULL);
                bq_error_set(err, BQ_ERR_DuplicateKey,
                             "E11000 duplicate key error collection: %s.%s index: _id_ dup "
                             "key: %s",
                             st->db, st->coll, j ? j : "");
                bson_free(j);
                bson_destroy(&kv);
                ok = false;
                break;
            }
        }
    }
    if (!ok) {
        out_state_free(st);
        return false;
    }
    out_hold_t *h = calloc(1, sizeof *h);
    if (!h)
        abort();
    h->st = st;
    h->prev = ctx->state;
    h->prev_free = ctx->state_free;
    ctx->state = h;
    ctx->state_free = out_hold_free;
    return out_submit(ctx, st);
}
