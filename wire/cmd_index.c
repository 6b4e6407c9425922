/*
 * cmd_index.c: createIndexes and dropIndexes (listIndexes lives with the other listings in
 * cmd_catalog.c).
 *
 * The handlers validate on the I/O thread and normalize every spec to the form listIndexes
 * reports ({v: 2, key, name, options as given}, the name generated from the key pattern
 * when missing, a collation filled in or dropped when simple). What depends on the current
 * state (which indexes already exist, conflicts of name or key, whether existing documents
 * fit a new unique index, the implicit creation of the collection) is decided by the
 * engine's committer (eng_index.c) in seq order, so two concurrent createIndexes cannot
 * both create one name, and a unique index never goes into the log over duplicates.
 *
 * Supported key kinds: ascending/descending numbers and "hashed" (recorded; hashed indexes
 * cannot be unique). "text", "2d", "2dsphere" and "geoHaystack" answer NotImplemented.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_index.h"
#include "cmd_view.h"
#include "wire_cmd.h"

/* Options an index spec may carry (MongoDB 7.0's list, less what we refuse elsewhere). */
static bool option_known(const char *k)
{
    static const char *const known[] = {
        "key", "name", "v", "ns", "unique", "sparse", "partialFilterExpression",
        "expireAfterSeconds", "collation", "hidden", "background", "storageEngine",
        "weights", "default_language", "language_override", "textIndexVersion",
        "2dsphereIndexVersion", "bits", "min", "max", "bucketSize", "wildcardProjection",
        "prepareUnique", "dropDups"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(k, known[i]) == 0)
            return true;
    return false;
}

/* Checks a key pattern and writes its generated name ("a_1_b_-1"). */
static bool key_check(const bson_t *key, char *name, size_t size, bool *hashed,
                      bq_error_t *err)
{
    bson_iter_t it;
    size_t used = 0;
    int nhashed = 0;
    name[0] = '\0';
    *hashed = false;
    if (bson_empty(key)) {
        bq_error_set(err, BQ_ERR_CannotCreateIndex, "Index keys cannot be empty.");
        return false;
    }
    bson_iter_init(&it, key);
    while (bson_iter_next(&it)) {
        const char *f = bson_iter_key(&it);
        char part[64];
        if (strcmp(f, "$**") == 0 || (strlen(f) > 4 && strcmp(f + strlen(f) - 4, ".$**") == 0)) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "wildcard indexes are not implemented yet in NEDB");
            return false;
        }
        if (f[0] == '\0' || f[0] == '$' || strstr(f, "..") || f[strlen(f) - 1] == '.' ||
            f[0] == '.') {
            bq_error_set(err, BQ_ERR_CannotCreateIndex,
                         "Index key contains an illegal field name: '%s'", f);
            return false;
        }
        if (BSON_ITER_HOLDS_NUMBER(&it)) {
            double d = bson_iter_as_double(&it);
            if (d == 0 || isnan(d)) {
                bq_error_set(err, BQ_ERR_CannotCreateIndex,
                             "Values in the index key pattern can't be 0.");
                return false;
            }
            if (d == floor(d) && fabs(d) < 1e15)
                snprintf(part, sizeof part, "%lld", (long long)d);
            else
                snprintf(part, sizeof part, "%g", d);
        } else if (BSON_ITER_HOLDS_UTF8(&it)) {
            const char *s = bson_iter_utf8(&it, NULL);
            if (strcmp(s, "text") == 0 || strcmp(s, "2d") == 0 || strcmp(s, "2dsphere") == 0 ||
                strcmp(s, "geoHaystack") == 0) {
                bq_error_set(err, BQ_ERR_NotImplemented,
                             "%s indexes are not implemented yet in NEDB", s);
                return false;
            }
            if (strcmp(s, "hashed") != 0) {
                bq_error_set(err, BQ_ERR_CannotCreateIndex, "Unknown index plugin '%s'", s);
                return false;
            }
            if (++nhashed > 1) {
                bq_error_set(err, BQ_ERR_CannotCreateIndex,
                             "A maximum of one index field is allowed to be hashed");
                return false;
            }
            *hashed = true;
            snprintf(part, sizeof part, "%s", s);
        } else {
            bq_error_set(err, BQ_ERR_CannotCreateIndex,
                         "Values in v:2 index key pattern cannot be of type %s. Only numbers "
                         "> 0, numbers < 0, and strings are allowed.",
                         bq_type_name(bson_iter_type(&it)));
            return false;
        }
        if (used < size)
            used += (size_t)snprintf(name + used, size - used, "%s%s_%s", used ? "_" : "", f,
                                     part);
    }
    return true;
}

/* Validates one spec and appends its normalized form to `out` under `index`. */
static bool spec_normalize(const bson_t *spec, bson_t *out, const char *index, bq_error_t *err)
{
    bson_iter_t it;
    bson_t key;
    bool have_key = false, unique = false, sparse = false, partial = false, hashed = false;
    const char *name = NULL;
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!option_known(k)) {
            char *j = bson_as_relaxed_extended_json(spec, NULL);
            bq_error_set(err, BQ_ERR_InvalidIndexSpecificationOption,
                         "The field '%s' is not valid for an index specification. "
                         "Specification: %s",
                         k, j ? j : "?");
            bson_free(j);
            return false;
        }
        if (strcmp(k, "key") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "The field 'key' must be an object, but got %s",
                             bq_type_name(bson_iter_type(&it)));
                return false;
            }
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&key, data, len);
            have_key = true;
        } else if (strcmp(k, "name") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "The field 'name' must be a string, but got %s",
                             bq_type_name(bson_iter_type(&it)));
                return false;
            }
            name = bson_iter_utf8(&it, NULL);
            if (!name[0]) {
                bq_error_set(err, BQ_ERR_CannotCreateIndex, "The index name cannot be empty");
                return false;
            }
        } else if (strcmp(k, "unique") == 0 || strcmp(k, "sparse") == 0 ||
                   strcmp(k, "hidden") == 0 || strcmp(k, "background") == 0 ||
                   strcmp(k, "prepareUnique") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&it) && !BSON_ITER_HOLDS_NUMBER(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "The field '%s' must be a boolean, but got %s", k,
                             bq_type_name(bson_iter_type(&it)));
                return false;
            }
            if (strcmp(k, "unique") == 0)
                unique = bson_iter_as_bool(&it);
            if (strcmp(k, "sparse") == 0)
                sparse = bson_iter_as_bool(&it);
        } else if (strcmp(k, "partialFilterExpression") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "The field 'partialFilterExpression' must be an object, but got "
                             "%s",
                             bq_type_name(bson_iter_type(&it)));
                return false;
            }
            uint32_t len;
            const uint8_t *data;
            bson_t f;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&f, data, len);
            bq_match_t *m = bq_match_compile(&f, err);
            if (!m)
                return false;
            bq_match_destroy(m);
            partial = true;
        } else if (strcmp(k, "expireAfterSeconds") == 0) {
            double d = BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_double(&it) : -1;
            if (!BSON_ITER_HOLDS_NUMBER(&it) || isnan(d) || d < 0 || d > 2147483647.0) {
                bq_error_set(err, BQ_ERR_CannotCreateIndex,
                             "TTL index 'expireAfterSeconds' option must be within an "
                             "acceptable range, try a lower number");
                return false;
            }
        } else if (strcmp(k, "collation") == 0 && !BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "The field 'collation' must be an object, but got %s",
                         bq_type_name(bson_iter_type(&it)));
            return false;
        }
    }
    if (!have_key) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "The 'key' field is a required property of an index specification");
        return false;
    }
    char gen[1024];
    if (!key_check(&key, gen, sizeof gen, &hashed, err))
        return false;
    if (sparse && partial) {
        bq_error_set(err, BQ_ERR_CannotCreateIndex,
                     "cannot mix partialFilterExpression and sparse");
        return false;
    }
    if (unique && hashed) {
        bq_error_set(err, BQ_ERR_CannotCreateIndex,
                     "Currently hashed indexes cannot guarantee uniqueness. Use a regular "
                     "index.");
        return false;
    }
    bq_collation_t *coll = NULL;
    if (!wire_collation(spec, &coll, err))
        return false;

    bson_t d;
    BSON_APPEND_DOCUMENT_BEGIN(out, index, &d);
    BSON_APPEND_INT32(&d, "v", 2);
    BSON_APPEND_DOCUMENT(&d, "key", &key);
    BSON_APPEND_UTF8(&d, "name", name ? name : gen);
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "key") == 0 || strcmp(k, "name") == 0 || strcmp(k, "v") == 0 ||
            strcmp(k, "ns") == 0)
            continue;
        if (strcmp(k, "collation") == 0) {
            if (coll)
                BSON_APPEND_DOCUMENT(&d, "collation", bq_collation_spec(coll));
            continue;
        }
        bson_append_iter(&d, k, -1, &it);
    }
    bson_append_document_end(out, &d);
    bq_collation_destroy(coll);
    return true;
}

/* One index op; its completion ends the command. */
typedef struct index_state {
    eng_intent_t intent;
    eng_wop_t op;
} index_state_t;

static void index_state_free(void *p)
{
    index_state_t *st = p;
    eng_wop_cleanup(&st->op);
    bson_free(st);
}

static index_state_t *index_begin(wire_cmd_ctx_t *ctx, eng_wop_kind_t kind, const char *coll)
{
    index_state_t *st = BSON_ALIGNED_ALLOC0(index_state_t); /* embeds bson_t */
    eng_wop_init(&st->op, kind, ctx->db, coll);
    st->intent.ops = &st->op;
    st->intent.nops = 1;
    st->intent.ordered = true;
    st->intent.durable = true;
    ctx->state = st;
    ctx->state_free = index_state_free;
    return st;
}

static bool index_failed(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    index_state_t *st = ctx->state;
    if (st->intent.err.code) {
        *err = st->intent.err;
        return true;
    }
    if (st->op.err.code) {
        *err = st->op.err;
        if (st->op.dup_key) { /* keyPattern and keyValue beside code and errmsg */
            if (!ctx->req->reply_extra)
                ctx->req->reply_extra = bson_new();
            bson_concat(ctx->req->reply_extra, st->op.dup_key);
        }
        return true;
    }
    return false;
}

static bool create_indexes_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    index_state_t *st = ctx->state;
    if (index_failed(ctx, err))
        return false;
    bson_t *r = ctx->reply;
    BSON_APPEND_INT32(r, "numIndexesBefore", st->op.nindexes_before);
    BSON_APPEND_INT32(r, "numIndexesAfter", st->op.nindexes_after);
    if (st->op.nindexes_after == st->op.nindexes_before && !st->op.created_coll)
        BSON_APPEND_UTF8(r, "note", "all indexes already exist");
    else
        BSON_APPEND_BOOL(r, "createdCollectionAutomatically", st->op.created_coll);
    return true;
}

bool cmd_create_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    bson_iter_t arr;
    bool present;
    if (!wire_arg_coll(ctx, true, &coll, err) ||
        !wire_arg_array(ctx, "indexes", &arr, &present, err) ||
        !wire_view_refuse(ctx, coll, NULL, err))
        return false;
    if (!present) {
        bq_error_set(err, 40414,
                     "BSON field 'createIndexes.indexes' is missing but a required field");
        return false;
    }
    bson_iter_t ck;
    if (bson_iter_init_find(&ck, ctx->cmd, "commitQuorum") && !BSON_ITER_HOLDS_UTF8(&ck) &&
        !BSON_ITER_HOLDS_NUMBER(&ck)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'createIndexes.commitQuorum' must be a string or a number");
        return false;
    }
    index_state_t *st = index_begin(ctx, ENG_WOP_CREATE_INDEXES, coll);
    bson_t specs;
    uint32_t n = 0;
    BSON_APPEND_ARRAY_BEGIN(&st->op.doc, "indexes", &specs);
    bool ok = true;
    while (ok && bson_iter_next(&arr)) {
        char key[16];
        snprintf(key, sizeof key, "%u", n++);
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "The field 'indexes.%s' must be an object, but got %s", key,
                         bq_type_name(bson_iter_type(&arr)));
            ok = false;
            break;
        }
        uint32_t len;
        const uint8_t *data;
        bson_t spec;
        bson_iter_document(&arr, &len, &data);
        bson_init_static(&spec, data, len);
        ok = spec_normalize(&spec, &specs, key, err);
    }
    bson_append_array_end(&st->op.doc, &specs);
    if (!ok)
        return false;
    if (n == 0) {
        bq_error_set(err, BQ_ERR_BadValue, "Must specify at least one index.");
        return false;
    }
    wire_cmd_submit(ctx, &st->intent, create_indexes_done);
    return true;
}

static bool drop_indexes_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    index_state_t *st = ctx->state;
    if (index_failed(ctx, err))
        return false;
    BSON_APPEND_INT32(ctx->reply, "nIndexesWas", st->op.nindexes_before);
    bson_iter_t it;
    if (bson_iter_init_find(&it, &st->op.doc, "index") && BSON_ITER_HOLDS_UTF8(&it) &&
        strcmp(bson_iter_utf8(&it, NULL), "*") == 0)
        BSON_APPEND_UTF8(ctx->reply, "msg", "non-_id indexes dropped for collection");
    return true;
}

bool cmd_drop_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    if (!wire_arg_coll(ctx, true, &coll, err) || !wire_view_refuse(ctx, coll, NULL, err))
        return false;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, ctx->cmd, "index")) {
        bq_error_set(err, 40414, "BSON field 'dropIndexes.index' is missing but a required field");
        return false;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it) && !BSON_ITER_HOLDS_DOCUMENT(&it) &&
        !BSON_ITER_HOLDS_ARRAY(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'dropIndexes.index' is the wrong type '%s', expected types "
                     "'[string, object, array]'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    index_state_t *st = index_begin(ctx, ENG_WOP_DROP_INDEXES, coll);
    bson_append_iter(&st->op.doc, "index", 5, &it);
    wire_cmd_submit(ctx, &st->intent, drop_indexes_done);
    return true;
}

/* ---- collMod {index: {...}} ---- */

static bool coll_mod_index_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    index_state_t *st = ctx->state;
    if (index_failed(ctx, err)) {
        if (st->op.err.code == BQ_ERR_CannotConvertIndexToUnique && st->op.info) {
            if (!ctx->req->reply_extra)
                ctx->req->reply_extra = bson_new();
            bson_concat(ctx->req->reply_extra, st->op.info); /* violations */
        }
        return false;
    }
    if (st->op.info)
        bson_concat(ctx->reply, st->op.info);
    return true;
}

bool cmd_index_coll_mod(wire_cmd_ctx_t *ctx, const char *coll, bq_error_t *err)
{
    bson_iter_t it, f;
    if (!wire_view_refuse(ctx, coll, NULL, err))
        return false;
    if (!bson_iter_init_find(&it, ctx->cmd, "index") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'collMod.index' is the wrong type, expected type 'object'");
        return false;
    }
    bson_iter_recurse(&it, &f);
    bool by_name = false, by_key = false, any = false;
    while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        if (strcmp(k, "name") == 0 && BSON_ITER_HOLDS_UTF8(&f)) {
            by_name = true;
        } else if (strcmp(k, "keyPattern") == 0 && BSON_ITER_HOLDS_DOCUMENT(&f)) {
            by_key = true;
        } else if (strcmp(k, "hidden") == 0 || strcmp(k, "prepareUnique") == 0 ||
                   strcmp(k, "unique") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&f)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field 'collMod.index.%s' is the wrong type '%s', expected "
                             "type 'bool'",
                             k, bq_type_name(bson_iter_type(&f)));
                return false;
            }
            if (strcmp(k, "unique") == 0 && !bson_iter_bool(&f)) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "collMod does not support converting an index to 'unique: false'");
                return false;
            }
            any = true;
        } else if (strcmp(k, "expireAfterSeconds") == 0) {
            if (!BSON_ITER_HOLDS_NUMBER(&f) || bson_iter_as_double(&f) < 0) {
                bq_error_set(err, BQ_ERR_InvalidOptions,
                             "TTL index 'expireAfterSeconds' option must be a non-negative "
                             "number");
                return false;
            }
            any = true;
        } else {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "BSON field 'collMod.index.%s' is an unknown field or has the wrong "
                         "type",
                         k);
            return false;
        }
    }
    if (by_name == by_key) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "must specify either index name or key pattern for collMod");
        return false;
    }
    if (!any) {
        bq_error_set(err, BQ_ERR_InvalidOptions, "no collMod index options specified");
        return false;
    }
    /* other collection options in the same command are not combined with it (yet) */
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "index") != 0 && k[0] != '$' && strcmp(k, "lsid") != 0 &&
            strcmp(k, "writeConcern") != 0 && strcmp(k, "comment") != 0 &&
            strcmp(k, "txnNumber") != 0 && strcmp(k, "maxTimeMS") != 0 &&
            strcmp(k, "apiVersion") != 0 && strcmp(k, "apiStrict") != 0 &&
            strcmp(k, "apiDeprecationErrors") != 0) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "collMod of an index together with '%s' is not implemented yet in "
                         "NEDB; send them as two commands",
                         k);
            return false;
        }
    }
    index_state_t *st = index_begin(ctx, ENG_WOP_INDEX_MOD, coll);
    bson_iter_init_find(&it, ctx->cmd, "index");
    bson_append_iter(&st->op.doc, "index", 5, &it);
    wire_cmd_submit(ctx, &st->intent, coll_mod_index_done);
    return true;
}

/* ---- figures for drop, collStats and dbStats (cmd_catalog.c) ---- */

size_t wire_index_specs(eng_coll_t *c, int64_t snap, bson_t ***out)
{
    const bson_t **secondary;
    size_t nsec = eng_coll_indexes(c, snap, &secondary);
    bson_t **specs = calloc(nsec + 1, sizeof *specs);
    if (!specs)
        abort();
    size_t n = 0;
    eng_coll_info_t info;
    eng_coll_info(c, &info);
    bson_iter_t it, f;
    bson_t key;
    if (bson_iter_init_find(&it, info.options, "clusteredIndex") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        /* a clustered collection: its clustered index in place of _id_, as mongod lists it */
        bson_t *spec = specs[n++] = bson_new();
        BSON_APPEND_INT32(spec, "v", 2);
        BSON_APPEND_DOCUMENT_BEGIN(spec, "key", &key);
        BSON_APPEND_INT32(&key, "_id", 1);
        bson_append_document_end(spec, &key);
        bson_iter_recurse(&it, &f);
        const char *name = bson_iter_find(&f, "name") && BSON_ITER_HOLDS_UTF8(&f)
                               ? bson_iter_utf8(&f, NULL)
                               : "_id_";
        BSON_APPEND_UTF8(spec, "name", name);
        BSON_APPEND_BOOL(spec, "unique", true);
        BSON_APPEND_BOOL(spec, "clustered", true);
    } else if (!bson_iter_init_find(&it, info.options, "clusteredIndex")) {
        /* (the boolean form, a time-series buckets collection's, has no _id index) */
        bson_t *spec = specs[n++] = bson_new();
        BSON_APPEND_INT32(spec, "v", 2);
        BSON_APPEND_DOCUMENT_BEGIN(spec, "key", &key);
        BSON_APPEND_INT32(&key, "_id", 1);
        bson_append_document_end(spec, &key);
        BSON_APPEND_UTF8(spec, "name", "_id_");
    }
    for (size_t i = 0; i < nsec; i++)
        specs[n++] = bson_copy(secondary[i]);
    free(secondary);
    *out = specs;
    return n;
}

int32_t wire_index_count(eng_coll_t *c, int64_t snap)
{
    if (!c)
        return 0;
    bson_t **specs;
    size_t n = wire_index_specs(c, snap, &specs);
    for (size_t i = 0; i < n; i++)
        bson_destroy(specs[i]);
    free(specs);
    return (int32_t)n;
}

void wire_index_sizes(bson_t *sizes, eng_coll_t *c, int64_t snap)
{
    bson_t **specs;
    size_t n = wire_index_specs(c, snap, &specs);
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, specs[i], "name") && BSON_ITER_HOLDS_UTF8(&it))
            BSON_APPEND_INT64(sizes, bson_iter_utf8(&it, NULL), 0);
        bson_destroy(specs[i]);
    }
    free(specs);
}
