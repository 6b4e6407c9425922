/*
 * cmd_timeseries.c: time-series collections: the checks of create's timeseries options
 * and the catalog options they become, the bucket document a measurement is stored as,
 * the listCollections entry, and the refusal of what NEDB does not run on one. See
 * cmd_timeseries.h for the design (a view over system.buckets.X, one bucket per
 * measurement).
 *
 * It also holds what update and delete need to work on measurements (collect the buckets
 * whose measurement matches, re-wrap an updated measurement) and MongoDB 7.0's limits on
 * them.
 *
 * This file builds documents and reads the catalog at a snapshot; it never writes. The
 * handlers in cmd_catalog.c (create, drop, listCollections, listIndexes, collMod,
 * renameCollection) and cmd_write.c (insert, update, delete, findAndModify) call it.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd_timeseries.h"
#include "cmd_view.h"
#include "wire_cmd.h"

/* mongod's bounds of bucketMaxSpanSeconds / bucketRoundingSeconds (one year), and of a
 * TTL's expireAfterSeconds. */
#define TS_BUCKET_SECONDS_MAX 31536000
#define TS_EXPIRE_MAX INT32_MAX

/* The granularities and what they imply (mongod's defaults). */
static const struct {
    const char *name;
    int32_t max_span;  /* bucketMaxSpanSeconds */
} granularities[] = {
    {"seconds", 3600},
    {"minutes", 86400},
    {"hours", 2592000},
};

/* Whether the catalog options of a view are a time-series collection's. */
static bool ts_view_is(const bson_t *view_opts)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, view_opts, "timeseries") && BSON_ITER_HOLDS_DOCUMENT(&it);
}

const bson_t *wire_ts_options(eng_db_t *db, const char *dbname, const char *name, int64_t snap)
{
    const bson_t *o = wire_view_options(db, dbname, name, snap);
    return o && ts_view_is(o) ? o : NULL;
}

/* ---------------------------------------------------------------- create */

/* A field name of the timeseries options: a string (14) without NUL (2) or '.' (72). */
static bool ts_field_name(const bson_iter_t *it, const char *key, const char **out,
                          bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'create.timeseries.%s' is the wrong type '%s', expected type "
                     "'string'",
                     key, bq_type_name(bson_iter_type(it)));
        return false;
    }
    uint32_t len;
    *out = bson_iter_utf8(it, &len);
    if (strlen(*out) != len) {
        bq_error_set(err, BQ_ERR_BadValue, "The '%s' cannot contain embedded null characters",
                     key);
        return false;
    }
    if (strchr(*out, '.')) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "The '%s' cannot contain embedded '.' characters", key);
        return false;
    }
    return true;
}

/* bucketMaxSpanSeconds / bucketRoundingSeconds: a whole number (14) in [1, one year]
 * (51024, the IDL's range check). */
static bool ts_bucket_seconds(const bson_iter_t *it, const char *key, int32_t *out,
                              bq_error_t *err)
{
    double v;
    if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it))
        v = (double)bson_iter_as_int64(it);
    else if (BSON_ITER_HOLDS_DOUBLE(it))
        v = bson_iter_double(it);
    else
        v = 0.5; /* not a number: the type error below */
    bool whole = v == v && (v > 1e15 || v < -1e15 || v == (double)(int64_t)v);
    if (!whole) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'create.timeseries.%s' is the wrong type '%s', expected type "
                     "'int'",
                     key, bq_type_name(bson_iter_type(it)));
        return false;
    }
    if (v < 1) {
        bq_error_set(err, 51024, "BSON field 'create.timeseries.%s' value must be >= 1", key);
        return false;
    }
    if (v > TS_BUCKET_SECONDS_MAX) {
        bq_error_set(err, 51024, "BSON field 'create.timeseries.%s' value must be <= %d", key,
                     TS_BUCKET_SECONDS_MAX);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

/* The timeseries document checked and normalized into `out` (mongod's field order:
 * timeField, metaField, granularity, bucketRoundingSeconds, bucketMaxSpanSeconds). */
static bool ts_spec_build(const bson_iter_t *spec_it, bson_t *out, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(spec_it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'create.timeseries' is the wrong type '%s', expected type "
                     "'object'",
                     bq_type_name(bson_iter_type(spec_it)));
        return false;
    }
    const char *time_field = NULL, *meta_field = NULL, *granularity = NULL;
    int32_t max_span = 0, rounding = 0;
    size_t gran = 0; /* granularities[gran] is `granularity`'s */
    bson_iter_t it;
    bson_iter_recurse(spec_it, &it);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool ok;
        if (!strcmp(k, "timeField")) {
            ok = ts_field_name(&it, k, &time_field, err);
        } else if (!strcmp(k, "metaField")) {
            ok = ts_field_name(&it, k, &meta_field, err);
        } else if (!strcmp(k, "granularity")) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field 'create.timeseries.granularity' is the wrong type "
                             "'%s', expected type 'string'",
                             bq_type_name(bson_iter_type(&it)));
                return false;
            }
            granularity = bson_iter_utf8(&it, NULL);
            for (gran = 0; gran < sizeof granularities / sizeof *granularities; gran++)
                if (!strcmp(granularity, granularities[gran].name))
                    break;
            ok = gran < sizeof granularities / sizeof *granularities;
            if (!ok)
                bq_error_set(err, BQ_ERR_BadValue,
                             "Enumeration value '%s' for field 'create.timeseries.granularity' "
                             "is not a valid value.",
                             granularity);
        } else if (!strcmp(k, "bucketMaxSpanSeconds")) {
            ok = ts_bucket_seconds(&it, k, &max_span, err);
        } else if (!strcmp(k, "bucketRoundingSeconds")) {
            ok = ts_bucket_seconds(&it, k, &rounding, err);
        } else {
            bq_error_set(err, BQ_ERR_IDLUnknownField,
                         "BSON field 'create.timeseries.%s' is an unknown field.", k);
            ok = false;
        }
        if (!ok)
            return false;
    }
    if (!time_field) {
        bq_error_set(err, BQ_ERR_IDLFailedToParse,
                     "BSON field 'create.timeseries.timeField' is missing but a required field");
        return false;
    }
    if (meta_field && !strcmp(meta_field, time_field)) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "The 'metaField' and 'timeField' must be different");
        return false;
    }
    /* bucketing: a granularity (its own span and rounding), or both seconds, equal */
    if (granularity) {
        int32_t dflt = granularities[gran].max_span;
        if (rounding) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "Timeseries 'bucketRoundingSeconds' cannot be set together with "
                         "'granularity'");
            return false;
        }
        if (max_span && max_span != dflt) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "Timeseries 'bucketMaxSpanSeconds' is not configurable to a value "
                         "other than the default of %d for the provided granularity",
                         dflt);
            return false;
        }
        max_span = dflt;
    } else if (max_span || rounding) {
        if (!max_span || !rounding) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "Timeseries 'bucketMaxSpanSeconds' and 'bucketRoundingSeconds' need "
                         "to be set alongside each other");
            return false;
        }
        if (max_span != rounding) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "Timeseries 'bucketRoundingSeconds' needs to be equal to "
                         "'bucketMaxSpanSeconds'");
            return false;
        }
    } else {
        granularity = granularities[0].name;
        max_span = granularities[0].max_span;
    }
    BSON_APPEND_UTF8(out, "timeField", time_field);
    if (meta_field)
        BSON_APPEND_UTF8(out, "metaField", meta_field);
    if (granularity)
        BSON_APPEND_UTF8(out, "granularity", granularity);
    else
        BSON_APPEND_INT32(out, "bucketRoundingSeconds", rounding);
    BSON_APPEND_INT32(out, "bucketMaxSpanSeconds", max_span);
    return true;
}

bool wire_expire_after_check(const bson_iter_t *it, int64_t *out, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_NUMBER(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'create.expireAfterSeconds' is the wrong type '%s', expected "
                     "types '[long, int, decimal, double]'",
                     bq_type_name(bson_iter_type(it)));
        return false;
    }
    double d = BSON_ITER_HOLDS_DOUBLE(it) ? bson_iter_double(it) : (double)bson_iter_as_int64(it);
    if (!(d >= 0)) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "TTL index 'expireAfterSeconds' option cannot be less than 0.");
        return false;
    }
    if (d > TS_EXPIRE_MAX) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "TTL index 'expireAfterSeconds' option must be within an acceptable "
                     "range, try a lower number");
        return false;
    }
    *out = (int64_t)d;
    return true;
}

bool wire_ts_create_build(wire_cmd_ctx_t *ctx, const char *name, const bson_t *opts,
                          bson_t *view_opts, bson_t *buckets_opts, char *buckets_name,
                          bq_error_t *err)
{
    bson_init(view_opts);
    bson_init(buckets_opts);
    snprintf(buckets_name, ENG_NS_MAX + 1, "%s", name);
    bson_t spec = BSON_INITIALIZER;
    int64_t expire = -1;
    bool ok = true;
    bson_iter_t it;
    bson_iter_init(&it, opts);
    while (ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "timeseries")) {
            ok = ts_spec_build(&it, &spec, err);
        } else if (!strcmp(k, "expireAfterSeconds")) {
            ok = wire_expire_after_check(&it, &expire, err);
        } else if (!strcmp(k, "collation")) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "time-series collections with a collation are not implemented yet "
                         "in NEDB");
            ok = false;
        } else if (strcmp(k, "storageEngine") && strcmp(k, "indexOptionDefaults")) {
            /* storage tuning is accepted and has no effect here; everything else is
             * something a time-series collection cannot have (capped, validator, viewOn,
             * clusteredIndex, idIndex, ...) */
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "option not supported on a time-series collection: %s", k);
            ok = false;
        }
    }
    char buckets[ENG_NS_MAX + 1];
    if (ok && strlen(WIRE_TS_BUCKETS_PREFIX) + strlen(name) >= sizeof buckets) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "Fully qualified namespace is too long. Namespace: %s.%s%s Max: %d",
                     ctx->db, WIRE_TS_BUCKETS_PREFIX, name, ENG_NS_MAX);
        ok = false;
    }
    if (ok) {
        memcpy(buckets, WIRE_TS_BUCKETS_PREFIX, strlen(WIRE_TS_BUCKETS_PREFIX));
        strcpy(buckets + strlen(WIRE_TS_BUCKETS_PREFIX), name);
        ok = wire_ns_check(ctx->db, buckets, err);
    }
    if (ok) {
        memcpy(buckets_name, buckets, strlen(buckets) + 1);
        bson_t pipeline, stage;
        BSON_APPEND_UTF8(view_opts, "viewOn", buckets);
        BSON_APPEND_ARRAY_BEGIN(view_opts, "pipeline", &pipeline);
        BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
        BSON_APPEND_UTF8(&stage, "$replaceWith", "$data");
        bson_append_document_end(&pipeline, &stage);
        bson_append_array_end(view_opts, &pipeline);
        BSON_APPEND_DOCUMENT(view_opts, "timeseries", &spec);
        BSON_APPEND_BOOL(buckets_opts, "clusteredIndex", true);
        BSON_APPEND_DOCUMENT(buckets_opts, "timeseries", &spec);
        if (expire >= 0) {
            BSON_APPEND_INT64(view_opts, "expireAfterSeconds", expire);
            BSON_APPEND_INT64(buckets_opts, "expireAfterSeconds", expire);
        }
    }
    bson_destroy(&spec);
    return ok;
}

/* ---------------------------------------------------------------- insert */

/* The string at `key` of the timeseries options, or NULL. */
static const char *ts_spec_field(const bson_t *ts_opts, const char *key)
{
    bson_iter_t it, f;
    if (bson_iter_init_find(&it, ts_opts, "timeseries") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &f) && bson_iter_find(&f, key) && BSON_ITER_HOLDS_UTF8(&f))
        return bson_iter_utf8(&f, NULL);
    return NULL;
}

/* The bucket of `measurement` with the given _id into `out` (initialized here): control
 * bounds from the time field, meta from the metaField. BadValue (2) when the time field is
 * missing or not a date, BSONObjectTooLarge (10334) when the bucket is over 16 MB. */
static bool bucket_build(const bson_t *ts_opts, const bson_t *measurement,
                         const bson_value_t *id, bson_t *out, bq_error_t *err)
{
    bson_init(out);
    const char *time_field = ts_spec_field(ts_opts, "timeField");
    const char *meta_field = ts_spec_field(ts_opts, "metaField");
    bson_iter_t t, m;
    if (!time_field || !bson_iter_init_find(&t, measurement, time_field) ||
        !BSON_ITER_HOLDS_DATE_TIME(&t)) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "'%s' must be present and contain a valid BSON UTC datetime value",
                     time_field ? time_field : "");
        return false;
    }
    bson_append_value(out, "_id", 3, id);
    bson_t control, bound;
    BSON_APPEND_DOCUMENT_BEGIN(out, "control", &control);
    BSON_APPEND_INT32(&control, "version", 1);
    BSON_APPEND_DOCUMENT_BEGIN(&control, "min", &bound);
    bson_append_iter(&bound, time_field, -1, &t);
    bson_append_document_end(&control, &bound);
    BSON_APPEND_DOCUMENT_BEGIN(&control, "max", &bound);
    bson_append_iter(&bound, time_field, -1, &t);
    bson_append_document_end(&control, &bound);
    bson_append_document_end(out, &control);
    if (meta_field && bson_iter_init_find(&m, measurement, meta_field))
        bson_append_iter(out, "meta", 4, &m);
    BSON_APPEND_DOCUMENT(out, "data", measurement);
    if (out->len > WIRE_MAX_BSON_SIZE) {
        bq_error_set(err, BQ_ERR_BSONObjectTooLarge,
                     "object to insert too large. size in bytes: %u, max size: %d",
                     measurement->len, WIRE_MAX_BSON_SIZE);
        return false;
    }
    return true;
}

bool wire_ts_bucket_build(const bson_t *ts_opts, const bson_t *measurement, bson_t *out,
                          bson_value_t *id, bq_error_t *err)
{
    bson_value_t oid;
    oid.value_type = BSON_TYPE_OID;
    bson_oid_init(&oid.value.v_oid, NULL);
    if (!bucket_build(ts_opts, measurement, &oid, out, err))
        return false;
    *id = oid;
    return true;
}

/* ---------------------------------------------------------------- update, delete */

bool wire_ts_measurement(const uint8_t *bucket, uint32_t len, bson_t *out)
{
    bson_iter_t it;
    uint32_t dlen;
    const uint8_t *data;
    if (!bson_iter_init_from_data(&it, bucket, len) || !bson_iter_find(&it, "data") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    bson_iter_document(&it, &dlen, &data);
    return bson_init_static(out, data, dlen);
}

/* The buckets whose measurement m matches (every bucket when m is NULL). */
static int keep_measurement(void *arg, const eng_doc_t *d, bq_error_t *err)
{
    const bq_match_t *m = arg;
    bson_t measurement;
    if (!wire_ts_measurement(d->data, d->len, &measurement))
        return 0; /* not a bucket of ours: nothing a measurement filter can match */
    return m ? bq_match_eval_env(m, &measurement, NULL, err) : 1;
}

size_t wire_ts_collect(eng_coll_t *c, int64_t snap, const bq_match_t *m, eng_doc_t **out,
                       bq_error_t *err)
{
    return wire_scan_collect(c, snap, keep_measurement, (void *)m, out, err);
}

bool wire_ts_bucket_rebuild(const bson_t *ts_opts, const uint8_t *bucket, uint32_t len,
                            const bson_t *measurement, bson_t *out, bson_value_t *id,
                            bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, bucket, len) || !bson_iter_find(&it, "_id")) {
        bson_init(out);
        bq_error_set(err, BQ_ERR_InternalError, "a time-series bucket without an _id");
        return false;
    }
    const bson_value_t *bid = bson_iter_value(&it);
    if (!bucket_build(ts_opts, measurement, bid, out, err))
        return false;
    bson_value_copy(bid, id);
    return true;
}

/* The first element of a dotted path is the metaField. */
static bool ts_path_is_meta(const char *path, const char *meta_field)
{
    size_t n = strlen(meta_field);
    return !strncmp(path, meta_field, n) && (path[n] == '\0' || path[n] == '.');
}

/*
 * mongod 7.0's walk of an update's filter on a time-series collection (its
 * translateQuery): every element, values included, is visited; a field name at the top
 * level (of the filter, or of an object inside an array, as in $and: [{...}]) must be the
 * metaField or a path under it; $expr and $where are refused anywhere; a $jsonSchema may
 * only require and describe the metaField.
 */
static bool ts_query_walk(bson_iter_t *it, const char *meta, bool top, bool parent_array,
                          int depth, bq_error_t *err)
{
    const char *k = bson_iter_key(it);
    if (!strcmp(k, "$expr") || !strcmp(k, "$where")) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Cannot use %s when performing an update or delete on a time-series "
                     "collection",
                     k);
        return false;
    }
    bool ok = true;
    if (!strcmp(k, "$jsonSchema")) {
        bson_iter_t sub, f;
        if (BSON_ITER_HOLDS_DOCUMENT(it) && bson_iter_recurse(it, &sub) &&
            bson_iter_find(&sub, "required") && bson_iter_recurse(&sub, &f))
            while (ok && bson_iter_next(&f))
                ok = BSON_ITER_HOLDS_UTF8(&f) && !strcmp(bson_iter_utf8(&f, NULL), meta);
        if (ok && BSON_ITER_HOLDS_DOCUMENT(it) && bson_iter_recurse(it, &sub) &&
            bson_iter_find(&sub, "properties") && bson_iter_recurse(&sub, &f))
            while (ok && bson_iter_next(&f))
                ok = !strcmp(bson_iter_key(&f), meta);
    } else if (top && k[0] != '$') {
        ok = ts_path_is_meta(k, meta);
    }
    if (!ok) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Cannot perform an update or delete on a time-series collection when "
                     "querying on a field that is not the metaField '%s'",
                     meta);
        return false;
    }
    if (!strcmp(k, "$jsonSchema"))
        return true;
    bool is_doc = BSON_ITER_HOLDS_DOCUMENT(it), is_array = BSON_ITER_HOLDS_ARRAY(it);
    if ((!is_doc && !is_array) || depth > 100)
        return true;
    bson_iter_t child;
    if (!bson_iter_recurse(it, &child))
        return true;
    bool child_top = parent_array && is_doc;
    while (bson_iter_next(&child))
        if (!ts_query_walk(&child, meta, child_top, is_array, depth + 1, err))
            return false;
    return true;
}

static bool ts_update_field_error(const char *meta, bq_error_t *err)
{
    bq_error_set(err, BQ_ERR_InvalidOptions,
                 "Cannot perform an update on a time-series collection which updates a field "
                 "that is not the metaField '%s'",
                 meta);
    return false;
}

bool wire_ts_update_check(const bson_t *ts_opts, const bson_t *q, const bson_t *u,
                          bool u_is_pipeline, bool multi, bool upsert, bq_error_t *err)
{
    if (!multi) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Cannot perform a non-multi update on a time-series collection");
        return false;
    }
    if (upsert) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Cannot perform an upsert on a time-series collection");
        return false;
    }
    const char *meta = ts_spec_field(ts_opts, "metaField");
    if (!meta) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Cannot perform an update on a time-series collection that does not have "
                     "a metaField");
        return false;
    }
    bson_iter_t it;
    if (bson_iter_init(&it, q))
        while (bson_iter_next(&it))
            if (!ts_query_walk(&it, meta, true, false, 0, err))
                return false;
    if (u_is_pipeline) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Cannot perform an update on a time-series collection using a pipeline "
                     "update");
        return false;
    }
    /* a replacement: an empty document, or one whose first field is not an operator */
    if (!bson_iter_init(&it, u) || !bson_iter_next(&it) || bson_iter_key(&it)[0] != '$') {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Cannot perform an update on a time-series collection using a "
                     "replacement document");
        return false;
    }
    bson_iter_init(&it, u);
    while (bson_iter_next(&it)) {
        bson_iter_t f;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &f))
            continue; /* a malformed operator: the update parser reports it */
        bool rename = !strcmp(bson_iter_key(&it), "$rename");
        while (bson_iter_next(&f)) {
            if (!ts_path_is_meta(bson_iter_key(&f), meta))
                return ts_update_field_error(meta, err);
            if (rename &&
                (!BSON_ITER_HOLDS_UTF8(&f) || !ts_path_is_meta(bson_iter_utf8(&f, NULL), meta)))
                return ts_update_field_error(meta, err);
        }
    }
    return true;
}

/* ---------------------------------------------------------------- listings, refusals */

bool wire_ts_list_entry(bson_t *d, const eng_coll_info_t *c, bool name_only)
{
    if (!c->options || !bson_has_field(c->options, "viewOn") || !ts_view_is(c->options))
        return false;
    BSON_APPEND_UTF8(d, "name", c->name);
    BSON_APPEND_UTF8(d, "type", "timeseries");
    if (!name_only) {
        bson_t opts, info;
        bson_iter_t it;
        BSON_APPEND_DOCUMENT_BEGIN(d, "options", &opts);
        bson_iter_init(&it, c->options);
        while (bson_iter_next(&it))
            if (strcmp(bson_iter_key(&it), "viewOn") && strcmp(bson_iter_key(&it), "pipeline"))
                bson_append_iter(&opts, bson_iter_key(&it), -1, &it);
        bson_append_document_end(d, &opts);
        BSON_APPEND_DOCUMENT_BEGIN(d, "info", &info);
        BSON_APPEND_BOOL(&info, "readOnly", false);
        BSON_APPEND_INT64(&info, "createdSeq", c->created_seq);
        bson_append_document_end(d, &info);
    }
    return true;
}

bool wire_ts_fam_refuse(wire_cmd_ctx_t *ctx, const char *coll, bq_error_t *err)
{
    if (!wire_ts_options(ctx->server->db, ctx->db, coll, eng_db_snapshot(ctx->server->db)))
        return true;
    bq_error_set(err, BQ_ERR_CommandNotSupportedOnView,
                 "Namespace %s.%s is a view, not a collection", ctx->db, coll);
    return false;
}

bool wire_ts_refuse(wire_cmd_ctx_t *ctx, const char *coll, bq_error_t *err)
{
    if (!wire_ts_options(ctx->server->db, ctx->db, coll, eng_db_snapshot(ctx->server->db)))
        return true;
    bq_error_set(err, BQ_ERR_NotImplemented,
                 "%s on the time-series collection %s.%s is not implemented in NEDB: a "
                 "time-series collection takes inserts, updates, deletes and reads (find, "
                 "aggregate, count, distinct) only",
                 ctx->name, ctx->db, coll);
    return false;
}
