/*
 * wire_util.c: small helpers the handlers share.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "bq_project.h"
#include "cmd_index.h"
#include "wire_int.h"

int64_t wire_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void wire_append_now(bson_t *doc, const char *key)
{
    bson_append_date_time(doc, key, -1, wire_now_ms());
}

/* ---- command arguments ---- */

static void wrong_type(const wire_cmd_ctx_t *ctx, const char *key, const bson_iter_t *it,
                       const char *expected, bq_error_t *err)
{
    bq_error_set(err, BQ_ERR_TypeMismatch,
                 "BSON field '%s.%s' is the wrong type '%s', expected type '%s'", ctx->name,
                 key, bq_type_name(bson_iter_type(it)), expected);
}

bool wire_ns_check(const char *db, const char *coll, bq_error_t *err)
{
    size_t n = strlen(coll);
    if (n == 0) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid namespace specified '%s.'", db);
        return false;
    }
    if (strchr(coll, '$')) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid collection name: %s", coll);
        return false;
    }
    if (strlen(db) + 1 + n > ENG_NS_MAX) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "Fully qualified namespace is too long. Namespace: %s.%s Max: %d", db, coll,
                     ENG_NS_MAX);
        return false;
    }
    if (coll[0] == '.' || coll[n - 1] == '.') {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid collection name: %s", coll);
        return false;
    }
    return true;
}

/* The system collections a client may create or write to (MongoDB's allow list). */
static bool system_coll_allowed(const char *coll)
{
    static const char *const allowed[] = {"system.js", "system.views", "system.profile",
                                          "system.buckets"};
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (strncmp(coll, allowed[i], strlen(allowed[i])) == 0)
            return true;
    return false;
}

bool wire_arg_coll(wire_cmd_ctx_t *ctx, bool for_write, const char **coll, bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "collection name has invalid type %s", bq_type_name(bson_iter_type(&it)));
        return false;
    }
    uint32_t len;
    *coll = bson_iter_utf8(&it, &len);
    if (strlen(*coll) != len) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "collection name contains a null byte");
        return false;
    }
    if (!wire_ns_check(ctx->db, *coll, err))
        return false;
    if (for_write && strncmp(*coll, "system.", 7) == 0 && !system_coll_allowed(*coll)) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid system namespace: %s.%s", ctx->db,
                     *coll);
        return false;
    }
    return true;
}

bool wire_arg_doc(wire_cmd_ctx_t *ctx, const char *key, bson_t *out, bool *present,
                  bq_error_t *err)
{
    bson_iter_t it;
    *present = false;
    bson_init(out);
    if (!bson_iter_init_find(&it, ctx->cmd, key) || BSON_ITER_HOLDS_NULL(&it))
        return true;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        wrong_type(ctx, key, &it, "object", err);
        return false;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_destroy(out);
    bson_init_static(out, data, len);
    *present = true;
    return true;
}

bool wire_arg_array(wire_cmd_ctx_t *ctx, const char *key, bson_iter_t *arr, bool *present,
                    bq_error_t *err)
{
    bson_iter_t it;
    *present = false;
    if (!bson_iter_init_find(&it, ctx->cmd, key))
        return true;
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        wrong_type(ctx, key, &it, "array", err);
        return false;
    }
    bson_iter_recurse(&it, arr);
    *present = true;
    return true;
}

bool wire_arg_int64(wire_cmd_ctx_t *ctx, const char *key, int64_t *out, bool *present,
                    bq_error_t *err)
{
    bson_iter_t it;
    *present = false;
    if (!bson_iter_init_find(&it, ctx->cmd, key) || BSON_ITER_HOLDS_NULL(&it))
        return true;
    if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) {
        *out = bson_iter_as_int64(&it);
    } else if (BSON_ITER_HOLDS_DOUBLE(&it)) {
        double d = bson_iter_double(&it);
        if (d != (double)(int64_t)d) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '%s.%s' must be an integer, not %g", ctx->name, key, d);
            return false;
        }
        *out = (int64_t)d;
    } else {
        wrong_type(ctx, key, &it, "long", err);
        return false;
    }
    *present = true;
    return true;
}

bool wire_arg_bool(wire_cmd_ctx_t *ctx, const char *key, bool dflt, bool *out,
                   bq_error_t *err)
{
    bson_iter_t it;
    *out = dflt;
    if (!bson_iter_init_find(&it, ctx->cmd, key) || BSON_ITER_HOLDS_NULL(&it))
        return true;
    if (!BSON_ITER_HOLDS_BOOL(&it) && !BSON_ITER_HOLDS_NUMBER(&it)) {
        wrong_type(ctx, key, &it, "bool", err);
        return false;
    }
    *out = bson_iter_as_bool(&it);
    return true;
}

bool wire_generic_arg(const char *key)
{
    static const char *const generic[] = {
        "$db", "lsid", "txnNumber", "autocommit", "startTransaction", "$clusterTime",
        "writeConcern", "readConcern", "$readPreference", "readPreference", "comment",
        "maxTimeMS", "maxTimeMSOpOnly", "apiVersion", "apiStrict", "apiDeprecationErrors",
        "$audit", "$client", "mayBypassWriteBlocking", "clientOperationKey",
        "databaseVersion", "shardVersion"};
    for (size_t i = 0; i < sizeof generic / sizeof *generic; i++)
        if (strcmp(key, generic[i]) == 0)
            return true;
    return false;
}

/* Two key patterns are the same hint when they have the same fields in the same order
 * with equal values (1 and 1.0 alike, as mongod compares them). */
static bool key_pattern_equal(const bson_t *a, const bson_t *b)
{
    bson_iter_t x, y;
    if (!bson_iter_init(&x, a) || !bson_iter_init(&y, b))
        return false;
    for (;;) {
        bool nx = bson_iter_next(&x), ny = bson_iter_next(&y);
        if (!nx || !ny)
            return nx == ny;
        if (strcmp(bson_iter_key(&x), bson_iter_key(&y)) != 0 ||
            bq_value_compare(bson_iter_value(&x), bson_iter_value(&y)) != 0)
            return false;
    }
}

bool wire_hint_check(const bson_t *holder, eng_coll_t *c, int64_t snap, int *natural_dir,
                     bq_error_t *err)
{
    bson_iter_t it;
    if (natural_dir)
        *natural_dir = 0;
    if (!bson_iter_init_find(&it, holder, "hint"))
        return true;
    const char *name = NULL;
    bson_t pattern;
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        name = bson_iter_utf8(&it, NULL);
    } else if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&pattern, data, len))
            return true;
        bson_iter_t n;
        if (bson_iter_init_find(&n, &pattern, "$natural") && bson_count_keys(&pattern) == 1) {
            double d = BSON_ITER_HOLDS_NUMBER(&n) ? bson_iter_as_double(&n) : 0;
            if (d != 1 && d != -1) {
                bq_error_set(err, BQ_ERR_BadValue, "$natural hint may only accept 1 or -1");
                return false;
            }
            if (natural_dir)
                *natural_dir = d < 0 ? -1 : 1;
            return true;
        }
        if (bson_empty(&pattern))
            return true; /* {} is no hint, as mongod reads it */
    } else {
        bq_error_set(err, BQ_ERR_BadValue, "hint must be a string or an object, not %s",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    if (!c)
        return true;
    bson_t **specs;
    size_t n = wire_index_specs(c, snap, &specs);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t f;
        if (name) {
            found = found || (bson_iter_init_find(&f, specs[i], "name") &&
                              BSON_ITER_HOLDS_UTF8(&f) &&
                              strcmp(bson_iter_utf8(&f, NULL), name) == 0);
        } else if (!found && bson_iter_init_find(&f, specs[i], "key") &&
                   BSON_ITER_HOLDS_DOCUMENT(&f)) {
            uint32_t len;
            const uint8_t *data;
            bson_t key;
            bson_iter_document(&f, &len, &data);
            found = bson_init_static(&key, data, len) && key_pattern_equal(&key, &pattern);
        }
        bson_destroy(specs[i]);
    }
    free(specs);
    if (!found)
        bq_error_set(err, BQ_ERR_BadValue,
                     "error processing query: planner returned error :: caused by :: hint "
                     "provided does not correspond to an existing index");
    return found;
}

bool wire_scan_done(const eng_scan_t *scan, bq_error_t *err)
{
    const bq_error_t *e = eng_scan_error(scan);
    if (!e)
        return true;
    if (err)
        *err = *e;
    return false;
}

bool wire_read_snapshot(wire_cmd_ctx_t *ctx, int64_t *snap, bq_error_t *err)
{
    eng_db_t *db = ctx->server->db;
    int64_t head = eng_db_snapshot(db);
    *snap = head;
    bson_iter_t it, rc;
    if (bson_iter_init_find(&it, ctx->cmd, "asOf")) {
        if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) < 0) {
            bq_error_set(err, BQ_ERR_BadValue, "asOf must be a non-negative op seq");
            return false;
        }
        int64_t s = bson_iter_as_int64(&it);
        if (s > head) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "asOf %lld is in the future: the newest committed op is %lld",
                         (long long)s, (long long)head);
            return false;
        }
        *snap = s;
        return true;
    }
    /* readConcern: level "snapshot" pins the cluster time of the read, atClusterTime
     * reads at an earlier one */
    if (!bson_iter_init_find(&it, ctx->cmd, "readConcern") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return true;
    if (bson_iter_recurse(&it, &rc) && bson_iter_find(&rc, "level") &&
        BSON_ITER_HOLDS_UTF8(&rc) && strcmp(bson_iter_utf8(&rc, NULL), "snapshot") == 0) {
        ctx->snapshot_read = true;
        eng_db_cluster_time(db, head, &ctx->snapshot_t, &ctx->snapshot_i);
    }
    if (!bson_iter_recurse(&it, &rc) || !bson_iter_find(&rc, "atClusterTime"))
        return true;
    if (!BSON_ITER_HOLDS_TIMESTAMP(&rc)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "readConcern.atClusterTime must be a Timestamp");
        return false;
    }
    uint32_t t, i;
    bson_iter_timestamp(&rc, &t, &i);
    uint32_t ht, hi;
    eng_db_cluster_time(db, head, &ht, &hi);
    if (t > ht || (t == ht && i > hi)) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "readConcern.atClusterTime %u:%u is later than the newest op %u:%u", t, i,
                     ht, hi);
        return false;
    }
    *snap = eng_db_snapshot_at(db, t, i);
    ctx->snapshot_t = t;
    ctx->snapshot_i = i;
    return true;
}

bq_match_t *wire_match_compile(wire_cmd_ctx_t *ctx, const bson_t *filter,
                               const bq_collation_t *collation, bq_error_t *err)
{
    bson_t let;
    bool has_let;
    if (!wire_arg_doc(ctx, "let", &let, &has_let, err))
        return NULL;
    bq_match_opts_t opts = {.let = has_let ? &let : NULL, .collation = collation};
    return bq_match_compile_opts(filter, &opts, err);
}

bq_project_t *wire_project_compile(wire_cmd_ctx_t *ctx, const bson_t *projection,
                                   bq_error_t *err)
{
    bson_t let;
    bool has_let;
    if (!wire_arg_doc(ctx, "let", &let, &has_let, err))
        return NULL;
    return bq_project_compile_let(projection, has_let ? &let : NULL, err);
}

bool wire_collation(const bson_t *holder, bq_collation_t **out, bq_error_t *err)
{
    bson_iter_t it;
    *out = NULL;
    if (!bson_iter_init_find(&it, holder, "collation"))
        return true;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'collation' is the wrong type '%s', expected type 'object'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    uint32_t len;
    const uint8_t *data;
    bson_t spec;
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&spec, data, len)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "collation is not valid BSON");
        return false;
    }
    return bq_collation_new(&spec, out, err);
}

bool wire_filter_id_eq(const bson_t *filter, bson_value_t *id)
{
    bson_iter_t it;
    if (!filter || bson_count_keys(filter) != 1 || !bson_iter_init_find(&it, filter, "_id"))
        return false;
    bson_type_t t = bson_iter_type(&it);
    if (t == BSON_TYPE_REGEX || t == BSON_TYPE_ARRAY)
        return false;
    if (t == BSON_TYPE_DOCUMENT) {
        bson_iter_t sub;
        bson_iter_recurse(&it, &sub);
        if (bson_iter_next(&sub) && bson_iter_key(&sub)[0] == '$')
            return false;
    }
    *id = *bson_iter_value(&it);
    return true;
}

/* ---- single-field index lookups: one decision for the reads and for explain ---- */

static void ixscan_point_add(wire_ixscan_t *ix, const bson_value_t *v, size_t *cap)
{
    if (ix->npoints == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        bson_value_t *np = realloc(ix->points, *cap * sizeof *np);
        if (!np)
            abort();
        ix->points = np;
    }
    ix->points[ix->npoints++] = *v;
}

/* The points the predicate `it` (a top-level field of a filter) asks an index for, into
 * ix->points: {f: v}, {f: {$eq: v}} or {f: {$in: [v...]}} with lookupable values only.
 * False (and no points) for any other predicate. */
static bool ixscan_points(const bson_iter_t *it, wire_ixscan_t *ix)
{
    size_t cap = 0;
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    bson_iter_t sub;
    ix->npoints = 0;
    if (BSON_ITER_HOLDS_DOCUMENT(it) && bson_iter_recurse(it, &sub) && bson_iter_next(&sub) &&
        bson_iter_key(&sub)[0] == '$') {
        const char *op = bson_iter_key(&sub);
        bson_iter_t one = sub;
        if (bson_iter_next(&one))
            return false; /* several operators: not an equality alone */
        if (strcmp(op, "$eq") == 0) {
            if (!eng_index_value_ok(bson_iter_value(&sub)))
                return false;
            ixscan_point_add(ix, bson_iter_value(&sub), &cap);
            return true;
        }
        bson_iter_t arr;
        if (strcmp(op, "$in") != 0 || !BSON_ITER_HOLDS_ARRAY(&sub) || !bson_iter_recurse(&sub, &arr))
            return false;
        while (bson_iter_next(&arr)) {
            if (!eng_index_value_ok(bson_iter_value(&arr))) {
                ix->npoints = 0;
                return false;
            }
            ixscan_point_add(ix, bson_iter_value(&arr), &cap);
        }
        return true;
    }
    if (!eng_index_value_ok(v))
        return false;
    ixscan_point_add(ix, v, &cap);
    return true;
}

/* A spec the postings of a single-field index on `field` answer, as eng_coll_index_lookup
 * picks them (no collation, no partial filter, an ascending or descending key), and that
 * the planner may use (not hidden). */
static bool ixscan_spec_fits(const bson_t *spec, const char *field)
{
    bson_iter_t it, key;
    if (!bson_iter_init_find(&it, spec, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &key) || !bson_iter_next(&key) ||
        strcmp(bson_iter_key(&key), field) != 0 || !BSON_ITER_HOLDS_NUMBER(&key))
        return false;
    bson_iter_t more = key;
    if (bson_iter_next(&more))
        return false;
    if (bson_has_field(spec, "partialFilterExpression") || bson_has_field(spec, "collation"))
        return false;
    return !(bson_iter_init_find(&it, spec, "hidden") && bson_iter_as_bool(&it));
}

static int ixscan_point_cmp(const void *a, const void *b)
{
    return bq_value_compare(a, b);
}

/* The lookup of ix->points on ix->field into ix->docs (each document once, natural
 * order) and ix->keys. False when the engine could not answer. */
static bool ixscan_lookup(eng_coll_t *c, int64_t snap, wire_ixscan_t *ix)
{
    size_t n, entries;
    if (!eng_coll_index_lookup(c, snap, ix->field, ix->points, ix->npoints, &ix->docs, &n,
                               &entries))
        return false;
    ix->ndocs = n;
    ix->keys = (int64_t)entries;
    return true;
}

void wire_ixscan_cleanup(wire_ixscan_t *ix)
{
    free(ix->points);
    free(ix->docs);
    memset(ix, 0, sizeof *ix);
}

bool wire_ixscan_run(eng_coll_t *c, int64_t snap, const bson_t *filter, wire_ixscan_t *ix)
{
    memset(ix, 0, sizeof *ix);
    bson_iter_t it;
    if (!c || !filter || !bson_iter_init(&it, filter))
        return false;
    const bson_t **specs = NULL;
    size_t nspecs = 0;
    bool listed = false;
    for (uint32_t pos = 0; bson_iter_next(&it); pos++) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$' || strcmp(k, "_id") == 0 || !ixscan_points(&it, ix))
            continue;
        if (!listed) { /* only once a field could use an index */
            nspecs = eng_coll_indexes(c, snap, &specs);
            listed = true;
        }
        const bson_t *spec = NULL;
        for (size_t i = 0; i < nspecs && !spec; i++)
            if (ixscan_spec_fits(specs[i], k))
                spec = specs[i];
        if (!spec)
            continue;
        /* the points in index order, each key once (1, 1.0 and NumberLong(1) are one) */
        if (ix->npoints > 1) /* $in: [] has none (and no array: qsort(NULL) is UB) */
            qsort(ix->points, ix->npoints, sizeof *ix->points, ixscan_point_cmp);
        size_t n = 0;
        for (size_t i = 0; i < ix->npoints; i++)
            if (n == 0 || bq_value_compare(&ix->points[n - 1], &ix->points[i]) != 0)
                ix->points[n++] = ix->points[i];
        ix->npoints = n;
        bson_iter_t key;
        if (bson_iter_init_find(&key, spec, "key") && bson_iter_recurse(&key, &key) &&
            bson_iter_next(&key) && bson_iter_as_double(&key) < 0) {
            ix->descending = true;
            for (size_t i = 0; i < n / 2; i++) {
                bson_value_t t = ix->points[i];
                ix->points[i] = ix->points[n - 1 - i];
                ix->points[n - 1 - i] = t;
            }
        }
        ix->field = k;
        ix->pred = pos;
        ix->spec = spec;
        if (ixscan_lookup(c, snap, ix)) {
            free(specs);
            return true;
        }
        ix->descending = false;
    }
    free(specs);
    wire_ixscan_cleanup(ix);
    return false;
}
