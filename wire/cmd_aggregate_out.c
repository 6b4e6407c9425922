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
 * The target is read at the newest snapshot, where every visible version is in memory
 * (eng_db.h: only versions superseded before a checkpoint are read back from the log), so
 * the unchecked eng_coll_find_id / eng_scan_next cannot fail to load here.
 *
 * Nothing is written when a produced document cannot be stored (two with one _id: 11000;
 * a bad _id; too large; refused by the target's validator: 121, unless the aggregate says
 * bypassDocumentValidation): mongod's $out leaves the target untouched then too.
 *
 * $merge goes through the same machinery. For every produced document (in the order the
 * pipeline yielded them) agg_merge_prepare() gives the document and the filter of its
 * `on` fields; the matching target document is looked up in the target as of the snapshot
 * the intent is computed at, overlaid with what earlier documents of the same $merge
 * already wrote (an overlay keyed by _id pointing at the op that wrote it, so a second
 * document matching the same target document sees the first one's result); and
 * agg_merge_apply() decides: an insert (expected absent), an update (full post-image,
 * expected at the version read) or nothing. A document the overlay already has an op for
 * rewrites that op instead of adding a second one.
 *
 * Custom `on` fields need a unique index on exactly those fields in the target (51183
 * otherwise, also when the target does not exist), as in mongod.
 *
 * Deliberate difference: mongod's $merge is not atomic (documents written before a
 * failing one stay written). Ours is one all-or-none intent: whenMatched "fail" (11000,
 * with keyPattern and keyValue in the reply as mongod gives them), whenNotMatched "fail"
 * (13113), a missing `on` field (51132), an _id change (66) or a duplicate _id on insert
 * (11000) leave the target exactly as it was. A missing target is created only when the
 * $merge writes something to it.
 */
#include <stdlib.h>
#include <string.h>

#include "agg_merge.h"
#include "bq_key.h"
#include "cmd_aggregate.h"
#include "cmd_index.h"
#include "cmd_view.h"
#include "wire_validate.h"

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
    /* $merge only */
    const agg_out_t *out;   /* borrowed from the pipeline, which outlives the write */
    agg_run_t *run;         /* the command's run (borrowed likewise) */
    bson_t **filters;       /* the `on` filter of every document, owned */
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
        if (st->provs[i])
            bson_destroy(st->provs[i]);
        if (st->filters && st->filters[i])
            bson_destroy(st->filters[i]);
    }
    free(st->filters);
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

/* Checks a document about to be written against the target's validator (wire_validate.h:
 * bypassDocumentValidation, validationLevel and validationAction apply as for any write;
 * `old` is the version it replaces, NULL for an insert). A failure is the command's error,
 * as mongod reports it: 121 with errInfo beside code and errmsg. */
static bool out_validate(wire_cmd_ctx_t *ctx, const out_state_t *st, int64_t snap,
                         const bson_t *doc, const bson_t *old, bq_error_t *err)
{
    if (wire_validate_in(ctx, st->db, st->coll, snap, 0, doc, old, err))
        return true;
    if (err && err->code == BQ_ERR_DocumentValidationFailure) {
        if (!ctx->req->reply_extra)
            ctx->req->reply_extra = bson_new();
        wire_validate_errinfo_append(ctx->state, 0, ctx->req->reply_extra);
    }
    return false;
}

/* True when `on` (an array of field names) is the key of an index that makes its values
 * unique in c at snap, as mongod requires of $merge's `on` fields: a unique index, not
 * partial, with the simple collation (and a command without a collation), whose key
 * fields are exactly the `on` fields in any order. `on` being just _id always qualifies. */
static bool merge_on_unique(wire_cmd_ctx_t *ctx, eng_coll_t *c, int64_t snap, const bson_t *on)
{
    bson_iter_t it, k;
    uint32_t non = bson_count_keys(on);
    if (non == 1 && bson_iter_init(&it, on) && bson_iter_next(&it) && BSON_ITER_HOLDS_UTF8(&it) &&
        strcmp(bson_iter_utf8(&it, NULL), "_id") == 0)
        return true;
    if (!c || bson_has_field(ctx->cmd, "collation"))
        return false; /* (a simple collation given explicitly is rare; mongod compares) */
    bson_t **specs;
    size_t n = wire_index_specs(c, snap, &specs);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        bson_t key;
        uint32_t len;
        const uint8_t *data;
        bool ok = bson_iter_init_find(&it, specs[i], "unique") && bson_iter_as_bool(&it) &&
                  !bson_has_field(specs[i], "partialFilterExpression") &&
                  !bson_has_field(specs[i], "collation") &&
                  bson_iter_init_find(&it, specs[i], "key") && BSON_ITER_HOLDS_DOCUMENT(&it);
        if (ok) {
            bson_iter_document(&it, &len, &data);
            ok = bson_init_static(&key, data, len) && bson_count_keys(&key) == non;
        }
        /* every `on` field is a key field (the counts are equal and `on` has no repeats) */
        for (bson_iter_init(&it, on); ok && bson_iter_next(&it);)
            ok = bson_iter_init_find(&k, &key, bson_iter_utf8(&it, NULL));
        found = found || ok;
        bson_destroy(specs[i]);
    }
    free(specs);
    return found;
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
/* Computes the ops of an $out against the target as of now. Every produced document is
 * checked against the target's validator, the unchanged ones too: mongod's $out writes
 * them all into a new collection with the target's options. */
static bool out_compute(wire_cmd_ctx_t *ctx, out_state_t *st, bq_error_t *err)
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
        if (!out_validate(ctx, st, snap, st->docs[i], NULL, err))
            return false;
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
    return true;
}


/* ---------------------------------------------------------------- $merge */

/* The overlay: _id (as a bq_key) -> the index of the op of this intent that wrote it. An
 * open-addressing table sized for every produced document, so it never fills. */
typedef struct merge_slot {
    uint8_t *key; /* owned; NULL: empty slot */
    size_t len;
    uint64_t hash;
    size_t op;
} merge_slot_t;

typedef struct merge_overlay {
    merge_slot_t *slots;
    size_t mask;
    bq_key_t k;
} merge_overlay_t;

static void overlay_init(merge_overlay_t *o, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 16)
        cap *= 2;
    o->slots = calloc(cap, sizeof *o->slots);
    if (!o->slots)
        abort();
    o->mask = cap - 1;
    bq_key_init(&o->k);
}

static void overlay_cleanup(merge_overlay_t *o)
{
    for (size_t i = 0; i <= o->mask; i++)
        free(o->slots[i].key);
    free(o->slots);
    bq_key_cleanup(&o->k);
}

/* The slot holding id, or the empty one where it would go. */
static merge_slot_t *overlay_slot(merge_overlay_t *o, const bson_value_t *id)
{
    bq_key_build(&o->k, id);
    uint64_t h = bq_key_hash(o->k.data, o->k.len);
    for (size_t i = (size_t)h & o->mask;; i = (i + 1) & o->mask) {
        merge_slot_t *s = &o->slots[i];
        if (!s->key ||
            (s->hash == h && s->len == o->k.len && memcmp(s->key, o->k.data, s->len) == 0))
            return s;
    }
}

/* The op index that wrote id in this intent, or -1. */
static long overlay_get(merge_overlay_t *o, const bson_value_t *id)
{
    merge_slot_t *s = overlay_slot(o, id);
    return s->key ? (long)s->op : -1;
}

static void overlay_put(merge_overlay_t *o, const bson_value_t *id, size_t op)
{
    merge_slot_t *s = overlay_slot(o, id);
    if (!s->key) {
        s->key = malloc(o->k.len ? o->k.len : 1);
        if (!s->key)
            abort();
        memcpy(s->key, o->k.data, o->k.len);
        s->len = o->k.len;
        s->hash = bq_key_hash(o->k.data, o->k.len);
    }
    s->op = op;
}

/* The value v of a filter {_id: {$eq: v}} (the default `on`), borrowed. */
static bool filter_on_id(const bson_t *filter, bson_value_t *v)
{
    bson_iter_t it, sub;
    if (bson_count_keys(filter) != 1 || !bson_iter_init_find(&it, filter, "_id") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &sub) ||
        !bson_iter_find(&sub, "$eq"))
        return false;
    *v = *bson_iter_value(&sub);
    return true;
}

/* Custom `on` fields: the values a filter {f: {$eq: v}, ...} (agg_merge_prepare's, in
 * `on` order) asks for, or that document `doc` holds at the `on` paths, as one array
 * value in `arr` (a key for the on-overlay). False when doc lacks one or holds an array
 * there (its key would not say what $eq matches). */
static bool on_values_of_filter(const bson_t *filter, bson_t *arr, bson_value_t *v)
{
    bson_iter_t it, sub;
    uint32_t i = 0;
    bson_init(arr);
    if (!bson_iter_init(&it, filter))
        return false;
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &sub) ||
            !bson_iter_find(&sub, "$eq"))
            return false;
        char k[16];
        snprintf(k, sizeof k, "%u", i++);
        bson_append_iter(arr, k, -1, &sub);
    }
    *v = (bson_value_t){.value_type = BSON_TYPE_ARRAY,
                        .value.v_doc = {(uint8_t *)bson_get_data(arr), arr->len}};
    return true;
}

static bool on_values_of_doc(const bson_t *doc, const bson_t *on, bson_t *arr, bson_value_t *v)
{
    bson_iter_t f, it, found;
    uint32_t i = 0;
    bson_init(arr);
    if (!bson_iter_init(&f, on))
        return false;
    while (bson_iter_next(&f)) {
        if (!BSON_ITER_HOLDS_UTF8(&f) || !bson_iter_init(&it, doc) ||
            !bson_iter_find_descendant(&it, bson_iter_utf8(&f, NULL), &found) ||
            BSON_ITER_HOLDS_ARRAY(&found))
            return false;
        char k[16];
        snprintf(k, sizeof k, "%u", i++);
        bson_append_iter(arr, k, -1, &found);
    }
    *v = (bson_value_t){.value_type = BSON_TYPE_ARRAY,
                        .value.v_doc = {(uint8_t *)bson_get_data(arr), arr->len}};
    return true;
}

/* Records op k under the `on` values its document holds now (every time it is written:
 * a whenMatched pipeline may change them); an op whose values cannot be keyed makes
 * later lookups search the ops one by one. */
static void on_overlay_put(out_state_t *st, merge_overlay_t *onov, bool *exact, size_t k)
{
    bson_t arr;
    bson_value_t v;
    if (on_values_of_doc(&st->ops[k].doc, st->out->on, &arr, &v))
        overlay_put(onov, &v, k);
    else
        *exact = false;
    bson_destroy(&arr);
}

/* merge_lookup's test of one stored document d: skipped when this intent rewrote it (ov
 * holds its _id), else 1 with *ex (d through *stored) and *seq when m matches it, 0 when
 * not, -1 with err. */
static int stored_match(const eng_doc_t *d, merge_overlay_t *ov, const bq_match_t *m,
                        bson_t *stored, const bson_t **ex, int64_t *seq, bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_init_static(stored, d->data, d->len) || !bson_iter_init_find(&it, stored, "_id") ||
        overlay_get(ov, bson_iter_value(&it)) >= 0)
        return 0;
    int found = bq_match_eval_env(m, stored, NULL, err);
    if (found > 0) {
        *ex = stored;
        *seq = d->seq;
    }
    return found;
}

/* Finds the target document `filter` matches: this intent's own writes first, then the
 * store at snap (skipping documents the intent rewrote). Returns 1 with *ex (borrowed from
 * an op, or from the store through *stored) and *op (the op's index, or -1 with *seq the
 * stored version's seq), 0 when nothing matches, -1 with err. Custom `on` fields find the
 * intent's writes through onov (when `exact`) and the store through the unique index on
 * a single `on` field (mongod requires one; a compound one is scanned). */
static int merge_lookup(out_state_t *st, eng_coll_t *c, int64_t snap, merge_overlay_t *ov,
                        merge_overlay_t *onov, bool exact, const bson_t *filter,
                        const bson_t **ex, bson_t *stored, long *op, int64_t *seq,
                        bq_error_t *err)
{
    eng_doc_t d;
    bson_value_t id;
    *op = -1;
    if (filter_on_id(filter, &id)) {
        long k = overlay_get(ov, &id);
        if (k >= 0) {
            *ex = &st->ops[k].doc;
            *op = k;
            return 1;
        }
        if (c && eng_coll_find_id(c, snap, &id, &d) && bson_init_static(stored, d.data, d.len)) {
            *ex = stored;
            *seq = d.seq;
            return 1;
        }
        return 0;
    }
    bq_match_t *m = bq_match_compile(filter, err);
    if (!m)
        return -1;
    int found = 0;
    bson_t arr = BSON_INITIALIZER;
    bson_value_t key;
    if (exact && on_values_of_filter(filter, &arr, &key)) {
        long k = overlay_get(onov, &key);
        if (k >= 0 && (found = bq_match_eval_env(m, &st->ops[k].doc, NULL, err)) > 0) {
            *ex = &st->ops[k].doc;
            *op = k;
        }
    } else {
        for (size_t k = 0; k < st->nops && !found; k++) {
            if (st->ops[k].kind != ENG_WOP_INSERT && st->ops[k].kind != ENG_WOP_UPDATE)
                continue;
            found = bq_match_eval_env(m, &st->ops[k].doc, NULL, err);
            if (found > 0) {
                *ex = &st->ops[k].doc;
                *op = (long)k;
            }
        }
    }
    bson_destroy(&arr);
    /* a single `on` field: its unique index's candidates instead of a scan */
    bson_iter_t f, fv;
    eng_doc_t *cand;
    size_t ncand;
    if (found == 0 && c && bson_count_keys(filter) == 1 && bson_iter_init(&f, filter) &&
        bson_iter_next(&f) && BSON_ITER_HOLDS_DOCUMENT(&f) && bson_iter_recurse(&f, &fv) &&
        bson_iter_find(&fv, "$eq") &&
        eng_coll_index_lookup(c, snap, bson_iter_key(&f), bson_iter_value(&fv), 1, &cand,
                              &ncand, NULL)) {
        for (size_t i = 0; i < ncand && !found; i++)
            found = stored_match(&cand[i], ov, m, stored, ex, seq, err);
        free(cand);
        bq_match_destroy(m);
        return found;
    }
    if (!found && c) {
        eng_scan_t scan;
        eng_scan_init(&scan, c, snap, false);
        while (!found && eng_scan_next(&scan, &d))
            found = stored_match(&d, ov, m, stored, ex, seq, err);
        if (!found && !wire_scan_done(&scan, err))
            found = -1;
    }
    bq_match_destroy(m);
    return found;
}

/* A DuplicateKey error's keyPattern and keyValue, which mongod puts in its reply. */
static void merge_dup_extra(wire_cmd_ctx_t *ctx, const agg_out_t *out, const bson_t *doc)
{
    if (!ctx->req)
        return;
    if (!ctx->req->reply_extra)
        ctx->req->reply_extra = bson_new();
    bson_t kp, kv, id_only = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&id_only, "0", "_id");
    bson_iter_t it;
    BSON_APPEND_DOCUMENT_BEGIN(ctx->req->reply_extra, "keyPattern", &kp);
    bson_iter_init(&it, out->on ? out->on : &id_only);
    while (bson_iter_next(&it))
        if (BSON_ITER_HOLDS_UTF8(&it))
            BSON_APPEND_INT32(&kp, bson_iter_utf8(&it, NULL), 1);
    bson_append_document_end(ctx->req->reply_extra, &kp);
    BSON_APPEND_DOCUMENT_BEGIN(ctx->req->reply_extra, "keyValue", &kv);
    bson_iter_init(&it, out->on ? out->on : &id_only);
    while (bson_iter_next(&it)) {
        bson_value_t v;
        if (BSON_ITER_HOLDS_UTF8(&it) && bq_path_get(doc, bson_iter_utf8(&it, NULL), &v))
            bson_append_value(&kv, bson_iter_utf8(&it, NULL), -1, &v);
    }
    bson_append_document_end(ctx->req->reply_extra, &kv);
    bson_destroy(&id_only);
}

static void merge_dup_id_error(wire_cmd_ctx_t *ctx, const out_state_t *st,
                               const bson_value_t *id, bq_error_t *err)
{
    bson_t kv = BSON_INITIALIZER;
    bson_append_value(&kv, "_id", 3, id);
    char *j = bson_as_relaxed_extended_json(&kv, NULL);
    bq_error_set(err, BQ_ERR_DuplicateKey,
                 "E11000 duplicate key error collection: %s.%s index: _id_ dup key: %s", st->db,
                 st->coll, j ? j : "");
    bson_free(j);
    if (ctx->req) {
        if (!ctx->req->reply_extra)
            ctx->req->reply_extra = bson_new();
        bson_t kp;
        BSON_APPEND_DOCUMENT_BEGIN(ctx->req->reply_extra, "keyPattern", &kp);
        BSON_APPEND_INT32(&kp, "_id", 1);
        bson_append_document_end(ctx->req->reply_extra, &kp);
        BSON_APPEND_DOCUMENT(ctx->req->reply_extra, "keyValue", &kv);
    }
    bson_destroy(&kv);
}

/* One produced document's write into the ops: an insert, or the new post-image of the
 * document at op index k (-1: an update of the stored version `seq`). */
static bool merge_emit(wire_cmd_ctx_t *ctx, out_state_t *st, eng_coll_t *c, int64_t snap,
                       merge_overlay_t *ov, merge_overlay_t *onov, bool *exact, int act,
                       const bson_t *result, const bson_t *old, long k, int64_t seq,
                       bq_error_t *err)
{
    bson_t *doc, prov;
    if (!out_doc_prepare(ctx, snap, result, &doc, &prov, err)) {
        bson_destroy(&prov);
        return false;
    }
    if (!out_validate(ctx, st, snap, doc, act == AGG_MERGE_ACT_INSERT ? NULL : old, err)) {
        bson_destroy(doc);
        bson_destroy(&prov);
        return false;
    }
    bson_iter_t it;
    bson_iter_init_find(&it, doc, "_id");
    const bson_value_t *id = bson_iter_value(&it);
    eng_doc_t d;
    bool ok = true;
    if (act == AGG_MERGE_ACT_INSERT &&
        (overlay_get(ov, id) >= 0 || (c && eng_coll_find_id(c, snap, id, &d)))) {
        merge_dup_id_error(ctx, st, id, err);
        ok = false;
    } else if (act == AGG_MERGE_ACT_REPLACE && k >= 0) {
        eng_wop_t *w = &st->ops[k];
        bson_reinit(&w->doc);
        bson_concat(&w->doc, doc);
        bson_reinit(&w->prov);
        bson_concat(&w->prov, &prov);
        if (st->out->on)
            on_overlay_put(st, onov, exact, (size_t)k);
    } else {
        size_t at = st->nops;
        eng_wop_t *w = out_op_add(st, act == AGG_MERGE_ACT_INSERT ? ENG_WOP_INSERT
                                                                  : ENG_WOP_UPDATE);
        bson_concat(&w->doc, doc);
        bson_concat(&w->prov, &prov);
        bson_value_copy(id, &w->id);
        w->expect = act == AGG_MERGE_ACT_INSERT ? ENG_EXPECT_ABSENT : seq;
        overlay_put(ov, &w->id, at);
        if (st->out->on)
            on_overlay_put(st, onov, exact, at);
    }
    bson_destroy(doc);
    bson_destroy(&prov);
    return ok;
}

/* Computes the ops of a $merge against the target as of now. */
static bool merge_compute(wire_cmd_ctx_t *ctx, out_state_t *st, bq_error_t *err)
{
    out_ops_clear(st);
    int64_t snap = eng_db_snapshot(ctx->server->db);
    eng_coll_t *c = eng_coll_get(ctx->server->db, st->db, st->coll, snap);
    st->cap = st->n + 1;
    st->ops = bson_aligned_alloc0(BSON_ALIGNOF(eng_wop_t), st->cap * sizeof *st->ops);
    if (!st->ops)
        abort();
    if (!c)
        out_op_add(st, ENG_WOP_CREATE);
    merge_overlay_t ov, onov; /* by _id; by the values of custom `on` fields */
    overlay_init(&ov, st->n);
    overlay_init(&onov, st->n);
    bool ok = true, exact = true;
    for (size_t i = 0; ok && i < st->n; i++) {
        const bson_t *ex = NULL;
        bson_t stored, result;
        long k = -1;
        int64_t seq = 0;
        int r = merge_lookup(st, c, snap, &ov, &onov, exact, st->filters[i], &ex, &stored, &k,
                             &seq, err);
        if (r < 0) {
            ok = false;
            break;
        }
        int act = agg_merge_apply(st->out, st->run, r ? ex : NULL, st->docs[i], &result, err);
        if (act < 0) {
            if (err && err->code == BQ_ERR_DuplicateKey)
                merge_dup_extra(ctx, st->out, st->docs[i]);
            ok = false;
        } else if (act == AGG_MERGE_ACT_INSERT || act == AGG_MERGE_ACT_REPLACE) {
            ok = merge_emit(ctx, st, c, snap, &ov, &onov, &exact, act, &result, r ? ex : NULL, k,
                            seq, err);
        }
        bson_destroy(&result);
    }
    overlay_cleanup(&ov);
    overlay_cleanup(&onov);
    if (ok && !c && st->nops == 1)
        out_ops_clear(st); /* nothing written: the target is not created either */
    return ok;
}

static bool out_resume(wire_cmd_ctx_t *ctx, bq_error_t *err);

static bool out_submit(wire_cmd_ctx_t *ctx, out_state_t *st, bq_error_t *err)
{
    if (!(st->out ? merge_compute(ctx, st, err) : out_compute(ctx, st, err)))
        return false;
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
            bq_error_set(err, BQ_ERR_WriteConflict, "%s: write conflict: gave up after %d "
                                                    "attempts",
                         st->out ? "$merge" : "$out", OUT_MAX_RETRIES);
            return false;
        }
        return out_submit(ctx, st, err);
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

bool wire_agg_out_write(wire_cmd_ctx_t *ctx, const agg_out_t *out, agg_run_t *run,
                        bson_t **docs, size_t n, int64_t snap, const char *ns, bq_error_t *err)
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
    } else if (!wire_ns_check(st->db, st->coll, err)) {
        ok = false;
    } else if (!strncmp(st->coll, "system.", 7)) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid %s target namespace, %s.%s",
                     out->merge ? "$merge" : "$out", st->db, st->coll);
        ok = false;
    } else if (wire_view_is(ctx->server->db, st->db, st->coll,
                            eng_db_snapshot(ctx->server->db))) {
        bq_error_set(err, BQ_ERR_CommandNotSupportedOnView,
                     "Cannot write the output of %s to view %s.%s",
                     out->merge ? "$merge" : "$out", st->db, st->coll);
        ok = false;
    }
    if (ok && out->merge && out->on) {
        int64_t now = eng_db_snapshot(ctx->server->db);
        eng_coll_t *c = eng_coll_get(ctx->server->db, st->db, st->coll, now);
        if (!merge_on_unique(ctx, c, now, out->on)) {
            bq_error_set(err, 51183, "Cannot find index to verify that join fields will be "
                                     "unique");
            ok = false;
        }
    }
    if (ok && out->merge) {
        st->out = out;
        st->run = run;
        st->filters = calloc(n ? n : 1, sizeof *st->filters);
        if (!st->filters)
            abort();
    }
    if (ok && eng_db_read_only(ctx->server->db)) {
        bq_error_set(err, BQ_ERR_NotWritablePrimary,
                     "the server is read-only after a failed fsync; restart it");
        ok = false;
    }
    for (size_t i = 0; i < n; i++) {
        if (ok && st->out) {
            /* $merge: each document as it will be matched; written when computed */
            bson_t doc, filter;
            ok = agg_merge_prepare(out, docs[i], &doc, &filter, err);
            if (ok) {
                st->docs[st->n] = bson_copy(&doc);
                st->filters[st->n] = bson_copy(&filter);
                st->n++;
            }
            bson_destroy(&doc);
            bson_destroy(&filter);
        } else if (ok) {
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
    if (ok && !st->out && st->n > 1) {
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
    return out_submit(ctx, st, err);
}
