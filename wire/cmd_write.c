/*
 * cmd_write.c: the write commands: insert, update, delete and findAndModify.
 *
 * How a write runs (DESIGN.md section 3): the handler validates on the I/O thread and
 * turns the request into a write intent, a list of ops each carrying what it expects to
 * find (an absent _id for an insert, the seq of the version an update was computed from).
 * The engine's committer re-checks those expectations in seq order, seals the ops into the
 * log, fsyncs, and completes the intent; the command then resumes on its I/O thread.
 *
 * insert sends all its documents as one intent. update, delete and findAndModify run one
 * statement at a time, because each statement must see the effects of the ones before it:
 * a statement's ops are computed from a fresh snapshot and submitted all-or-none; if
 * another writer got there first (an expectation fails), the statement is computed again
 * from a newer snapshot.
 *
 * On a time-series collection (cmd_timeseries.h) the statements see measurements: insert
 * wraps each into a bucket, update and delete match their filter against the measurements
 * and write the buckets that hold them, and MongoDB 7.0's limits on updates are checked
 * per statement (write errors 72); findAndModify is refused as 7.0 refuses it.
 */
#include <stdlib.h>
#include <string.h>

#include "bq_project.h"
#include "bq_sort.h"
#include "bq_update.h"
#include "cmd_aggregate.h"
#include "wire_cmd.h"
#include "cmd_timeseries.h"
#include "cmd_view.h"
#include "wire_validate.h"

#define WRITE_MAX_RETRIES 1000

/* ---- shared pieces ---- */

/* Reads writeConcern.j (default true: acknowledged writes are durable). */
static bool write_durable(const wire_cmd_ctx_t *ctx)
{
    bson_iter_t it, wc;
    if (bson_iter_init_find(&it, ctx->cmd, "writeConcern") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &wc) && bson_iter_find(&wc, "j"))
        return bson_iter_as_bool(&wc);
    return true;
}

/* Appends {index, code, errmsg[, keyPattern, keyValue][, errInfo]} to the writeErrors
 * array; `owner` is the command's state, under which wire_validate keeps errInfo. A
 * DuplicateKey names the index by dup_key ({keyPattern, keyValue} of a secondary unique
 * index) or else by dup_id (the _id index). */
static void write_error_append(const void *owner, bson_t *errors, uint32_t *n, size_t index,
                               const bq_error_t *e, const bson_value_t *dup_id,
                               const bson_t *dup_key)
{
    char key[16];
    bson_t d;
    snprintf(key, sizeof key, "%u", (*n)++);
    BSON_APPEND_DOCUMENT_BEGIN(errors, key, &d);
    BSON_APPEND_INT32(&d, "index", (int32_t)index);
    BSON_APPEND_INT32(&d, "code", e->code);
    if (e->code == BQ_ERR_DuplicateKey && dup_key) {
        /* a secondary unique index: the committer's {keyPattern, keyValue} */
        bson_concat(&d, dup_key);
    } else if (e->code == BQ_ERR_DuplicateKey && dup_id) {
        bson_t kp, kv;
        BSON_APPEND_DOCUMENT_BEGIN(&d, "keyPattern", &kp);
        BSON_APPEND_INT32(&kp, "_id", 1);
        bson_append_document_end(&d, &kp);
        BSON_APPEND_DOCUMENT_BEGIN(&d, "keyValue", &kv);
        bson_append_value(&kv, "_id", 3, dup_id);
        bson_append_document_end(&d, &kv);
    }
    if (e->code == BQ_ERR_DocumentValidationFailure)
        wire_validate_errinfo_append(owner, index, &d);
    BSON_APPEND_UTF8(&d, "errmsg", e->message);
    bson_append_document_end(errors, &d);
}

static void array_append_int64(bson_t *arr, uint32_t *n, int64_t v)
{
    char buf[16];
    const char *key;
    size_t klen = bson_uint32_to_string((*n)++, &key, buf, sizeof buf);
    bson_append_int64(arr, key, (int)klen, v);
}

/* Checks the _id of a document to be stored (MongoDB's storage rules). */
static bool id_valid(const bson_value_t *id, bq_error_t *err)
{
    switch (id->value_type) {
    case BSON_TYPE_ARRAY:
        bq_error_set(err, BQ_ERR_InvalidIdField, "The '_id' value cannot be of type array");
        return false;
    case BSON_TYPE_REGEX:
        bq_error_set(err, BQ_ERR_InvalidIdField, "can't use a regex for _id");
        return false;
    case BSON_TYPE_UNDEFINED:
        bq_error_set(err, BQ_ERR_InvalidIdField, "can't use a undefined for _id");
        return false;
    case BSON_TYPE_DOCUMENT: {
        bson_t sub;
        bson_iter_t it;
        if (bson_init_static(&sub, id->value.v_doc.data, id->value.v_doc.data_len) &&
            bson_iter_init(&it, &sub)) {
            while (bson_iter_next(&it)) {
                if (bson_iter_key(&it)[0] == '$') {
                    bq_error_set(err, BQ_ERR_DollarPrefixedFieldName,
                                 "_id fields may not contain '$'-prefixed fields: %s is not "
                                 "valid for storage.",
                                 bson_iter_key(&it));
                    return false;
                }
            }
        }
        return true;
    }
    default:
        return true;
    }
}

/*
 * Prepares a document for storage into `out` (always initialized): _id first (generated
 * as an ObjectId when missing), the _id checked, the size checked, and the provenance
 * fields validated and sealed into `prov` (always initialized) when the write sets them:
 * for an insert when present, for an update when they differ from `old`.
 */
static bool doc_prepare(wire_cmd_ctx_t *ctx, int64_t snap, const bson_t *doc, const bson_t *old,
                        bson_t *out, bson_t *prov, bson_value_t *id_out, bq_error_t *err)
{
    static const char *const prov_fields[] = {"_caused_by", "_evidence", "_confidence"};
    bson_iter_t it, id_it;
    bson_init(out);
    bson_init(prov);
    /* One pass over the keys: where _id is (the first one counts, later ones are dropped)
     * and whether any provenance field is there at all. */
    size_t nid = 0;
    bool id_first = false, has_prov = false;
    if (bson_iter_init(&it, doc)) {
        for (bool first = true; bson_iter_next(&it); first = false) {
            const char *key = bson_iter_key(&it);
            if (key[0] != '_')
                continue;
            if (strcmp(key, "_id") == 0) {
                if (nid++ == 0) {
                    id_it = it;
                    id_first = first;
                }
                continue;
            }
            for (size_t i = 0; i < 3; i++)
                has_prov |= strcmp(key, prov_fields[i]) == 0;
        }
    }
    if (nid && !id_valid(bson_iter_value(&id_it), err))
        return false;

    /* The document with _id first: as it came when it already is (the common case), or
     * rebuilt, with an ObjectId when it has none. */
    bson_t tmp = BSON_INITIALIZER;
    const bson_t *src = doc;
    bool as_is = nid == 1 && id_first;
    if (!as_is) {
        src = &tmp;
        if (nid) {
            bson_append_iter(&tmp, "_id", 3, &id_it);
        } else {
            bson_oid_t oid;
            bson_oid_init(&oid, NULL);
            BSON_APPEND_OID(&tmp, "_id", &oid);
        }
        bson_iter_init(&it, doc);
        while (bson_iter_next(&it))
            if (strcmp(bson_iter_key(&it), "_id") != 0)
                bson_append_iter(&tmp, bson_iter_key(&it), -1, &it);
    }

    bool touches_prov = false;
    for (size_t i = 0; i < 3 && has_prov && !touches_prov; i++) {
        bson_iter_t a, b;
        bool in_new = bson_iter_init_find(&a, src, prov_fields[i]);
        bool in_old = old && bson_iter_init_find(&b, old, prov_fields[i]);
        if (in_new && !in_old)
            touches_prov = true;
        else if (in_new && in_old)
            touches_prov = bq_value_compare(bson_iter_value(&a), bson_iter_value(&b)) != 0 ||
                           bson_iter_type(&a) != bson_iter_type(&b);
    }
    bool ok = true;
    if (touches_prov) {
        bool has;
        bson_destroy(out);
        bson_destroy(prov);
        ok = eng_prov_prepare(ctx->server->db, ctx->db, snap, src, out, prov, &has, err);
    } else {
        bson_concat(out, src);
    }
    bson_destroy(&tmp);
    if (ok && out->len > WIRE_MAX_BSON_SIZE) {
        bq_error_set(err, BQ_ERR_BSONObjectTooLarge,
                     "object to insert too large. size in bytes: %u, max size: %d", out->len,
                     WIRE_MAX_BSON_SIZE);
        ok = false;
    }
    /* _id is out's first field, unless eng_prov_prepare rebuilt it */
    if (ok && (touches_prov ? bson_iter_init_find(&it, out, "_id")
                            : bson_iter_init(&it, out) && bson_iter_next(&it)))
        bson_value_copy(bson_iter_value(&it), id_out);
    return ok;
}

/* ---- insert ---- */

typedef struct insert_state {
    eng_intent_t intent;
    eng_wop_t *ops;
    size_t *op_index;       /* the document index of each op */
    size_t nops;
    size_t *verr_index;     /* documents refused before submission */
    bq_error_t *verr;
    size_t nverr;
    bool ordered;
} insert_state_t;

static void insert_state_free(void *p)
{
    insert_state_t *st = p;
    for (size_t i = 0; i < st->nops; i++)
        eng_wop_cleanup(&st->ops[i]);
    bson_free(st->ops);
    free(st->op_index);
    free(st->verr_index);
    free(st->verr);
    free(st);
}

static bool insert_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    insert_state_t *st = ctx->state;
    if (st->intent.err.code) {
        *err = st->intent.err;
        return false;
    }
    bson_t errors = BSON_INITIALIZER, seqs = BSON_INITIALIZER;
    uint32_t nerr = 0, nseq = 0;
    int64_t n = 0;
    size_t v = 0; /* next validation error, in index order */
    bool stopped = false;
    for (size_t i = 0; i < st->nops && !stopped; i++) {
        eng_wop_t *w = &st->ops[i];
        while (v < st->nverr && st->verr_index[v] < st->op_index[i]) {
            write_error_append(st, &errors, &nerr, st->verr_index[v], &st->verr[v], NULL, NULL);
            v++;
        }
        if (w->seq >= 0) {
            n++;
            array_append_int64(&seqs, &nseq, w->seq);
        } else if (w->err.code) {
            write_error_append(st, &errors, &nerr, st->op_index[i], &w->err, &w->id,
                               w->dup_key);
            stopped = st->ordered;
        }
    }
    for (; v < st->nverr && !stopped; v++) {
        write_error_append(st, &errors, &nerr, st->verr_index[v], &st->verr[v], NULL, NULL);
        stopped = st->ordered;
    }
    atomic_fetch_add(&ctx->server->opcounters.insert, (uint64_t)n);
    BSON_APPEND_INT32(ctx->reply, "n", (int32_t)n);
    if (nerr)
        BSON_APPEND_ARRAY(ctx->reply, "writeErrors", &errors);
    BSON_APPEND_ARRAY(ctx->reply, "seqs", &seqs);
    bson_destroy(&errors);
    bson_destroy(&seqs);
    return true;
}

bool cmd_insert(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    bson_iter_t docs;
    bool present, ordered;
    if (!wire_arg_coll(ctx, true, &coll, err))
        return false;
    /* a time-series collection: the measurements go into its buckets (cmd_timeseries.h) */
    const bson_t *ts_opts = wire_ts_options(ctx->server->db, ctx->db, coll,
                                            eng_db_snapshot(ctx->server->db));
    char buckets[ENG_NS_MAX + 1];
    if (ts_opts) {
        snprintf(buckets, sizeof buckets, WIRE_TS_BUCKETS_PREFIX "%s", coll);
        coll = buckets;
    }
    if ((!ts_opts && !wire_view_refuse(ctx, coll, NULL, err)) ||
        !wire_arg_array(ctx, "documents", &docs, &present, err) ||
        !wire_arg_bool(ctx, "ordered", true, &ordered, err))
        return false;
    if (!present) {
        bq_error_set(err, 40414, "BSON field 'insert.documents' is missing but a required field");
        return false;
    }
    uint32_t count = 0;
    bson_iter_t probe = docs;
    while (bson_iter_next(&probe)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&probe)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field 'insert.documents.%s' is the wrong type '%s', expected "
                         "type 'object'",
                         bson_iter_key(&probe), bq_type_name(bson_iter_type(&probe)));
            return false;
        }
        count++;
    }
    if (count == 0 || count > WIRE_MAX_WRITE_BATCH) {
        bq_error_set(err, BQ_ERR_InvalidLength,
                     "Write batch sizes must be between 1 and %d. Got %u operations.",
                     WIRE_MAX_WRITE_BATCH, count);
        return false;
    }
    if (eng_db_read_only(ctx->server->db)) {
        bq_error_set(err, BQ_ERR_NotWritablePrimary,
                     "the server is read-only after a failed fsync; restart it");
        return false;
    }

    insert_state_t *st = calloc(1, sizeof *st);
    if (!st)
        abort();
    /* eng_wop_t embeds bson_t: keep libbson's alignment, and never move the array */
    st->ops = bson_aligned_alloc0(BSON_ALIGNOF(eng_wop_t), count * sizeof *st->ops);
    st->op_index = calloc(count, sizeof *st->op_index);
    st->verr_index = calloc(count, sizeof *st->verr_index);
    st->verr = calloc(count, sizeof *st->verr);
    if (!st->ops || !st->op_index || !st->verr_index || !st->verr)
        abort();
    st->ordered = ordered;
    ctx->state = st;
    ctx->state_free = insert_state_free;

    int64_t snap = eng_db_snapshot(ctx->server->db);
    size_t index = 0;
    while (bson_iter_next(&docs)) {
        uint32_t len;
        const uint8_t *data;
        bson_t doc;
        bson_iter_document(&docs, &len, &data);
        bson_init_static(&doc, data, len);
        eng_wop_t *w = &st->ops[st->nops];
        eng_wop_init(w, ENG_WOP_INSERT, ctx->db, coll);
        bson_destroy(&w->doc);
        bson_destroy(&w->prov);
        bq_error_t e;
        bq_error_clear(&e);
        bool ok;
        if (ts_opts) {
            bson_t measurement;
            bson_value_t mid;
            mid.value_type = BSON_TYPE_EOD;
            ok = doc_prepare(ctx, snap, &doc, NULL, &measurement, &w->prov, &mid, &e);
            if (ok)
                ok = wire_ts_bucket_build(ts_opts, &measurement, &w->doc, &w->id, &e);
            else
                bson_init(&w->doc);
            bson_destroy(&measurement);
            bson_value_destroy(&mid);
        } else {
            ok = doc_prepare(ctx, snap, &doc, NULL, &w->doc, &w->prov, &w->id, &e) &&
                 wire_validate(ctx, coll, snap, index, &w->doc, NULL, &e);
        }
        if (!ok) {
            eng_wop_cleanup(w);
            st->verr_index[st->nverr] = index;
            st->verr[st->nverr++] = e;
            if (ordered)
                break;
        } else {
            w->expect = ENG_EXPECT_ABSENT;
            st->op_index[st->nops++] = index;
        }
        index++;
    }
    if (st->nops == 0)
        return insert_done(ctx, err);
    st->intent.ops = st->ops;
    st->intent.nops = st->nops;
    st->intent.ordered = ordered;
    st->intent.durable = write_durable(ctx);
    wire_cmd_submit(ctx, &st->intent, insert_done);
    return true;
}

/* ---- update, delete, findAndModify: one statement at a time ---- */

typedef enum stmt_kind { STMT_UPDATE, STMT_DELETE, STMT_FAM } stmt_kind_t;

/* A statement document as bytes: a bson_t must not live in an array that grows (an
 * initialized bson_t points into itself). */
typedef struct stmt_raw {
    const uint8_t *data;
    uint32_t len;
} stmt_raw_t;

typedef struct stmt_state {
    stmt_kind_t kind;
    const char *coll;
    stmt_raw_t *stmts;      /* statement documents (borrowed from the command) */
    size_t nstmts, i;
    bool ordered, durable;
    int retries;
    /* totals */
    int64_t n, modified;
    bson_t upserted, errors, seqs;
    uint32_t nupserted, nerrors, nseqs;
    /* the statement in flight */
    eng_intent_t intent;
    eng_wop_t *ops;         /* aligned array of ops_cap, allocated per statement */
    size_t nops, ops_cap;
    int64_t cur_matched;
    bool cur_upsert;
    bson_value_t cur_upsert_id;
    /* findAndModify: the document to return */
    bson_t fam_value;
    bool fam_has_value;
    bool fam_remove;
    /* a time-series collection X (cmd_timeseries.h): statements match and update its
     * measurements, the ops write the buckets in coll = system.buckets.X */
    bool ts;
    bson_t ts_opts;         /* X's catalog options, copied */
    char ts_coll[ENG_NS_MAX + 1];
} stmt_state_t;

static void stmt_ops_clear(stmt_state_t *st)
{
    for (size_t i = 0; i < st->nops; i++)
        eng_wop_cleanup(&st->ops[i]);
    bson_free(st->ops);
    st->ops = NULL;
    st->nops = st->ops_cap = 0;
    if (st->cur_upsert)
        bson_value_destroy(&st->cur_upsert_id);
    st->cur_upsert = false;
}

static void stmt_state_free(void *p)
{
    stmt_state_t *st = p;
    stmt_ops_clear(st);
    free(st->stmts);
    bson_destroy(&st->upserted);
    bson_destroy(&st->errors);
    bson_destroy(&st->seqs);
    bson_destroy(&st->fam_value);
    bson_destroy(&st->ts_opts);
    bson_free(st);
}

/* Reserves room for a statement's ops once (it knows how many documents it matched), since
 * an array of eng_wop_t must not move. */
static void stmt_ops_reserve(stmt_state_t *st, size_t n)
{
    st->ops = bson_aligned_alloc0(BSON_ALIGNOF(eng_wop_t), (n ? n : 1) * sizeof *st->ops);
    st->ops_cap = n;
}

static eng_wop_t *stmt_op_add(stmt_state_t *st, wire_cmd_ctx_t *ctx, eng_wop_kind_t kind)
{
    BSON_ASSERT(st->nops < st->ops_cap);
    eng_wop_t *w = &st->ops[st->nops++];
    eng_wop_init(w, kind, ctx->db, st->coll);
    return w;
}

/* Statement fields, read the way the command names them. */
typedef struct stmt_args {
    bson_t q, u, sort, fields;
    bool has_u, u_is_pipeline, upsert, multi, remove, return_new, has_sort, has_fields;
    int64_t limit;             /* delete */
    bool has_array_filters;
    bson_t array_filters;
} stmt_args_t;

static bool stmt_doc_field(const bson_t *stmt, const char *cmd, const char *key, bson_t *out,
                           bool required, bool *present, bq_error_t *err)
{
    bson_iter_t it;
    *present = false;
    bson_init(out);
    if (!bson_iter_init_find(&it, stmt, key) || BSON_ITER_HOLDS_NULL(&it)) {
        if (required) {
            bq_error_set(err, 40414, "BSON field '%s.%s' is missing but a required field", cmd,
                         key);
            return false;
        }
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it) && !BSON_ITER_HOLDS_ARRAY(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field '%s.%s' is the wrong type '%s', expected type 'object'", cmd, key,
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    uint32_t len;
    const uint8_t *data;
    if (BSON_ITER_HOLDS_ARRAY(&it))
        bson_iter_array(&it, &len, &data);
    else
        bson_iter_document(&it, &len, &data);
    bson_init_static(out, data, len);
    *present = true;
    return true;
}

static bool stmt_args_read(stmt_state_t *st, const bson_t *stmt, stmt_args_t *a, bq_error_t *err)
{
    bool present;
    bson_iter_t it;
    memset(a, 0, sizeof *a);
    const char *cmd = st->kind == STMT_UPDATE ? "update.updates"
                      : st->kind == STMT_DELETE ? "delete.deletes"
                                                : "findAndModify";
    const char *qkey = st->kind == STMT_FAM ? "query" : "q";
    const char *ukey = st->kind == STMT_FAM ? "update" : "u";
    if (!stmt_doc_field(stmt, cmd, qkey, &a->q, st->kind != STMT_FAM, &present, err))
        return false;
    if (st->kind != STMT_DELETE &&
        !stmt_doc_field(stmt, cmd, ukey, &a->u, st->kind == STMT_UPDATE, &a->has_u, err))
        return false;
    if (a->has_u && bson_iter_init_find(&it, stmt, ukey) && BSON_ITER_HOLDS_ARRAY(&it))
        a->u_is_pipeline = true;
    if (bson_iter_init_find(&it, stmt, "upsert"))
        a->upsert = bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, stmt, "multi"))
        a->multi = bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, stmt, "remove"))
        a->remove = bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, stmt, "new"))
        a->return_new = bson_iter_as_bool(&it);
    if (!stmt_doc_field(stmt, cmd, "sort", &a->sort, false, &a->has_sort, err) ||
        !stmt_doc_field(stmt, cmd, "fields", &a->fields, false, &a->has_fields, err) ||
        !stmt_doc_field(stmt, cmd, "arrayFilters", &a->array_filters, false,
                        &a->has_array_filters, err))
        return false;
    if (st->kind == STMT_DELETE) {
        if (!bson_iter_init_find(&it, stmt, "limit")) {
            bq_error_set(err, 40414, "BSON field 'delete.deletes.limit' is missing but a "
                                     "required field");
            return false;
        }
        a->limit = bson_iter_as_int64(&it);
        if (!BSON_ITER_HOLDS_NUMBER(&it) || (a->limit != 0 && a->limit != 1)) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "The limit field in delete objects must be 0 or 1. Got %lld",
                         (long long)a->limit);
            return false;
        }
    }
    if (st->kind == STMT_FAM) {
        if (a->remove && a->has_u) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Cannot specify both an update and remove=true");
            return false;
        }
        if (!a->remove && !a->has_u) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Either an update or remove=true must be specified");
            return false;
        }
        if (a->remove && a->upsert) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Cannot specify both upsert=true and remove=true ");
            return false;
        }
        if (a->remove && a->return_new) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Cannot specify both new=true and remove=true; 'remove' always returns "
                         "the deleted document");
            return false;
        }
    }
    if (a->u_is_pipeline && a->has_array_filters) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "arrayFilters may not be specified for pipeline-syle updates");
        return false;
    }
    return true;
}

/* The document a pipeline-style upsert inserts: the pipeline run over the filter's
 * equality seed (cmd_aggregate_update.c). */
static bool upsert_doc_pipeline(wire_cmd_ctx_t *ctx, const stmt_args_t *a, bson_t *out,
                                bq_error_t *err)
{
    bson_t seed;
    bool ok = bq_upsert_seed(&a->q, &seed, err);
    if (ok)
        ok = wire_agg_update_apply(ctx, &a->u, &seed, true, out, err);
    else
        bson_init(out);
    bson_destroy(&seed);
    return ok;
}

/* The document an upsert inserts. */
static bool upsert_doc(const stmt_args_t *a, const bq_update_t *u, bson_t *out,
                       bq_error_t *err)
{
    bson_t seed;
    bson_init(out);
    if (!bq_upsert_seed(&a->q, &seed, err)) {
        bson_destroy(&seed);
        return false;
    }
    bool changed, ok;
    bson_destroy(out);
    if (bq_update_is_replacement(u)) {
        /* the replacement, with the filter's _id when it has none */
        bson_t r = BSON_INITIALIZER;
        bson_iter_t it;
        if (!bson_has_field(&a->u, "_id") && bson_iter_init_find(&it, &seed, "_id"))
            bson_append_iter(&r, "_id", 3, &it);
        bson_concat(&r, &a->u);
        bson_init(out);
        bson_concat(out, &r);
        bson_destroy(&r);
        ok = true;
    } else {
        ok = bq_update_apply(u, &seed, true, out, &changed, err);
    }
    bson_destroy(&seed);
    return ok;
}

static bool stmt_resume(wire_cmd_ctx_t *ctx, bq_error_t *err);
static bool stmt_next(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* Records a statement's failure; for an ordered command, stops. */
static void stmt_fail(stmt_state_t *st, const bq_error_t *e)
{
    write_error_append(st, &st->errors, &st->nerrors, st->i, e, NULL, NULL);
    st->i = st->ordered ? st->nstmts : st->i + 1;
}

/* stmt_fail for an op the committer refused: a duplicate key names its index. */
static void stmt_fail_op(stmt_state_t *st, const eng_wop_t *w)
{
    write_error_append(st, &st->errors, &st->nerrors, st->i, &w->err,
                       w->id.value_type != BSON_TYPE_EOD ? &w->id : NULL, w->dup_key);
    st->i = st->ordered ? st->nstmts : st->i + 1;
}

/*
 * Computes the current statement from a fresh snapshot. Returns 1 when its ops were
 * submitted, 0 when it finished without writing (st->i advanced), -1 on a command error.
 */
static int stmt_compute(wire_cmd_ctx_t *ctx, stmt_state_t *st, bq_error_t *err)
{
    stmt_args_t a;
    bq_error_t e;
    bq_error_clear(&e);
    stmt_ops_clear(st);
    st->cur_matched = 0;
    bson_t stmt;
    bson_init_static(&stmt, st->stmts[st->i].data, st->stmts[st->i].len);
    int64_t snap = eng_db_snapshot(ctx->server->db);
    if (!stmt_args_read(st, &stmt, &a, &e) ||
        !wire_hint_check(&stmt, eng_coll_get(ctx->server->db, ctx->db, st->coll, snap), snap,
                         NULL, &e)) {
        if (st->kind == STMT_FAM) {
            *err = e;
            return -1;
        }
        stmt_fail(st, &e);
        return 0;
    }
    if (st->ts && st->kind == STMT_UPDATE &&
        !wire_ts_update_check(&st->ts_opts, &a.q, &a.u, a.u_is_pipeline, a.multi, a.upsert,
                              &e)) {
        stmt_fail(st, &e);
        return 0;
    }
    st->fam_remove = a.remove;
    bq_collation_t *co = NULL; /* the statement's collation; the matcher and sort hold refs */
    bq_match_t *m = wire_collation(&stmt, &co, &e) ? wire_match_compile(ctx, &a.q, co, &e)
                                                   : NULL;
    /* the _id index is binary; a bucket's _id is not its measurement's */
    const bson_t *id_filter = co || st->ts ? NULL : &a.q;
    bq_update_t *u = NULL;
    bq_sort_t *s = NULL;
    eng_doc_t *docs = NULL;
    size_t ndocs = 0;
    bool ok = m != NULL;
    if (ok && a.has_u && a.u_is_pipeline)
        ok = wire_agg_update_check(ctx, &a.u, &e);
    else if (ok && a.has_u)
        ok = (u = bq_update_compile(&a.u, a.has_array_filters ? &a.array_filters : NULL, &e)) !=
             NULL;
    if (ok && u && a.multi && bq_update_is_replacement(u)) {
        bq_error_set(&e, BQ_ERR_FailedToParse,
                     "multi update is not supported for replacement-style update");
        ok = false;
    }
    if (ok && a.has_sort && !bson_empty(&a.sort)) {
        ok = (s = bq_sort_compile(&a.sort, &e)) != NULL;
        if (ok)
            bq_sort_set_collation(s, co);
    }
    bq_collation_destroy(co);
    if (ok) {
        eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, st->coll, snap);
        if (c && (ndocs = st->ts ? wire_ts_collect(c, snap, m, &docs, &e)
                                 : wire_collect(c, snap, m, id_filter, &docs, &e)) ==
                     WIRE_COLLECT_ERROR) {
            ndocs = 0;
            ok = false;
        }
        if (s && ndocs > 1) {
            /* only the first in sort order is wanted: a linear pass, stable */
            size_t best = 0;
            for (size_t i = 1; i < ndocs; i++) {
                bson_t x, y;
                bson_init_static(&x, docs[i].data, docs[i].len);
                bson_init_static(&y, docs[best].data, docs[best].len);
                if (bq_sort_compare(s, &x, &y) < 0)
                    best = i;
            }
            docs[0] = docs[best];
        }
        bool many = st->kind == STMT_UPDATE ? a.multi : st->kind == STMT_DELETE && a.limit == 0;
        if (!many && ndocs > 1)
            ndocs = 1;
        st->cur_matched = (int64_t)ndocs;
    }
    bson_reinit(&st->fam_value);
    st->fam_has_value = false;
    stmt_ops_reserve(st, ndocs + 1); /* one op per document, or the upsert */
    for (size_t i = 0; ok && i < ndocs; i++) {
        bson_t doc; /* the document, or the bucket's measurement */
        bson_init_static(&doc, docs[i].data, docs[i].len);
        bson_iter_t idit; /* the _id of what is stored: the document or its bucket */
        bson_iter_init_find(&idit, &doc, "_id");
        if (st->ts && !wire_ts_measurement(docs[i].data, docs[i].len, &doc))
            continue; /* wire_ts_collect returns buckets only */
        if (st->kind == STMT_DELETE || (st->kind == STMT_FAM && a.remove)) {
            eng_wop_t *w = stmt_op_add(st, ctx, ENG_WOP_DELETE);
            bson_value_copy(bson_iter_value(&idit), &w->id);
            w->expect = docs[i].seq;
            if (st->kind == STMT_FAM) {
                bson_concat(&st->fam_value, &doc);
                st->fam_has_value = true;
            }
            continue;
        }
        bson_t updated;
        bool changed = false;
        bq_update_opts_t uo = {0};
        if (a.u_is_pipeline) {
            if (!wire_agg_update_apply(ctx, &a.u, &doc, false, &updated, &e)) {
                bson_destroy(&updated);
                ok = false;
                break;
            }
            changed = updated.len != doc.len ||
                      memcmp(bson_get_data(&updated), bson_get_data(&doc), doc.len) != 0;
        } else {
            if (bq_update_uses_positional(u)) {
                uo.has_positional = true;
                if (!bq_update_positional_index(u, &a.q, &doc, &uo.positional_index))
                    uo.positional_index = -1; /* the update then fails as mongod's does */
            }
            if (!bq_update_apply_ex(u, &doc, &uo, &updated, &changed, &e)) {
                bson_destroy(&updated);
                ok = false;
                break;
            }
        }
        if (st->kind == STMT_FAM) {
            bson_concat(&st->fam_value, a.return_new ? &updated : &doc);
            st->fam_has_value = true;
        }
        if (changed && st->ts) {
            /* the updated measurement, re-wrapped into its bucket */
            eng_wop_t *w = stmt_op_add(st, ctx, ENG_WOP_UPDATE);
            bson_t measurement;
            bson_value_t mid;
            mid.value_type = BSON_TYPE_EOD;
            bson_destroy(&w->doc);
            bson_destroy(&w->prov);
            ok = doc_prepare(ctx, snap, &updated, &doc, &measurement, &w->prov, &mid, &e);
            if (ok)
                ok = wire_ts_bucket_rebuild(&st->ts_opts, docs[i].data, docs[i].len,
                                            &measurement, &w->doc, &w->id, &e);
            else
                bson_init(&w->doc);
            bson_destroy(&measurement);
            bson_value_destroy(&mid);
            w->expect = docs[i].seq;
        } else if (changed) {
            eng_wop_t *w = stmt_op_add(st, ctx, ENG_WOP_UPDATE);
            bson_destroy(&w->doc);
            bson_destroy(&w->prov);
            ok = doc_prepare(ctx, snap, &updated, &doc, &w->doc, &w->prov, &w->id, &e) &&
                 wire_validate(ctx, st->coll, snap, st->i, &w->doc, &doc, &e);
            w->expect = docs[i].seq;
            if (ok && st->kind == STMT_FAM && a.return_new) {
                bson_reinit(&st->fam_value);
                bson_concat(&st->fam_value, &w->doc);
            }
        }
        bson_destroy(&updated);
    }
    if (ok && ndocs == 0 && a.upsert && (u || a.u_is_pipeline)) {
        bson_t doc;
        ok = a.u_is_pipeline ? upsert_doc_pipeline(ctx, &a, &doc, &e) : upsert_doc(&a, u, &doc, &e);
        if (ok) {
            eng_wop_t *w = stmt_op_add(st, ctx, ENG_WOP_INSERT);
            bson_destroy(&w->doc);
            bson_destroy(&w->prov);
            ok = doc_prepare(ctx, snap, &doc, NULL, &w->doc, &w->prov, &w->id, &e) &&
                 wire_validate(ctx, st->coll, snap, st->i, &w->doc, NULL, &e);
            w->expect = ENG_EXPECT_ABSENT;
            if (ok) {
                st->cur_upsert = true;
                bson_value_copy(&w->id, &st->cur_upsert_id);
                if (st->kind == STMT_FAM && a.return_new) {
                    bson_concat(&st->fam_value, &w->doc);
                    st->fam_has_value = true;
                }
            }
        }
        bson_destroy(&doc);
    }
    free(docs);
    bq_match_destroy(m);
    if (u)
        bq_update_destroy(u);
    if (s)
        bq_sort_destroy(s);
    if (ok && st->kind == STMT_FAM && st->fam_has_value && a.has_fields &&
        !bson_empty(&a.fields)) {
        bq_project_t *p = wire_project_compile(ctx, &a.fields, &e);
        bson_t projected;
        bq_project_opts_t po = {.filter = &a.q};
        ok = p && bq_project_apply_ex(p, &st->fam_value, &po, &projected, &e);
        if (p) {
            if (ok) {
                bson_reinit(&st->fam_value);
                bson_concat(&st->fam_value, &projected);
            }
            bson_destroy(&projected);
            bq_project_destroy(p);
        }
    }
    if (!ok) {
        if (st->kind == STMT_FAM) {
            /* findAndModify reports a validation failure as a command error whose reply
             * carries errInfo beside code and errmsg */
            if (e.code == BQ_ERR_DocumentValidationFailure) {
                if (!ctx->req->reply_extra)
                    ctx->req->reply_extra = bson_new();
                wire_validate_errinfo_append(ctx->state, st->i, ctx->req->reply_extra);
            }
            *err = e;
            return -1;
        }
        stmt_fail(st, &e);
        return 0;
    }
    if (st->nops == 0) { /* matched nothing, or changed nothing */
        st->n += st->cur_matched;
        st->i++;
        return 0;
    }
    memset(&st->intent, 0, sizeof st->intent);
    st->intent.ops = st->ops;
    st->intent.nops = st->nops;
    st->intent.ordered = true;
    st->intent.all_or_none = true;
    st->intent.durable = st->durable;
    wire_cmd_submit(ctx, &st->intent, stmt_resume);
    return 1;
}

/* Builds the reply once every statement is done. */
static bool stmt_reply(wire_cmd_ctx_t *ctx, stmt_state_t *st, bq_error_t *err)
{
    bson_t *r = ctx->reply;
    if (st->kind == STMT_FAM) {
        if (st->nerrors) {
            /* findAndModify reports its one statement's failure as a command error */
            bson_iter_t it, d;
            bson_iter_init(&it, &st->errors);
            bson_iter_next(&it);
            bson_iter_recurse(&it, &d);
            int32_t code = 8;
            const char *msg = "write failed";
            while (bson_iter_next(&d)) {
                const char *k = bson_iter_key(&d);
                if (strcmp(k, "code") == 0) {
                    code = bson_iter_int32(&d);
                } else if (strcmp(k, "errmsg") == 0) {
                    msg = bson_iter_utf8(&d, NULL);
                } else if (strcmp(k, "keyPattern") == 0 || strcmp(k, "keyValue") == 0) {
                    /* a duplicate key error keeps them beside code and errmsg */
                    if (!ctx->req->reply_extra)
                        ctx->req->reply_extra = bson_new();
                    bson_append_iter(ctx->req->reply_extra, k, -1, &d);
                }
            }
            bq_error_set(err, code, "%s", msg);
            return false;
        }
        bson_t leo;
        BSON_APPEND_DOCUMENT_BEGIN(r, "lastErrorObject", &leo);
        BSON_APPEND_INT32(&leo, "n", st->n + st->nupserted > 0 ? 1 : 0);
        if (!st->fam_remove) {
            BSON_APPEND_BOOL(&leo, "updatedExisting", st->n > 0);
            bson_iter_t it, d;
            if (st->nupserted && bson_iter_init(&it, &st->upserted) && bson_iter_next(&it) &&
                bson_iter_recurse(&it, &d) && bson_iter_find(&d, "_id"))
                bson_append_iter(&leo, "upserted", -1, &d);
        }
        bson_append_document_end(r, &leo);
        if (st->fam_has_value)
            BSON_APPEND_DOCUMENT(r, "value", &st->fam_value);
        else
            BSON_APPEND_NULL(r, "value");
        BSON_APPEND_ARRAY(r, "seqs", &st->seqs);
        return true;
    }
    BSON_APPEND_INT32(r, "n", (int32_t)(st->n + st->nupserted));
    if (st->kind == STMT_UPDATE) {
        BSON_APPEND_INT32(r, "nModified", (int32_t)st->modified);
        if (st->nupserted)
            BSON_APPEND_ARRAY(r, "upserted", &st->upserted);
    }
    if (st->nerrors)
        BSON_APPEND_ARRAY(r, "writeErrors", &st->errors);
    BSON_APPEND_ARRAY(r, "seqs", &st->seqs);
    return true;
}

/* Runs statements until one is submitted or all are done. */
static bool stmt_next(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    stmt_state_t *st = ctx->state;
    while (st->i < st->nstmts) {
        int r = stmt_compute(ctx, st, err);
        if (r < 0)
            return false;
        if (r > 0)
            return true; /* pending */
    }
    return stmt_reply(ctx, st, err);
}

static bool stmt_resume(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    stmt_state_t *st = ctx->state;
    eng_intent_t *in = &st->intent;
    if (in->err.code) { /* I/O failure or read-only: nothing of this statement is durable */
        *err = in->err;
        return false;
    }
    if (in->conflict) {
        if (++st->retries > WRITE_MAX_RETRIES) {
            bq_error_t e;
            bq_error_set(&e, BQ_ERR_WriteConflict,
                         "write conflict: gave up after %d attempts", WRITE_MAX_RETRIES);
            stmt_fail(st, &e);
            st->retries = 0;
        }
        return stmt_next(ctx, err); /* computes the same statement again, or the next */
    }
    st->retries = 0;
    for (size_t i = 0; i < st->nops; i++) {
        if (st->ops[i].err.code) {
            stmt_fail_op(st, &st->ops[i]);
            return stmt_next(ctx, err);
        }
        array_append_int64(&st->seqs, &st->nseqs, st->ops[i].seq);
    }
    if (st->cur_upsert) {
        char key[16];
        bson_t d;
        snprintf(key, sizeof key, "%u", st->nupserted++);
        BSON_APPEND_DOCUMENT_BEGIN(&st->upserted, key, &d);
        BSON_APPEND_INT32(&d, "index", (int32_t)st->i);
        bson_append_value(&d, "_id", 3, &st->cur_upsert_id);
        bson_append_document_end(&st->upserted, &d);
    } else {
        st->n += st->cur_matched;
        st->modified += (int64_t)st->nops;
    }
    st->i++;
    return stmt_next(ctx, err);
}

/* Starts a statement-at-a-time command over `stmts` (an array of documents). */
static bool stmt_start(wire_cmd_ctx_t *ctx, stmt_kind_t kind, const char *coll,
                       const bson_t *ts_opts, bson_iter_t *stmts, const bson_t *single,
                       bool ordered, bq_error_t *err)
{
    if (eng_db_read_only(ctx->server->db)) {
        bq_error_set(err, BQ_ERR_NotWritablePrimary,
                     "the server is read-only after a failed fsync; restart it");
        return false;
    }
    stmt_state_t *st = BSON_ALIGNED_ALLOC0(stmt_state_t); /* embeds bson_t */
    st->kind = kind;
    st->coll = coll;
    st->ordered = ordered;
    st->durable = write_durable(ctx);
    bson_init(&st->upserted);
    bson_init(&st->errors);
    bson_init(&st->seqs);
    bson_init(&st->fam_value);
    bson_init(&st->ts_opts);
    if (ts_opts) {
        st->ts = true;
        bson_concat(&st->ts_opts, ts_opts);
        snprintf(st->ts_coll, sizeof st->ts_coll, WIRE_TS_BUCKETS_PREFIX "%s", coll);
        st->coll = st->ts_coll;
    }
    ctx->state = st;
    ctx->state_free = stmt_state_free;
    if (single) {
        st->stmts = malloc(sizeof *st->stmts);
        if (!st->stmts)
            abort();
        st->stmts[0] = (stmt_raw_t){bson_get_data(single), single->len};
        st->nstmts = 1;
    } else {
        size_t cap = 0;
        while (bson_iter_next(stmts)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(stmts)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field '%s.%s.%s' is the wrong type '%s', expected type "
                             "'object'",
                             ctx->name, kind == STMT_UPDATE ? "updates" : "deletes",
                             bson_iter_key(stmts), bq_type_name(bson_iter_type(stmts)));
                return false;
            }
            if (st->nstmts == cap) {
                cap = cap ? cap * 2 : 8;
                stmt_raw_t *s = realloc(st->stmts, cap * sizeof *s);
                if (!s)
                    abort();
                st->stmts = s;
            }
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(stmts, &len, &data);
            st->stmts[st->nstmts++] = (stmt_raw_t){data, len};
            /* update statements take `sort` only from MongoDB 8.0 on; 7.0's IDL refuses it */
            bson_iter_t sort;
            if (kind == STMT_UPDATE && bson_iter_init_from_data(&sort, data, len) &&
                bson_iter_find(&sort, "sort")) {
                bq_error_set(err, BQ_ERR_IDLUnknownField,
                             "BSON field 'update.updates.sort' is an unknown field.");
                return false;
            }
        }
        if (st->nstmts == 0 || st->nstmts > WIRE_MAX_WRITE_BATCH) {
            bq_error_set(err, BQ_ERR_InvalidLength,
                         "Write batch sizes must be between 1 and %d. Got %zu operations.",
                         WIRE_MAX_WRITE_BATCH, st->nstmts);
            return false;
        }
    }
    wire_opcounters_t *oc = &ctx->server->opcounters;
    atomic_fetch_add(kind == STMT_DELETE ? &oc->del : &oc->update, st->nstmts);
    return stmt_next(ctx, err);
}

static bool stmt_command(wire_cmd_ctx_t *ctx, stmt_kind_t kind, const char *array_key,
                         bq_error_t *err)
{
    const char *coll;
    bson_iter_t arr;
    bool present, ordered;
    if (!wire_arg_coll(ctx, true, &coll, err))
        return false;
    /* a time-series collection: its measurements, in its buckets (cmd_timeseries.h) */
    const bson_t *ts_opts = wire_ts_options(ctx->server->db, ctx->db, coll,
                                            eng_db_snapshot(ctx->server->db));
    if ((!ts_opts && !wire_view_refuse(ctx, coll, NULL, err)) ||
        !wire_arg_array(ctx, array_key, &arr, &present, err) ||
        !wire_arg_bool(ctx, "ordered", true, &ordered, err))
        return false;
    if (!present) {
        bq_error_set(err, 40414, "BSON field '%s.%s' is missing but a required field", ctx->name,
                     array_key);
        return false;
    }
    return stmt_start(ctx, kind, coll, ts_opts, &arr, NULL, ordered, err);
}

bool cmd_update(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    return stmt_command(ctx, STMT_UPDATE, "updates", err);
}

bool cmd_delete(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    return stmt_command(ctx, STMT_DELETE, "deletes", err);
}

bool cmd_find_and_modify(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    if (!wire_arg_coll(ctx, true, &coll, err) || !wire_ts_fam_refuse(ctx, coll, err) ||
        !wire_view_refuse(ctx, coll, NULL, err))
        return false;
    /* the command document itself holds query/update/remove/new/upsert/sort/fields */
    return stmt_start(ctx, STMT_FAM, coll, NULL, NULL, ctx->cmd, true, err);
}
