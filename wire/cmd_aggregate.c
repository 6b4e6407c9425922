/*
 * cmd_aggregate.c: the aggregate command, explain, the engine's agg_source_t, and cursors
 * over running pipelines.
 *
 * A pipeline is parsed by aggregation/ (agg_pipeline_parse) and runs at one snapshot:
 * the newest committed op, or the one asOf / readConcern.atClusterTime names
 * (wire_read_snapshot). The source below reads the store at that snapshot for every
 * collection the pipeline touches, so getMores of the same cursor, however late, see the
 * same data (DESIGN.md section 5).
 *
 * Results stream: the command opens the iterator chain and hands it to a cursor
 * (wire_cursor's pull source), which pulls only as many documents as a batch needs; a
 * getMore pulls the next ones. Blocking stages ($sort, $group) buffer inside aggregation/.
 * maxTimeMS is a budget for the time spent pulling, across the command and its getMores.
 *
 * Pipelines ending in $out / $merge are run to the end here and their documents written
 * through the sequencer by cmd_aggregate_out.c; the reply's cursor is then empty.
 *
 * Views (cmd_view.h): an aggregate on a view runs the chain of views' stages, then its
 * own, over the source collection (the cursor keeps the view's name); find, count and
 * distinct on a view come here as the pipelines they amount to; and the source resolves a
 * view named by $lookup / $unionWith / $graphLookup into a sub-run of its pipeline. The
 * explain command answers aggregate here and hands every other command to cmd_explain.c.
 *
 * This file must not write anything itself, nor read the store other than at the
 * command's snapshot.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_aggregate.h"
#include "cmd_index.h"
#include "cmd_view.h"
#include "wire_cursor.h"

/* ================================================================ clocks */

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ the engine source */

/* Documents between two deadline checks in a scan. */
#define SCAN_CHECK_EVERY 256

typedef struct scan_iter {
    agg_iter_t base;
    eng_scan_t scan;
    const bq_match_t *filter; /* borrowed from the pipeline; NULL: everything */
    bool by_id;               /* the _id fast path: one lookup */
    bool id_done;
    bson_value_t id;          /* owned copy */
    bool by_index;            /* a secondary index's candidates (wire_ixscan_run) */
    wire_ixscan_t ix;
    size_t ix_pos;
    eng_coll_t *coll;
    int64_t snap;
    unsigned since_check;
} scan_iter_t;

/* 1 with *out a copy of d when it passes the filter, 0 when not, -1 on error. */
static int scan_offer(scan_iter_t *s, const eng_doc_t *d, bson_t **out, bq_error_t *err)
{
    bson_t doc;
    if (!bson_init_static(&doc, d->data, d->len))
        return 0;
    if (s->filter) {
        int r = bq_match_eval_env(s->filter, &doc, &s->base.run->env, err);
        if (r <= 0)
            return r;
    }
    *out = bson_new_from_data(d->data, d->len);
    if (!*out)
        abort();
    return 1;
}

static int scan_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    scan_iter_t *s = (scan_iter_t *)it;
    eng_doc_t d;
    if (s->by_id) {
        if (s->id_done)
            return 0;
        s->id_done = true;
        bool found;
        if (!eng_coll_find_id_checked(s->coll, s->snap, &s->id, &d, &found, err))
            return -1;
        return found ? scan_offer(s, &d, out, err) : 0;
    }
    if (s->by_index) {
        while (s->ix_pos < s->ix.ndocs) {
            int r = scan_offer(s, &s->ix.docs[s->ix_pos++], out, err);
            if (r != 0)
                return r;
        }
        return 0;
    }
    while (eng_scan_next(&s->scan, &d)) {
        if (++s->since_check >= SCAN_CHECK_EVERY) {
            s->since_check = 0;
            if (agg_run_expired(it->run, err))
                return -1;
        }
        int r = scan_offer(s, &d, out, err);
        if (r != 0)
            return r;
    }
    return wire_scan_done(&s->scan, err) ? 0 : -1;
}

static void scan_close(agg_iter_t *it)
{
    scan_iter_t *s = (scan_iter_t *)it;
    if (s->by_id)
        bson_value_destroy(&s->id);
    wire_ixscan_cleanup(&s->ix);
    free(s);
}

/* A view read by $lookup, $unionWith or $graphLookup: the chain of views' pipelines run
 * over the source collection in a sub-run, with the caller's filter applied after. */
typedef struct view_iter {
    agg_iter_t base;
    agg_pipeline_t *p;
    agg_run_t sub;
    agg_iter_t *inner;
    const bq_match_t *filter; /* borrowed; NULL: everything */
} view_iter_t;

static int view_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    view_iter_t *v = (view_iter_t *)it;
    for (;;) {
        bson_t *d;
        int r = agg_iter_next(v->inner, &d, err);
        if (r <= 0)
            return r;
        int m = v->filter ? bq_match_eval_env(v->filter, d, &it->run->env, err) : 1;
        if (m > 0) {
            *out = d;
            return 1;
        }
        bson_destroy(d);
        if (m < 0)
            return -1;
    }
}

static void view_close(agg_iter_t *it)
{
    view_iter_t *v = (view_iter_t *)it;
    agg_iter_close(v->inner);
    agg_run_cleanup(&v->sub);
    agg_pipeline_destroy(v->p);
    free(v);
}

/* How deep views may nest through $lookup inside view definitions before we call it a
 * cycle (the viewOn chain itself is limited to WIRE_VIEW_MAX_DEPTH). */
#define VIEW_RUN_MAX_DEPTH 64

static agg_iter_t *view_scan(wire_agg_source_t *src, agg_run_t *run, const char *db,
                             const char *src_coll, const bson_t *stages,
                             const bq_match_t *filter, bq_error_t *err)
{
    if (run->depth >= VIEW_RUN_MAX_DEPTH) {
        bq_error_set(err, BQ_ERR_ViewDepthLimitExceeded,
                     "View depth too deep or view cycle detected. Maximum depth is %d",
                     WIRE_VIEW_MAX_DEPTH);
        return NULL;
    }
    (void)src;
    agg_pipeline_opts_t opts = {.db = db, .coll = src_coll};
    agg_pipeline_t *p = agg_pipeline_parse(stages, &opts, err);
    if (!p)
        return NULL;
    view_iter_t *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    v->p = p;
    v->filter = filter;
    v->base.next = view_next;
    v->base.close = view_close;
    v->base.run = run;
    agg_run_init_sub(&v->sub, run);
    v->inner = agg_pipeline_open(p, NULL, &v->sub, err);
    if (!v->inner) {
        agg_run_cleanup(&v->sub);
        agg_pipeline_destroy(p);
        free(v);
        return NULL;
    }
    return &v->base;
}

static agg_iter_t *source_scan(void *ctx, agg_run_t *run, const char *db, const char *coll,
                               const bson_t *filter_doc, const bq_match_t *filter,
                               bq_error_t *err)
{
    wire_agg_source_t *src = ctx;
    bool is_view;
    char vsrc[ENG_NS_MAX + 1];
    bson_t vstages;
    if (!wire_view_resolve(src->db, db, coll, src->snap, &is_view, vsrc, &vstages, err)) {
        bson_destroy(&vstages);
        return NULL;
    }
    if (is_view) {
        agg_iter_t *v = view_scan(src, run, db, vsrc, &vstages, filter, err);
        bson_destroy(&vstages);
        return v;
    }
    bson_destroy(&vstages);
    eng_coll_t *c = eng_coll_get(src->db, db, coll, src->snap);
    if (!c)
        return agg_iter_empty(run); /* a missing collection reads as empty */
    scan_iter_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->base.next = scan_next;
    s->base.close = scan_close;
    s->base.run = run;
    s->filter = filter;
    s->coll = c;
    s->snap = src->snap;
    bson_value_t id;
    if (wire_filter_id_eq(filter_doc, &id)) {
        s->by_id = true;
        bson_value_copy(&id, &s->id);
    } else if (wire_ixscan_run(c, src->snap, filter_doc, &s->ix)) {
        s->by_index = true; /* the same choice find makes ($match first, $lookup's match) */
    } else {
        eng_scan_init(&s->scan, c, src->snap, false);
    }
    return &s->base;
}

static bool source_count(void *ctx, const char *db, const char *coll, int64_t *n,
                         bq_error_t *err)
{
    wire_agg_source_t *src = ctx;
    *n = 0;
    eng_coll_t *c = eng_coll_get(src->db, db, coll, src->snap);
    if (!c) {
        bq_error_set(err, BQ_ERR_NamespaceNotFound, "Collection [%s.%s] not found.", db, coll);
        return false;
    }
    if (wire_view_is(src->db, db, coll, src->snap)) {
        bq_error_set(err, BQ_ERR_CommandNotSupportedOnView,
                     "Namespace %s.%s is a view, not a collection", db, coll);
        return false;
    }
    uint64_t count, bytes;
    eng_coll_stats(c, src->snap, &count, &bytes);
    *n = (int64_t)count;
    return true;
}

/* Fills a malloc'd buf through `call`, an engine function that writes at most cap seqs
 * into buf and returns how many there are (or how many it wrote): a smaller answer than
 * cap means all of them are in buf, else it tries again with a bigger buf. */
#define FILL_ALL(buf, cap, got, call)                                                      \
    for (;;) {                                                                             \
        buf = malloc(cap * sizeof *buf);                                                   \
        if (!buf)                                                                          \
            abort();                                                                       \
        got = (call);                                                                      \
        if (got < cap)                                                                     \
            break;                                                                         \
        free(buf);                                                                         \
        cap *= 4;                                                                          \
    }

/* The op `seq` at the source's snapshot, for $trace (body: the caller destroys it on
 * success; errors are prefixed with the stage's name). */
static bool trace_op_read(wire_agg_source_t *src, int64_t seq, bson_t *body, eng_op_t *op,
                          bq_error_t *err)
{
    if (eng_db_op_read(src->db, src->snap, seq, body, op, err))
        return true;
    bson_destroy(body);
    bq_error_prefix(err, "$trace");
    return false;
}

/* $trace's links (DESIGN.md section 7). Forward: the ops whose prov names seq, from the
 * engine's reverse provenance index. Backward: the causes sealed in the op's own prov,
 * read back from the log by seq (an update that set no provenance has none of its own). */
static bool source_prov_links(void *ctx, int64_t seq, bool forward, int64_t **out, size_t *n,
                              bq_error_t *err)
{
    wire_agg_source_t *src = ctx;
    int64_t *buf;
    size_t cap = 64, got;
    *out = NULL;
    *n = 0;
    if (forward) {
        FILL_ALL(buf, cap, got, eng_prov_effects(src->db, seq, src->snap, buf, cap));
    } else {
        bson_t body;
        eng_op_t op;
        if (!trace_op_read(src, seq, &body, &op, err))
            return false;
        FILL_ALL(buf, cap, got, eng_op_caused_by(&op, buf, cap));
        bson_destroy(&body);
    }
    *out = buf;
    *n = got;
    return true;
}

/* The namespace of op seq and the document version it wrote (none for a delete or a
 * catalog change). */
static bool source_op_doc(void *ctx, int64_t seq, char *ns, size_t ns_size, bson_t **doc,
                          bq_error_t *err)
{
    wire_agg_source_t *src = ctx;
    bson_t body;
    eng_op_t op;
    *doc = NULL;
    if (!trace_op_read(src, seq, &body, &op, err))
        return false;
    snprintf(ns, ns_size, "%.*s", op.ns ? (int)op.ns_len : 0, op.ns ? op.ns : "");
    if ((op.op == ENG_OP_INSERT || op.op == ENG_OP_UPDATE) && op.o)
        *doc = bson_new_from_data(op.o, op.o_len);
    bson_destroy(&body);
    return true;
}

/* The seqs of the versions of db.coll's document _id at the snapshot, oldest first. */
static bool source_doc_versions(void *ctx, const char *db, const char *coll,
                                const bson_value_t *id, int64_t **out, size_t *n,
                                bq_error_t *err)
{
    (void)err;
    wire_agg_source_t *src = ctx;
    *out = NULL;
    *n = 0;
    eng_coll_t *c = eng_coll_get(src->db, db, coll, src->snap);
    if (!c)
        return true; /* a view or a missing collection: no versions */
    int64_t *buf;
    size_t cap = 16, got;
    FILL_ALL(buf, cap, got, eng_coll_doc_versions(c, src->snap, id, buf, cap));
    *out = buf;
    *n = got;
    return true;
}

#undef FILL_ALL

static bool source_list_sessions(void *ctx, bson_t ***docs, size_t *n, bq_error_t *err)
{
    (void)err;
    wire_agg_source_t *src = ctx;
    wire_sessions_list(src->sessions, docs, n);
    return true;
}

static bool source_indexes(void *ctx, const char *db, const char *coll, bson_t ***specs,
                           size_t *n, bq_error_t *err)
{
    (void)err;
    wire_agg_source_t *src = ctx;
    eng_coll_t *c = eng_coll_get(src->db, db, coll, src->snap);
    *specs = NULL;
    *n = c ? wire_index_specs(c, src->snap, specs) : 0;
    return true;
}

/* $collStats storageStats: the collStats command's figures (one function). */
static bool source_storage_stats(void *ctx, const char *db, const char *coll, int32_t scale,
                                 bson_t *out, bq_error_t *err)
{
    wire_agg_source_t *src = ctx;
    return wire_coll_storage_stats(src->db, db, coll, src->snap, scale, out, err);
}

static bool source_current_ops(void *ctx, bool idle_connections, bson_t ***docs, size_t *n,
                               bq_error_t *err)
{
    (void)err;
    wire_agg_source_t *src = ctx;
    wire_admin_current_ops(src->server, idle_connections, docs, n);
    return true;
}

void wire_agg_source_init(wire_agg_source_t *s, wire_server_t *server, int64_t snap)
{
    memset(s, 0, sizeof *s);
    s->db = server->db;
    s->sessions = server->sessions;
    s->snap = snap;
    s->src.ctx = s;
    s->src.scan = source_scan;
    s->src.count = source_count;
    s->src.prov_links = source_prov_links;
    s->src.list_sessions = source_list_sessions;
    s->src.op_doc = source_op_doc;
    s->src.doc_versions = source_doc_versions;
    s->src.indexes = source_indexes;
    s->src.storage_stats = source_storage_stats;
    s->server = server;
    s->src.current_ops = source_current_ops;
}

/* ================================================================ a running pipeline */

/* Everything a pipeline cursor owns; heap-allocated and never moved (run points at
 * source, the iterators at run). */
typedef struct agg_job {
    wire_agg_source_t source;
    agg_pipeline_t *p;
    agg_run_t run;
    bool run_ready;
    agg_iter_t *it;
    char *db;
    bson_t *pipeline;    /* the pipeline run (a view's stages first), owned, or NULL */
    bson_t *cmd;         /* a command built for a read through a view, owned, or NULL */
    int64_t max_time_ms; /* 0: none */
    int64_t used_ms;     /* time spent pulling so far */
} agg_job_t;

static void job_free(void *p)
{
    agg_job_t *j = p;
    if (!j)
        return;
    agg_iter_close(j->it);
    if (j->run_ready)
        agg_run_cleanup(&j->run);
    agg_pipeline_destroy(j->p);
    if (j->pipeline)
        bson_destroy(j->pipeline);
    if (j->cmd)
        bson_destroy(j->cmd);
    free(j->db);
    free(j);
}

static int job_pull(void *p, bson_t **doc, bq_error_t *err)
{
    agg_job_t *j = p;
    if (!j->it)
        return 0;
    int64_t t0 = monotonic_ms();
    if (j->max_time_ms > 0) {
        int64_t left = j->max_time_ms - j->used_ms;
        if (left <= 0) {
            bq_error_set(err, BQ_ERR_MaxTimeMSExpired, "operation exceeded time limit");
            return -1;
        }
        j->run.deadline_ms = t0 + left;
    }
    int r = agg_iter_next(j->it, doc, err);
    j->used_ms += monotonic_ms() - t0;
    if (r == 0 && j->max_time_ms > 0 && j->used_ms > j->max_time_ms) {
        bq_error_set(err, BQ_ERR_MaxTimeMSExpired, "operation exceeded time limit");
        return -1;
    }
    return r;
}

/* ================================================================ the command's options */

typedef struct agg_args {
    const char *coll;        /* NULL for aggregate: 1 */
    bson_t pipeline;         /* borrowed */
    bool explain;
    bool has_cursor;
    int64_t batch;
    bool allow_disk_use;
    bool has_let;
    bson_t let;              /* borrowed */
    int64_t max_time_ms;
    int64_t snap;
    bq_collation_t *collation; /* NULL: binary; the parsed pipeline takes a reference */
} agg_args_t;

/* Fields of the aggregate command besides the generic ones (wire_generic_arg, or any
 * starting with '$'). */
static const char *const agg_fields[] = {
    "aggregate", "pipeline", "explain", "allowDiskUse", "cursor", "maxTimeMS",
    "bypassDocumentValidation", "readConcern", "collation", "hint", "comment", "let",
    "writeConcern", "asOf", "isMapReduceCommand", "needsMerge", "fromMongos",
    "collectionUUID", "exchange", "runtimeConstants",
};
static bool name_in(const char *k, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, list[i]))
            return true;
    return false;
}

static bool agg_args_read(wire_cmd_ctx_t *ctx, agg_args_t *a, bq_error_t *err)
{
    memset(a, 0, sizeof *a);
    bson_init(&a->pipeline);
    bson_init(&a->let);
    bson_iter_t it;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        if (!wire_arg_coll(ctx, false, &a->coll, err))
            return false;
    } else if (!(BSON_ITER_HOLDS_NUMBER(&it) && bson_iter_as_double(&it) == 1.0)) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "Invalid command format: the '%s' field must specify a collection name "
                     "or 1",
                     ctx->name);
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$' || name_in(k, agg_fields, sizeof agg_fields / sizeof *agg_fields) ||
            wire_generic_arg(k))
            continue;
        bq_error_set(err, BQ_ERR_IDLUnknownField, "BSON field 'aggregate.%s' is an unknown field.",
                     k);
        return false;
    }
    if (!bson_iter_init_find(&it, ctx->cmd, "pipeline")) {
        bq_error_set(err, BQ_ERR_IDLFailedToParse,
                     "BSON field 'aggregate.pipeline' is missing but a required field");
        return false;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'aggregate.pipeline' is the wrong type '%s', expected type "
                     "'array'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_init_static(&a->pipeline, data, len);

    bool bypass;
    bson_t cursor, hint_doc;
    bool has_hint;
    if (!wire_arg_bool(ctx, "explain", false, &a->explain, err) ||
        !wire_arg_bool(ctx, "allowDiskUse", false, &a->allow_disk_use, err) ||
        !wire_arg_bool(ctx, "bypassDocumentValidation", false, &bypass, err) ||
        !wire_arg_doc(ctx, "cursor", &cursor, &a->has_cursor, err) ||
        !wire_arg_doc(ctx, "let", &a->let, &a->has_let, err))
        return false;
    /* hint: a document or an index name, checked against the indexes in aggregate_run;
     * NEDB plans without it */
    if (bson_iter_init_find(&it, ctx->cmd, "hint") && !BSON_ITER_HOLDS_UTF8(&it) &&
        !wire_arg_doc(ctx, "hint", &hint_doc, &has_hint, err))
        return false;
    bool has_mt;
    if (!wire_arg_int64(ctx, "maxTimeMS", &a->max_time_ms, &has_mt, err))
        return false;
    if (has_mt && (a->max_time_ms < 0 || a->max_time_ms > INT32_MAX)) {
        bq_error_set(err, BQ_ERR_BadValue, "%lld value for maxTimeMS is out of range [0, %d]",
                     (long long)a->max_time_ms, INT32_MAX);
        return false;
    }
    if (!a->has_cursor && !a->explain) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "The 'cursor' option is required, except for aggregate with the explain "
                     "argument");
        return false;
    }
    if (a->explain && bson_iter_init_find(&it, ctx->cmd, "writeConcern")) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "Aggregation explain does not support the 'writeConcern' option");
        return false;
    }
    a->batch = WIRE_CURSOR_DEFAULT_FIRST_BATCH;
    if (a->has_cursor && bson_iter_init_find(&it, &cursor, "batchSize")) {
        if (!BSON_ITER_HOLDS_NUMBER(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field 'aggregate.cursor.batchSize' is the wrong type '%s', "
                         "expected types '[long, int, decimal, double']",
                         bq_type_name(bson_iter_type(&it)));
            return false;
        }
        a->batch = bson_iter_as_int64(&it);
        if (a->batch < 0) {
            bq_error_set(err, 51024,
                         "BSON field 'batchSize' value must be >= 0, actual value '%lld'",
                         (long long)a->batch);
            return false;
        }
    }
    /* last, so that no earlier failure leaves it to free */
    return wire_read_snapshot(ctx, &a->snap, err) && wire_collation(ctx->cmd, &a->collation, err);
}

/* ================================================================ explain */

static void explain_append(wire_cmd_ctx_t *ctx, const agg_args_t *a, const agg_pipeline_t *p,
                           const bson_t *command)
{
    bson_t stages, st, cur, qp, wp;
    char ns[ENG_NS_MAX + 32];
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, a->coll ? a->coll : "$cmd.aggregate");
    BSON_APPEND_UTF8(ctx->reply, "explainVersion", "1");
    BSON_APPEND_ARRAY_BEGIN(ctx->reply, "stages", &stages);
    int first = 0;
    if (a->coll && !agg_pipeline_is_generator(p)) {
        /* the collection read, with a leading $match as its filter */
        bson_t all = BSON_INITIALIZER, filter = BSON_INITIALIZER;
        agg_pipeline_explain(p, &all);
        bson_iter_t it, sit;
        if (bson_iter_init(&it, &all) && bson_iter_next(&it) && BSON_ITER_HOLDS_DOCUMENT(&it) &&
            bson_iter_recurse(&it, &sit) && bson_iter_find(&sit, "$match") &&
            BSON_ITER_HOLDS_DOCUMENT(&sit)) {
            uint32_t len;
            const uint8_t *data;
            bson_t m;
            bson_iter_document(&sit, &len, &data);
            bson_init_static(&m, data, len);
            bson_concat(&filter, &m);
            first = 1;
        }
        BSON_APPEND_DOCUMENT_BEGIN(&stages, "0", &st);
        BSON_APPEND_DOCUMENT_BEGIN(&st, "$cursor", &cur);
        BSON_APPEND_DOCUMENT_BEGIN(&cur, "queryPlanner", &qp);
        BSON_APPEND_UTF8(&qp, "namespace", ns);
        BSON_APPEND_DOCUMENT(&qp, "parsedQuery", &filter);
        BSON_APPEND_DOCUMENT_BEGIN(&qp, "winningPlan", &wp);
        /* the read source_scan makes: the _id index, a secondary index (never under a
         * collation: the source then gets no filter document), or a scan */
        bson_value_t id;
        wire_ixscan_t ix;
        eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, a->coll, a->snap);
        if (wire_filter_id_eq(&filter, &id)) {
            BSON_APPEND_UTF8(&wp, "stage", "IDHACK");
        } else if (!a->collation && c && wire_ixscan_run(c, a->snap, &filter, &ix)) {
            bson_t in;
            bson_iter_t k;
            BSON_APPEND_UTF8(&wp, "stage", "FETCH");
            BSON_APPEND_DOCUMENT_BEGIN(&wp, "inputStage", &in);
            BSON_APPEND_UTF8(&in, "stage", "IXSCAN");
            if (bson_iter_init_find(&k, ix.spec, "key"))
                bson_append_iter(&in, "keyPattern", -1, &k);
            if (bson_iter_init_find(&k, ix.spec, "name"))
                bson_append_iter(&in, "indexName", -1, &k);
            bson_append_document_end(&wp, &in);
            wire_ixscan_cleanup(&ix);
        } else {
            BSON_APPEND_UTF8(&wp, "stage", "COLLSCAN");
        }
        bson_append_document_end(&qp, &wp);
        bson_append_document_end(&cur, &qp);
        bson_append_document_end(&st, &cur);
        bson_append_document_end(&stages, &st);
        /* the other stages, renumbered after $cursor */
        bson_iter_init(&it, &all);
        int i = 0, k = 1;
        while (bson_iter_next(&it)) {
            if (i++ < first)
                continue;
            char key[16];
            snprintf(key, sizeof key, "%d", k++);
            bson_append_iter(&stages, key, -1, &it);
        }
        bson_destroy(&all);
        bson_destroy(&filter);
    } else {
        agg_pipeline_explain(p, &stages);
    }
    bson_append_array_end(ctx->reply, &stages);
    BSON_APPEND_DOCUMENT(ctx->reply, "command", command);
}

/* ================================================================ the command */

/* Runs a $out / $merge pipeline to its end and hands its documents to the writer. */
static bool run_out(wire_cmd_ctx_t *ctx, agg_job_t *j, const char *ns, bq_error_t *err)
{
    const agg_out_t *out = agg_pipeline_out(j->p);
    size_t n = 0, cap = 16;
    bson_t **docs = malloc(cap * sizeof *docs);
    if (!docs)
        abort();
    bool ok = true;
    for (;;) {
        bson_t *d;
        int r = job_pull(j, &d, err);
        if (r < 0)
            ok = false;
        if (r <= 0)
            break;
        if (n == cap) {
            cap *= 2;
            bson_t **nd = realloc(docs, cap * sizeof *nd);
            if (!nd)
                abort();
            docs = nd;
        }
        docs[n++] = d;
    }
    int64_t snap = j->source.snap;
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            bson_destroy(docs[i]);
        free(docs);
        job_free(j);
        return false;
    }
    /* the pipeline (and with it `out`) must live until the write is done: it goes with
     * the command's state */
    ctx->state = j;
    ctx->state_free = job_free;
    return wire_agg_out_write(ctx, out, &j->run, docs, n, snap, ns, err);
}

/* A new array: the stages of `first` then those of `then`. */
static bson_t *stages_concat(const bson_t *first, const bson_t *then)
{
    bson_t *out = bson_new();
    uint32_t n = 0;
    const bson_t *parts[2] = {first, then};
    for (int i = 0; i < 2; i++) {
        bson_iter_t it;
        if (!bson_iter_init(&it, parts[i]))
            continue;
        while (bson_iter_next(&it)) {
            char k[16];
            snprintf(k, sizeof k, "%u", n++);
            bson_append_iter(out, k, -1, &it);
        }
    }
    return out;
}

/* How aggregate_run was reached. */
typedef struct run_opts {
    bool force_explain;  /* the explain command */
    bool single_batch;   /* a find through a view with singleBatch (or a small limit) */
    bson_t *own_cmd;     /* a command built for a read through a view: the run takes it */
} run_opts_t;

/* True when the pipeline's first stage is `name`. */
static bool first_stage_is(const bson_t *pipeline, const char *name)
{
    bson_iter_t it, st;
    return bson_iter_init(&it, pipeline) && bson_iter_next(&it) &&
           BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &st) &&
           bson_iter_next(&st) && !strcmp(bson_iter_key(&st), name);
}

/* The aggregate command with ctx->cmd holding it (for explain: the inner command, with
 * explain forced on). On a view, the view's stages run first, over its source collection;
 * the cursor keeps the view's name, as mongod's does. A pipeline that starts with
 * $collStats is not resolved: it reports on the view itself (its storageStats refuse a
 * view with 166; a time-series collection's are its buckets'), as mongod's do. */
static bool aggregate_run(wire_cmd_ctx_t *ctx, run_opts_t *ro, bq_error_t *err)
{
    agg_args_t a;
    if (!agg_args_read(ctx, &a, err)) {
        if (ro->own_cmd)
            bson_destroy(ro->own_cmd);
        return false;
    }
    if (ro->force_explain)
        a.explain = true;

    bool is_view = false;
    char src[ENG_NS_MAX + 1];
    bson_t view_stages;
    bson_t *combined = NULL;
    if (a.coll && first_stage_is(&a.pipeline, "$collStats")) {
        bson_init(&view_stages); /* as wire_view_resolve leaves it for a collection */
    } else if (a.coll && !wire_view_resolve(ctx->server->db, ctx->db, a.coll, a.snap,
                                            &is_view, src, &view_stages, err)) {
        bson_destroy(&view_stages);
        bq_collation_destroy(a.collation);
        if (ro->own_cmd)
            bson_destroy(ro->own_cmd);
        return false;
    }
    /* a collection's hint names one of its indexes; a read through a view runs with the
     * view's collation (167 for another one) */
    bq_collation_t *vco = NULL;
    eng_coll_t *target = a.coll && !is_view
                             ? eng_coll_get(ctx->server->db, ctx->db, a.coll, a.snap)
                             : NULL;
    bool ok = !a.coll || wire_hint_check(ctx->cmd, target, a.snap, NULL, err);
    if (ok && is_view)
        ok = wire_view_collation(ctx->server->db, ctx->db, a.coll, a.snap, ctx->cmd, a.collation,
                                 &vco, err);
    if (!ok) {
        bson_destroy(&view_stages);
        bq_collation_destroy(a.collation);
        if (ro->own_cmd)
            bson_destroy(ro->own_cmd);
        return false;
    }
    if (is_view) {
        bq_collation_destroy(a.collation);
        a.collation = vco;
        combined = stages_concat(&view_stages, &a.pipeline);
    }
    if (a.coll)
        bson_destroy(&view_stages);

    agg_pipeline_opts_t opts = {.db = ctx->db, .coll = is_view ? src : a.coll,
                                .let = a.has_let ? &a.let : NULL, .collation = a.collation,
                                .api_strict = ctx->api_strict};
    agg_pipeline_t *p = agg_pipeline_parse(combined ? combined : &a.pipeline, &opts, err);
    bq_collation_destroy(a.collation);
    if (!p) {
        if (combined)
            bson_destroy(combined);
        if (ro->own_cmd)
            bson_destroy(ro->own_cmd);
        return false;
    }
    if (!a.coll && !agg_pipeline_is_generator(p)) {
        bson_iter_t it, sit;
        const char *first = "the empty pipeline";
        if (bson_iter_init(&it, &a.pipeline) && bson_iter_next(&it) &&
            BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sit) && bson_iter_next(&sit))
            first = bson_iter_key(&sit);
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "{aggregate: 1} is not valid for '%s'; a collection is required.", first);
        agg_pipeline_destroy(p);
        return false;
    }
    if (a.explain) {
        explain_append(ctx, &a, p, ctx->cmd);
        agg_pipeline_destroy(p);
        if (combined)
            bson_destroy(combined);
        if (ro->own_cmd)
            bson_destroy(ro->own_cmd);
        return true;
    }

    agg_job_t *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->p = p;
    j->pipeline = combined;
    j->cmd = ro->own_cmd;
    j->db = strdup(ctx->db);
    if (!j->db)
        abort();
    j->max_time_ms = a.max_time_ms;
    wire_agg_source_init(&j->source, ctx->server, a.snap);
    uint32_t ct_t, ct_i;
    eng_db_cluster_time(ctx->server->db, a.snap, &ct_t, &ct_i);
    if (!agg_run_init(&j->run, p, &j->source.src, j->db, wire_now_ms(), ct_t, ct_i,
                      a.allow_disk_use, err)) {
        j->run_ready = true;
        job_free(j);
        return false;
    }
    j->run_ready = true;
    agg_run_set_max_time(&j->run, a.max_time_ms);
    j->it = agg_pipeline_open(p, NULL, &j->run, err);
    if (!j->it) {
        job_free(j);
        return false;
    }
    const char *coll = a.coll ? a.coll : "$cmd.aggregate";
    if (agg_pipeline_out(p)) {
        char ns[ENG_NS_MAX + 32];
        snprintf(ns, sizeof ns, "%s.%s", ctx->db, coll);
        return run_out(ctx, j, ns, err);
    }
    wire_cursor_t *cur = wire_cursor_new(ctx->db, coll);
    cur->pull = job_pull;
    cur->pull_free = job_free;
    cur->pull_ctx = j;
    return wire_cursor_reply(ctx->server, cur, ctx->reply, "firstBatch", a.batch,
                             ro->single_batch, err);
}

bool cmd_aggregate(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    run_opts_t ro = {0};
    return aggregate_run(ctx, &ro, err);
}

/* ================================================================ reads through views */

/* Fields of a find (or count, distinct) carried over to the aggregate it becomes. */
static void copy_read_fields(const bson_t *cmd, bson_t *out)
{
    static const char *const keep[] = {"let", "collation", "maxTimeMS", "readConcern", "asOf",
                                       "comment", "allowDiskUse", "hint"};
    bson_iter_t it;
    bson_iter_init(&it, cmd);
    bson_iter_next(&it);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$' || name_in(k, keep, sizeof keep / sizeof *keep) ||
            wire_generic_arg(k))
            bson_append_iter(out, k, -1, &it);
    }
}

/* Appends {<stage>: <the command's field `key`>} to the stages when the field is there
 * (and, for documents, not empty). */
static void stage_from(const bson_t *cmd, const char *key, const char *stage, bson_t *stages,
                       uint32_t *n)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, cmd, key) || BSON_ITER_HOLDS_NULL(&it))
        return;
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        if (len <= 5)
            return;
    } else if (BSON_ITER_HOLDS_NUMBER(&it) && bson_iter_as_int64(&it) <= 0) {
        return; /* skip 0, limit 0: nothing to do */
    }
    char k[16];
    bson_t st;
    snprintf(k, sizeof k, "%u", (*n)++);
    BSON_APPEND_DOCUMENT_BEGIN(stages, k, &st);
    bson_append_iter(&st, stage, -1, &it);
    bson_append_document_end(stages, &st);
}

static bool view_find(wire_cmd_ctx_t *ctx, const char *view, bool explain, bq_error_t *err)
{
    const bson_t *fc = ctx->cmd;
    bson_t *cmd = bson_new(), stages, cursor;
    uint32_t n = 0;
    BSON_APPEND_UTF8(cmd, "aggregate", view);
    BSON_APPEND_ARRAY_BEGIN(cmd, "pipeline", &stages);
    if (!strcmp(ctx->name, "find")) {
        stage_from(fc, "filter", "$match", &stages, &n);
        stage_from(fc, "sort", "$sort", &stages, &n);
        stage_from(fc, "skip", "$skip", &stages, &n);
        stage_from(fc, "limit", "$limit", &stages, &n);
        stage_from(fc, "projection", "$project", &stages, &n);
    } else {
        /* count and distinct, for explain: the pipelines mongod turns them into */
        bson_t st, sub;
        char k[16];
        stage_from(fc, "query", "$match", &stages, &n);
        if (!strcmp(ctx->name, "count")) {
            stage_from(fc, "skip", "$skip", &stages, &n);
            stage_from(fc, "limit", "$limit", &stages, &n);
            snprintf(k, sizeof k, "%u", n++);
            BSON_APPEND_DOCUMENT_BEGIN(&stages, k, &st);
            BSON_APPEND_UTF8(&st, "$count", "count");
            bson_append_document_end(&stages, &st);
        } else {
            bson_iter_t kit;
            char path[512];
            snprintf(path, sizeof path, "$%s",
                     bson_iter_init_find(&kit, fc, "key") && BSON_ITER_HOLDS_UTF8(&kit)
                         ? bson_iter_utf8(&kit, NULL)
                         : "_id");
            snprintf(k, sizeof k, "%u", n++);
            BSON_APPEND_DOCUMENT_BEGIN(&stages, k, &st);
            BSON_APPEND_DOCUMENT_BEGIN(&st, "$unwind", &sub);
            BSON_APPEND_UTF8(&sub, "path", path);
            BSON_APPEND_BOOL(&sub, "preserveNullAndEmptyArrays", true);
            bson_append_document_end(&st, &sub);
            bson_append_document_end(&stages, &st);
            snprintf(k, sizeof k, "%u", n++);
            bson_t acc;
            BSON_APPEND_DOCUMENT_BEGIN(&stages, k, &st);
            BSON_APPEND_DOCUMENT_BEGIN(&st, "$group", &sub);
            BSON_APPEND_NULL(&sub, "_id");
            BSON_APPEND_DOCUMENT_BEGIN(&sub, "distinct", &acc);
            BSON_APPEND_UTF8(&acc, "$addToSet", path);
            bson_append_document_end(&sub, &acc);
            bson_append_document_end(&st, &sub);
            bson_append_document_end(&stages, &st);
        }
    }
    bson_append_array_end(cmd, &stages);
    bson_iter_t it;
    int64_t batch = WIRE_CURSOR_DEFAULT_FIRST_BATCH, limit = 0;
    if (bson_iter_init_find(&it, fc, "batchSize") && BSON_ITER_HOLDS_NUMBER(&it))
        batch = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, fc, "limit") && BSON_ITER_HOLDS_NUMBER(&it))
        limit = bson_iter_as_int64(&it);
    BSON_APPEND_DOCUMENT_BEGIN(cmd, "cursor", &cursor);
    BSON_APPEND_INT64(&cursor, "batchSize", batch);
    bson_append_document_end(cmd, &cursor);
    copy_read_fields(fc, cmd);
    run_opts_t ro = {.own_cmd = cmd, .force_explain = explain};
    ro.single_batch = (bson_iter_init_find(&it, fc, "singleBatch") && bson_iter_as_bool(&it)) ||
                      (limit > 0 && limit <= batch);
    wire_cmd_ctx_t sub = *ctx;
    sub.cmd = cmd;
    sub.name = "aggregate";
    bool ok = aggregate_run(&sub, &ro, err);
    /* the sub-context may have taken state (a $out job): hand it back */
    ctx->state = sub.state;
    ctx->state_free = sub.state_free;
    ctx->pending = sub.pending;
    ctx->resume = sub.resume;
    return ok;
}

bool wire_view_find(wire_cmd_ctx_t *ctx, const char *view, bq_error_t *err)
{
    return view_find(ctx, view, false, err);
}

bool wire_view_find_explain(wire_cmd_ctx_t *ctx, const char *view, bq_error_t *err)
{
    return view_find(ctx, view, true, err);
}

size_t wire_agg_collect(wire_cmd_ctx_t *ctx, const char *coll, const bson_t *stages,
                        bson_t ***docs, bq_error_t *err)
{
    *docs = NULL;
    int64_t snap;
    bq_collation_t *co;
    if (!wire_read_snapshot(ctx, &snap, err) || !wire_collation(ctx->cmd, &co, err))
        return WIRE_COLLECT_ERROR;
    bool is_view;
    char src[ENG_NS_MAX + 1];
    bson_t view_stages;
    if (!wire_view_resolve(ctx->server->db, ctx->db, coll, snap, &is_view, src, &view_stages,
                           err)) {
        bson_destroy(&view_stages);
        bq_collation_destroy(co);
        return WIRE_COLLECT_ERROR;
    }
    bq_collation_t *vco = NULL;
    if (is_view && !wire_view_collation(ctx->server->db, ctx->db, coll, snap, ctx->cmd, co,
                                        &vco, err)) {
        bson_destroy(&view_stages);
        bq_collation_destroy(co);
        return WIRE_COLLECT_ERROR;
    }
    if (is_view) {
        bq_collation_destroy(co);
        co = vco;
    }
    bson_t *all = stages_concat(&view_stages, stages);
    bson_destroy(&view_stages);
    agg_pipeline_opts_t opts = {.db = ctx->db, .coll = src, .collation = co};
    agg_pipeline_t *p = agg_pipeline_parse(all, &opts, err);
    bq_collation_destroy(co);
    bson_destroy(all);
    if (!p)
        return WIRE_COLLECT_ERROR;
    agg_job_t *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->p = p;
    j->db = strdup(ctx->db);
    if (!j->db)
        abort();
    wire_agg_source_init(&j->source, ctx->server, snap);
    uint32_t ct_t, ct_i;
    eng_db_cluster_time(ctx->server->db, snap, &ct_t, &ct_i);
    bool ok = agg_run_init(&j->run, p, &j->source.src, j->db, wire_now_ms(), ct_t, ct_i, false,
                           err);
    j->run_ready = true;
    if (ok)
        j->it = agg_pipeline_open(p, NULL, &j->run, err);
    size_t n = 0, cap = 16;
    bson_t **out = malloc(cap * sizeof *out);
    if (!out)
        abort();
    while (ok && j->it) {
        bson_t *d;
        int r = job_pull(j, &d, err);
        if (r < 0)
            ok = false;
        if (r <= 0)
            break;
        if (n == cap) {
            cap *= 2;
            bson_t **nd = realloc(out, cap * sizeof *nd);
            if (!nd)
                abort();
            out = nd;
        }
        out[n++] = d;
    }
    if (ok && !j->it)
        ok = false;
    job_free(j);
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            bson_destroy(out[i]);
        free(out);
        return WIRE_COLLECT_ERROR;
    }
    *docs = out;
    return n;
}

/* ================================================================ explain */

bool cmd_explain(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'explain.explain' is the wrong type '%s', expected type "
                     "'object'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    const char *verbosity = "allPlansExecution"; /* mongod's default */
    if (bson_iter_init_find(&it, ctx->cmd, "verbosity")) {
        const char *v = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
        verbosity = v;
        if (strcmp(v, "queryPlanner") && strcmp(v, "executionStats") &&
            strcmp(v, "allPlansExecution")) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "verbosity string must be one of {'queryPlanner', "
                         "'executionStats', 'allPlansExecution'}");
            return false;
        }
    }
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t inner;
    bson_init_static(&inner, data, len);
    bson_iter_t iit;
    if (!bson_iter_init(&iit, &inner) || !bson_iter_next(&iit)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "explain command requires a nested object");
        return false;
    }
    const char *name = bson_iter_key(&iit);
    if (strcmp(name, "aggregate") != 0)
        return wire_explain_command(ctx, &inner, verbosity, err);
    wire_cmd_ctx_t sub = *ctx;
    sub.cmd = &inner;
    sub.name = "aggregate";
    run_opts_t ro = {.force_explain = true};
    return aggregate_run(&sub, &ro, err);
}
