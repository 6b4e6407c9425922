/*
 * cmd_find.c: the read commands: find, getMore, killCursors, count and distinct. Each
 * reads one snapshot (the newest committed op, or the one asOf/atClusterTime names) and
 * never waits for a writer. Filters, projections and sorts are bsonq's; cursors are
 * wire_cursor.c's. On a view (cmd_view.h) find, count and distinct run as aggregations
 * over the view's source (cmd_aggregate.c: wire_view_find, wire_agg_collect).
 */
#include <stdlib.h>
#include <string.h>

#include "bq_key.h"
#include "bq_project.h"
#include "bq_sort.h"
#include "cmd_aggregate.h"
#include "cmd_view.h"
#include "wire_cmd.h"
#include "wire_cursor.h"

/* A non-negative integer option; MongoDB's code 51024 for negatives. */
static bool arg_nonneg(wire_cmd_ctx_t *ctx, const char *key, int64_t *out, bool *present,
                       bq_error_t *err)
{
    if (!wire_arg_int64(ctx, key, out, present, err))
        return false;
    if (*present && *out < 0) {
        bq_error_set(err, 51024, "BSON field '%s' value must be >= 0, actual value '%lld'", key,
                     (long long)*out);
        return false;
    }
    return true;
}

/* Answers from a secondary index when wire_ixscan_run (wire_util.c, which explain asks
 * too) says one applies: its candidates are filtered by m, keeping natural order. Returns
 * the count, WIRE_COLLECT_ERROR, or -2 when no index applies. The caller passes a filter
 * only when no collation is in force (the indexes compare binary). */
static ptrdiff_t collect_indexed(eng_coll_t *c, int64_t snap, const bq_match_t *m,
                                 const bson_t *filter, eng_doc_t **out, bq_error_t *err)
{
    wire_ixscan_t ix;
    if (!wire_ixscan_run(c, snap, filter, &ix))
        return -2;
    eng_doc_t *cand = ix.docs;
    size_t n = 0;
    for (size_t i = 0; i < ix.ndocs; i++) {
        bson_t doc;
        int r = m && bson_init_static(&doc, cand[i].data, cand[i].len)
                    ? bq_match_eval_env(m, &doc, NULL, err)
                    : 1;
        if (r < 0) {
            wire_ixscan_cleanup(&ix);
            *out = NULL;
            return (ptrdiff_t)WIRE_COLLECT_ERROR;
        }
        if (r)
            cand[n++] = cand[i];
    }
    ix.docs = NULL; /* the caller's now */
    wire_ixscan_cleanup(&ix);
    *out = cand;
    return (ptrdiff_t)n;
}

size_t wire_scan_collect(eng_coll_t *c, int64_t snap, wire_keep_fn keep, void *arg,
                         eng_doc_t **out, bq_error_t *err)
{
    size_t n = 0, cap = 16;
    eng_doc_t *docs = malloc(cap * sizeof *docs), d;
    if (!docs)
        abort();
    eng_scan_t scan;
    eng_scan_init(&scan, c, snap, false);
    while (eng_scan_next(&scan, &d)) {
        int r = keep(arg, &d, err);
        if (r < 0) {
            free(docs);
            *out = NULL;
            return WIRE_COLLECT_ERROR;
        }
        if (!r)
            continue;
        if (n == cap) {
            cap *= 2;
            eng_doc_t *nd = realloc(docs, cap * sizeof *nd);
            if (!nd)
                abort();
            docs = nd;
        }
        docs[n++] = d;
    }
    if (!wire_scan_done(&scan, err)) {
        free(docs);
        *out = NULL;
        return WIRE_COLLECT_ERROR;
    }
    *out = docs;
    return n;
}

/* wire_collect's scan: the documents m matches (all of them when m is NULL). */
static int keep_matching(void *arg, const eng_doc_t *d, bq_error_t *err)
{
    const bq_match_t *m = arg;
    bson_t doc;
    return m && bson_init_static(&doc, d->data, d->len) ? bq_match_eval_env(m, &doc, NULL, err)
                                                        : 1;
}

/* The documents of c at snap that match m (all of them when m is NULL), in natural order,
 * into a malloc'd array: through the _id index, a secondary index or a scan. */
size_t wire_collect(eng_coll_t *c, int64_t snap, const bq_match_t *m, const bson_t *filter,
                    eng_doc_t **out, bq_error_t *err)
{
    bson_value_t id;
    if (filter && wire_filter_id_eq(filter, &id)) {
        bool found;
        eng_doc_t d;
        if (!eng_coll_find_id_checked(c, snap, &id, &d, &found, err)) {
            *out = NULL;
            return WIRE_COLLECT_ERROR;
        }
        *out = malloc(sizeof **out);
        if (!*out)
            abort();
        if (found)
            **out = d;
        return found ? 1 : 0;
    }
    ptrdiff_t ni = collect_indexed(c, snap, m, filter, out, err);
    if (ni != -2)
        return (size_t)ni;
    return wire_scan_collect(c, snap, keep_matching, (void *)m, out, err);
}

/* Stable merge sort of documents by a compiled sort. */
static void sort_docs(eng_doc_t *docs, size_t n, const bq_sort_t *s)
{
    if (n < 2)
        return;
    eng_doc_t *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        abort();
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                bson_t a, b;
                bson_init_static(&a, docs[i].data, docs[i].len);
                bson_init_static(&b, docs[j].data, docs[j].len);
                tmp[k++] = bq_sort_compare(s, &b, &a) < 0 ? docs[j++] : docs[i++];
            }
            while (i < mid)
                tmp[k++] = docs[i++];
            while (j < hi)
                tmp[k++] = docs[j++];
        }
        memcpy(docs, tmp, n * sizeof *docs);
    }
    free(tmp);
}

bool cmd_find(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    bson_t filter, sort, proj;
    bool has_filter, has_sort, has_proj, has_skip, has_limit, has_batch, single;
    int64_t skip = 0, limit = 0, batch = WIRE_CURSOR_DEFAULT_FIRST_BATCH, snap;
    int natural_dir = 1;
    if (!wire_arg_coll(ctx, false, &coll, err) ||
        !wire_arg_doc(ctx, "filter", &filter, &has_filter, err) ||
        !wire_arg_doc(ctx, "sort", &sort, &has_sort, err) ||
        !wire_arg_doc(ctx, "projection", &proj, &has_proj, err) ||
        !arg_nonneg(ctx, "skip", &skip, &has_skip, err) ||
        !arg_nonneg(ctx, "limit", &limit, &has_limit, err) ||
        !arg_nonneg(ctx, "batchSize", &batch, &has_batch, err) ||
        !wire_arg_bool(ctx, "singleBatch", false, &single, err) ||
        !wire_read_snapshot(ctx, &snap, err))
        return false;
    if (!has_batch)
        batch = WIRE_CURSOR_DEFAULT_FIRST_BATCH;
    atomic_fetch_add(&ctx->server->opcounters.query, 1);
    if (wire_view_is(ctx->server->db, ctx->db, coll, snap))
        return wire_view_find(ctx, coll, err);
    int hint_dir;
    if (!wire_hint_check(ctx->cmd, eng_coll_get(ctx->server->db, ctx->db, coll, snap), snap,
                         &hint_dir, err))
        return false;

    bq_collation_t *co;
    if (!wire_collation(ctx->cmd, &co, err))
        return false;
    /* the _id index compares strings bytewise: under a collation every read scans; a
     * $natural hint asks for a collection scan in that direction */
    const bson_t *id_filter = co || hint_dir ? NULL : &filter;
    if (hint_dir)
        natural_dir = hint_dir;
    bq_match_t *m = wire_match_compile(ctx, &filter, co, err);
    bq_sort_t *s = NULL;
    if (m && has_sort && !bson_empty(&sort) && (s = bq_sort_compile(&sort, err)))
        bq_sort_set_collation(s, co);
    bq_collation_destroy(co); /* the matcher and the sort hold their own references */
    if (!m || (has_sort && !bson_empty(&sort) && !s)) {
        bq_match_destroy(m);
        return false;
    }
    wire_cursor_t *cur = wire_cursor_new(ctx->db, coll);
    if (has_proj && !bson_empty(&proj) && !(cur->proj = wire_project_compile(ctx, &proj, err))) {
        bq_match_destroy(m);
        if (s)
            bq_sort_destroy(s);
        wire_cursor_destroy(cur);
        return false;
    }
    if (cur->proj && bq_project_uses_positional(cur->proj))
        cur->filter = bson_copy(&filter);
    cur->skip = skip;
    cur->limit = has_limit && limit > 0 ? limit : -1;
    if (has_limit && limit > 0 && limit <= batch)
        single = true; /* the whole result fits the first batch: no cursor is left open */

    eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, coll, snap);
    if (!c) {
        bq_match_destroy(m);
    } else if (s && !bq_sort_is_natural(s, &natural_dir)) {
        cur->ndocs = wire_collect(c, snap, m, id_filter, &cur->docs, err);
        bq_match_destroy(m);
        if (cur->ndocs == WIRE_COLLECT_ERROR) {
            cur->ndocs = 0;
            bq_sort_destroy(s);
            wire_cursor_destroy(cur);
            return false;
        }
        sort_docs(cur->docs, cur->ndocs, s);
    } else if (id_filter && wire_filter_id_eq(id_filter, &(bson_value_t){0})) {
        cur->ndocs = wire_collect(c, snap, m, id_filter, &cur->docs, err);
        bq_match_destroy(m);
        if (cur->ndocs == WIRE_COLLECT_ERROR) {
            cur->ndocs = 0;
            bq_sort_destroy(s);
            wire_cursor_destroy(cur);
            return false;
        }
    } else {
        ptrdiff_t ni = natural_dir < 0 ? -2 : collect_indexed(c, snap, m, id_filter, &cur->docs, err);
        if (ni == (ptrdiff_t)WIRE_COLLECT_ERROR) {
            bq_match_destroy(m);
            if (s)
                bq_sort_destroy(s);
            wire_cursor_destroy(cur);
            return false;
        }
        if (ni >= 0) { /* answered from a secondary index */
            cur->ndocs = (size_t)ni;
            bq_match_destroy(m);
        } else {
            cur->use_scan = true;
            eng_scan_init(&cur->scan, c, snap, natural_dir < 0);
            cur->match = m;
        }
    }
    if (s)
        bq_sort_destroy(s);
    return wire_cursor_reply(ctx->server, cur, ctx->reply, "firstBatch", batch, single, err);
}

bool cmd_get_more(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_INT64(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'getMore.getMore' is the wrong type '%s', expected type 'long'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    int64_t id = bson_iter_int64(&it);
    if (!bson_iter_init_find(&it, ctx->cmd, "collection")) {
        bq_error_set(err, 40414,
                     "BSON field 'getMore.collection' is missing but a required field");
        return false;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'getMore.collection' is the wrong type '%s', expected type "
                     "'string'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    const char *coll = bson_iter_utf8(&it, NULL);
    int64_t batch = -1;
    bool has_batch;
    if (!arg_nonneg(ctx, "batchSize", &batch, &has_batch, err))
        return false;
    if (!has_batch || batch == 0)
        batch = -1;
    atomic_fetch_add(&ctx->server->opcounters.getmore, 1);

    wire_cursor_t *cur = wire_cursors_take(ctx->server->cursors, id, err);
    if (!cur)
        return false;
    char ns[ENG_NS_MAX + 80];
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, coll);
    if (strcmp(ns, cur->ns) != 0) {
        bq_error_set(err, BQ_ERR_Unauthorized,
                     "Requested getMore on namespace '%s', but cursor belongs to a different "
                     "namespace %s",
                     ns, cur->ns);
        wire_cursors_release(ctx->server->cursors, cur, false); /* untouched */
        return false;
    }
    return wire_cursor_reply(ctx->server, cur, ctx->reply, "nextBatch", batch, false, err);
}

bool cmd_kill_cursors(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    bson_iter_t arr;
    bool present;
    if (!wire_arg_coll(ctx, false, &coll, err) ||
        !wire_arg_array(ctx, "cursors", &arr, &present, err))
        return false;
    if (!present) {
        bq_error_set(err, 40414,
                     "BSON field 'killCursors.cursors' is missing but a required field");
        return false;
    }
    bson_t killed = BSON_INITIALIZER, missing = BSON_INITIALIZER;
    uint32_t nk = 0, nm = 0;
    while (bson_iter_next(&arr)) {
        if (!BSON_ITER_HOLDS_INT64(&arr)) {
            bson_destroy(&killed);
            bson_destroy(&missing);
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field 'killCursors.cursors.%s' is the wrong type '%s', expected "
                         "type 'long'",
                         bson_iter_key(&arr), bq_type_name(bson_iter_type(&arr)));
            return false;
        }
        int64_t id = bson_iter_int64(&arr);
        char key[16];
        if (wire_cursors_kill(ctx->server->cursors, id)) {
            snprintf(key, sizeof key, "%u", nk++);
            BSON_APPEND_INT64(&killed, key, id);
        } else {
            snprintf(key, sizeof key, "%u", nm++);
            BSON_APPEND_INT64(&missing, key, id);
        }
    }
    bson_t empty = BSON_INITIALIZER;
    BSON_APPEND_ARRAY(ctx->reply, "cursorsKilled", &killed);
    BSON_APPEND_ARRAY(ctx->reply, "cursorsNotFound", &missing);
    BSON_APPEND_ARRAY(ctx->reply, "cursorsAlive", &empty);
    BSON_APPEND_ARRAY(ctx->reply, "cursorsUnknown", &empty);
    bson_destroy(&killed);
    bson_destroy(&missing);
    return true;
}

/* count on a view: the view's stages, then $match, $skip, $limit, $count. */
static bool count_view(wire_cmd_ctx_t *ctx, const char *view, const bson_t *query,
                       int64_t skip, int64_t limit, bq_error_t *err)
{
    bson_t stages = BSON_INITIALIZER, st;
    uint32_t n = 0;
    char k[16];
    if (query && !bson_empty(query)) {
        snprintf(k, sizeof k, "%u", n++);
        BSON_APPEND_DOCUMENT_BEGIN(&stages, k, &st);
        BSON_APPEND_DOCUMENT(&st, "$match", query);
        bson_append_document_end(&stages, &st);
    }
    if (skip > 0) {
        snprintf(k, sizeof k, "%u", n++);
        BSON_APPEND_DOCUMENT_BEGIN(&stages, k, &st);
        BSON_APPEND_INT64(&st, "$skip", skip);
        bson_append_document_end(&stages, &st);
    }
    if (limit > 0) {
        snprintf(k, sizeof k, "%u", n++);
        BSON_APPEND_DOCUMENT_BEGIN(&stages, k, &st);
        BSON_APPEND_INT64(&st, "$limit", limit);
        bson_append_document_end(&stages, &st);
    }
    snprintf(k, sizeof k, "%u", n++);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, k, &st);
    BSON_APPEND_UTF8(&st, "$count", "n");
    bson_append_document_end(&stages, &st);
    bson_t **docs;
    size_t got = wire_agg_collect(ctx, view, &stages, &docs, err);
    bson_destroy(&stages);
    if (got == WIRE_COLLECT_ERROR)
        return false;
    int64_t total = 0;
    bson_iter_t it;
    if (got > 0 && bson_iter_init_find(&it, docs[0], "n") && BSON_ITER_HOLDS_NUMBER(&it))
        total = bson_iter_as_int64(&it);
    for (size_t i = 0; i < got; i++)
        bson_destroy(docs[i]);
    free(docs);
    bq_num_append(ctx->reply, "n", total);
    return true;
}

bool cmd_count(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    bson_t query;
    bool has_query, has_skip, has_limit;
    int64_t skip = 0, limit = 0, snap;
    if (!wire_arg_coll(ctx, false, &coll, err) ||
        !wire_arg_doc(ctx, "query", &query, &has_query, err) ||
        !arg_nonneg(ctx, "skip", &skip, &has_skip, err) ||
        !wire_arg_int64(ctx, "limit", &limit, &has_limit, err) ||
        !wire_read_snapshot(ctx, &snap, err))
        return false;
    if (limit < 0)
        limit = -limit; /* count treats a negative limit as its absolute value */
    if (wire_view_is(ctx->server->db, ctx->db, coll, snap))
        return count_view(ctx, coll, has_query ? &query : NULL, skip, limit, err);
    if (!wire_hint_check(ctx->cmd, eng_coll_get(ctx->server->db, ctx->db, coll, snap), snap,
                         NULL, err))
        return false;
    bq_collation_t *co;
    if (!wire_collation(ctx->cmd, &co, err))
        return false;
    bq_match_t *m = wire_match_compile(ctx, &query, co, err);
    bool collated = co != NULL;
    bq_collation_destroy(co);
    if (!m)
        return false;
    int64_t n = 0;
    eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, coll, snap);
    if (c) {
        eng_doc_t *docs;
        size_t total = wire_collect(c, snap, m, collated ? NULL : &query, &docs, err);
        free(docs);
        if (total == WIRE_COLLECT_ERROR) {
            bq_match_destroy(m);
            return false;
        }
        n = (int64_t)total - skip;
        if (n < 0)
            n = 0;
        if (limit > 0 && n > limit)
            n = limit;
    }
    bq_match_destroy(m);
    bq_num_append(ctx->reply, "n", n);
    return true;
}

/* distinct's seen set: the order-preserving keys (bq_key.h) of the values added so far,
 * in an open-addressing hash table (power-of-two slots, linear probing, at most half
 * full), so a distinct over n documents costs O(n) key builds and probes. */
typedef struct distinct_seen {
    uint64_t hash;
    uint8_t *key; /* NULL: empty slot */
    size_t len;
} distinct_seen_t;

typedef struct distinct_ctx {
    bson_t *values;
    uint32_t n;
    const bq_collation_t *collation; /* values equal under it count once; NULL: binary */
    bq_key_t key;
    distinct_seen_t *slots;
    size_t nslots, nseen;
} distinct_ctx_t;

/* The slot holding key (found) or the empty slot where it goes. */
static distinct_seen_t *distinct_slot(distinct_ctx_t *d, uint64_t h, const uint8_t *key,
                                      size_t len)
{
    size_t mask = d->nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        distinct_seen_t *e = &d->slots[i];
        if (!e->key || (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0))
            return e;
    }
}

static void distinct_grow(distinct_ctx_t *d)
{
    distinct_seen_t *old = d->slots;
    size_t nold = d->nslots;
    d->nslots = nold ? nold * 2 : 64;
    d->slots = calloc(d->nslots, sizeof *d->slots);
    if (!d->slots)
        abort();
    for (size_t i = 0; i < nold; i++)
        if (old[i].key)
            *distinct_slot(d, old[i].hash, old[i].key, old[i].len) = old[i];
    free(old);
}

static void distinct_add(distinct_ctx_t *d, const bson_value_t *v)
{
    bq_key_build_collated(&d->key, v, d->collation);
    if (2 * (d->nseen + 1) > d->nslots)
        distinct_grow(d);
    uint64_t h = bq_key_hash(d->key.data, d->key.len);
    distinct_seen_t *e = distinct_slot(d, h, d->key.data, d->key.len);
    if (e->key)
        return;
    e->key = malloc(d->key.len ? d->key.len : 1);
    if (!e->key)
        abort();
    memcpy(e->key, d->key.data, d->key.len);
    e->len = d->key.len;
    e->hash = h;
    d->nseen++;
    char k[16];
    snprintf(k, sizeof k, "%u", d->n++);
    bson_append_value(d->values, k, -1, v);
}

static void distinct_cleanup(distinct_ctx_t *d)
{
    for (size_t i = 0; i < d->nslots; i++)
        free(d->slots[i].key);
    free(d->slots);
    bq_key_cleanup(&d->key);
}

static bool distinct_hit(void *arg, const bq_path_hit_t *hit)
{
    distinct_ctx_t *d = arg;
    if (!hit->value)
        return false;
    if (hit->value->value_type == BSON_TYPE_ARRAY) {
        /* an array contributes its elements */
        bson_t arr;
        bson_iter_t it;
        if (bson_init_static(&arr, hit->value->value.v_doc.data,
                             hit->value->value.v_doc.data_len) &&
            bson_iter_init(&it, &arr))
            while (bson_iter_next(&it))
                distinct_add(d, bson_iter_value(&it));
        return false;
    }
    distinct_add(d, hit->value);
    return false;
}

bool cmd_distinct(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    bson_t query;
    bool has_query;
    int64_t snap;
    bson_iter_t it;
    if (!wire_arg_coll(ctx, false, &coll, err) ||
        !wire_arg_doc(ctx, "query", &query, &has_query, err) ||
        !wire_read_snapshot(ctx, &snap, err))
        return false;
    if (!bson_iter_init_find(&it, ctx->cmd, "key")) {
        bq_error_set(err, 40414, "BSON field 'distinct.key' is missing but a required field");
        return false;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'distinct.key' is the wrong type '%s', expected type 'string'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    const char *key = bson_iter_utf8(&it, NULL);
    bq_collation_t *co;
    if (!wire_collation(ctx->cmd, &co, err))
        return false;
    if (wire_view_is(ctx->server->db, ctx->db, coll, snap)) {
        /* through a view: its collation decides which values are equal */
        bq_collation_t *vco;
        bool ok = wire_view_collation(ctx->server->db, ctx->db, coll, snap, ctx->cmd, co, &vco,
                                      err);
        bq_collation_destroy(co);
        if (!ok)
            return false;
        co = vco;
    }
    bq_match_t *m = wire_match_compile(ctx, &query, co, err);
    if (!m) {
        bq_collation_destroy(co);
        return false;
    }
    bson_t values = BSON_INITIALIZER;
    distinct_ctx_t d = {.values = &values, .collation = co};
    bq_key_init(&d.key);
    eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, coll, snap);
    if (c && wire_view_is(ctx->server->db, ctx->db, coll, snap)) {
        /* a view: its documents (after $match) from the aggregation */
        bson_t stages = BSON_INITIALIZER, st;
        if (has_query && !bson_empty(&query)) {
            BSON_APPEND_DOCUMENT_BEGIN(&stages, "0", &st);
            BSON_APPEND_DOCUMENT(&st, "$match", &query);
            bson_append_document_end(&stages, &st);
        }
        bson_t **vdocs;
        size_t n = wire_agg_collect(ctx, coll, &stages, &vdocs, err);
        bson_destroy(&stages);
        if (n == WIRE_COLLECT_ERROR) {
            bq_match_destroy(m);
            bq_collation_destroy(co);
            bson_destroy(&values);
            distinct_cleanup(&d);
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            bq_path_walk(vdocs[i], key, 0, distinct_hit, &d);
            bson_destroy(vdocs[i]);
        }
        free(vdocs);
    } else if (c) {
        eng_doc_t *docs;
        size_t n = wire_collect(c, snap, m, co ? NULL : &query, &docs, err);
        if (n == WIRE_COLLECT_ERROR) {
            bq_match_destroy(m);
            bq_collation_destroy(co);
            bson_destroy(&values);
            distinct_cleanup(&d);
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            bson_t doc;
            bson_init_static(&doc, docs[i].data, docs[i].len);
            bq_path_walk(&doc, key, 0, distinct_hit, &d);
        }
        free(docs);
    }
    bq_match_destroy(m);
    bool ok = values.len < WIRE_MAX_BSON_SIZE;
    if (ok)
        BSON_APPEND_ARRAY(ctx->reply, "values", &values);
    else
        bq_error_set(err, 17217, "distinct too big, 16mb cap");
    bson_destroy(&values);
    distinct_cleanup(&d);
    bq_collation_destroy(co);
    return ok;
}
