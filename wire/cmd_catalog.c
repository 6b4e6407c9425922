/*
 * cmd_catalog.c: databases and collections: create, drop, dropDatabase, listDatabases,
 * listCollections, listIndexes, renameCollection, collStats, dbStats, collMod, and
 * nedbVerify. Every catalog change is an op in the log ("c"), applied by the committer like
 * any write; the listings read the catalog at the command's snapshot. Collection options
 * are recorded as given (validator, validationLevel and validationAction checked by
 * wire_validate_options, enforced by wire_validate.c) and listCollections reports them so.
 * A view is a catalog entry whose options are {viewOn, pipeline} (cmd_view.h): create and
 * collMod check its definition there, listCollections reports it with type "view".
 * A clustered collection records its normalized clusteredIndex option (create_clustered);
 * a time-series collection X is a view over system.buckets.X created, dropped and collMod'ed
 * with it in one intent of two ops (cmd_timeseries.h).
 */
#include <stdlib.h>
#include <string.h>

#include "agg_pipeline.h"
#include "cmd_index.h"
#include "cmd_timeseries.h"
#include "cmd_view.h"
#include "wire_cmd.h"
#include "wire_cursor.h"
#include "wire_validate.h"

/* A catalog write of one op, or two (a time-series collection and its buckets); its
 * completion ends the command. Both ops are always initialized; intent.nops says how many
 * are submitted. */
typedef struct catalog_state {
    eng_intent_t intent;
    eng_wop_t ops[2];
} catalog_state_t;

static void catalog_state_free(void *p)
{
    catalog_state_t *st = p;
    eng_wop_cleanup(&st->ops[0]);
    eng_wop_cleanup(&st->ops[1]);
    bson_free(st);
}

static catalog_state_t *catalog_begin(wire_cmd_ctx_t *ctx, eng_wop_kind_t kind,
                                      const char *coll)
{
    catalog_state_t *st = BSON_ALIGNED_ALLOC0(catalog_state_t); /* embeds bson_t */
    eng_wop_init(&st->ops[0], kind, ctx->db, coll);
    eng_wop_init(&st->ops[1], kind, ctx->db, coll);
    st->intent.ops = &st->ops[0];
    st->intent.nops = 1;
    st->intent.ordered = true;
    st->intent.durable = true;
    ctx->state = st;
    ctx->state_free = catalog_state_free;
    return st;
}

static bool catalog_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    catalog_state_t *st = ctx->state;
    if (st->intent.err.code) {
        *err = st->intent.err;
        return false;
    }
    for (size_t i = 0; i < st->intent.nops; i++) {
        if (st->ops[i].err.code) {
            *err = st->ops[i].err;
            return false;
        }
    }
    return true;
}

/* ---- create / drop / dropDatabase / collMod / renameCollection ---- */

/* Copies the command's arguments other than its name and the generic ones into `out`:
 * the options of create, the changes of collMod. */
static void copy_options(const wire_cmd_ctx_t *ctx, bson_t *out)
{
    bson_iter_t it;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    while (bson_iter_next(&it))
        if (!wire_generic_arg(bson_iter_key(&it)))
            bson_append_iter(out, bson_iter_key(&it), -1, &it);
}

/* create of a view: the definition checked (cmd_view.c), recorded as the options of a
 * catalog entry, with pipeline [] when none was given. */
static bool create_view(wire_cmd_ctx_t *ctx, catalog_state_t *st, const char *coll,
                        bq_error_t *err)
{
    if (!wire_view_create_check(ctx, coll, &st->ops[0].doc, err))
        return false;
    if (!bson_has_field(&st->ops[0].doc, "pipeline")) {
        bson_t empty = BSON_INITIALIZER;
        BSON_APPEND_ARRAY(&st->ops[0].doc, "pipeline", &empty);
        bson_destroy(&empty);
    }
    wire_cmd_submit(ctx, &st->intent, catalog_done);
    return true;
}

/* create of a time-series collection X (cmd_timeseries.h): one intent creating
 * system.buckets.X and then the view X over it. Creating X again with the same options
 * succeeds without an op, as in mongod; anything else already there is NamespaceExists. */
static bool create_timeseries(wire_cmd_ctx_t *ctx, catalog_state_t *st, const char *coll,
                              bq_error_t *err)
{
    bson_t view_opts, buckets_opts;
    char buckets[ENG_NS_MAX + 1];
    bool ok = wire_ts_create_build(ctx, coll, &st->ops[0].doc, &view_opts, &buckets_opts,
                                   buckets, err);
    if (ok) {
        int64_t snap = eng_db_snapshot(ctx->server->db);
        eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, coll, snap);
        if (c) {
            eng_coll_info_t info;
            eng_coll_info(c, &info);
            bool same = bson_equal(info.options, &view_opts);
            if (!same)
                bq_error_set(err, BQ_ERR_NamespaceExists, "Collection %s.%s already exists.",
                             ctx->db, coll);
            bson_destroy(&view_opts);
            bson_destroy(&buckets_opts);
            return same; /* identical: nothing to do */
        }
        if (eng_coll_get(ctx->server->db, ctx->db, buckets, snap)) {
            bq_error_set(err, BQ_ERR_NamespaceExists, "Collection %s.%s already exists.",
                         ctx->db, buckets);
            ok = false;
        }
    }
    if (ok) {
        snprintf(st->ops[0].coll, sizeof st->ops[0].coll, "%s", buckets);
        bson_reinit(&st->ops[0].doc);
        bson_concat(&st->ops[0].doc, &buckets_opts);
        bson_reinit(&st->ops[1].doc);
        bson_concat(&st->ops[1].doc, &view_opts);
        st->intent.nops = 2;
        wire_cmd_submit(ctx, &st->intent, catalog_done);
    }
    bson_destroy(&view_opts);
    bson_destroy(&buckets_opts);
    return ok;
}

/*
 * The clusteredIndex option of a create (MongoDB 7.0): {key: {_id: 1}, unique: true,
 * name?, v?} recorded as {key, unique, name (default "_id_"), v: 2}; the boolean form only
 * for a time-series buckets collection (the legacy form mongod keeps for them); false
 * means an ordinary collection. The store is keyed by _id already, so a clustered
 * collection behaves as any other; listCollections and listIndexes show the option.
 * Rewrites opts in place.
 */
static bool create_clustered(const char *coll, bson_t *opts, bq_error_t *err)
{
    bson_iter_t it, ci;
    bson_iter_init_find(&it, opts, "clusteredIndex");
    bool buckets = strncmp(coll, WIRE_TS_BUCKETS_PREFIX, strlen(WIRE_TS_BUCKETS_PREFIX)) == 0;
    if (!BSON_ITER_HOLDS_BOOL(&it) && !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bq_error_set(err, 5979702, "'clusteredIndex' has to be a boolean or object.");
        return false;
    }
    if (BSON_ITER_HOLDS_BOOL(&it) ? bson_iter_bool(&it) && !buckets : buckets) {
        bq_error_set(err, 5979703,
                     "The 'clusteredIndex' option must be a boolean for a time-series buckets "
                     "collection and an object {key: {_id: 1}, unique: true} for any other");
        return false;
    }
    if (BSON_ITER_HOLDS_BOOL(&it) && !bson_iter_bool(&it) &&
        bson_has_field(opts, "expireAfterSeconds")) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "'expireAfterSeconds' requires clustering to be enabled");
        return false;
    }
    /* the other options beside a clustered index */
    bool clustered = !BSON_ITER_HOLDS_BOOL(&it) || bson_iter_bool(&it);
    bson_iter_t o;
    if (clustered && (bson_has_field(opts, "viewOn") || bson_has_field(opts, "pipeline"))) {
        bq_error_set(err, 6026500, "The 'clusteredIndex' option is not supported with views");
        return false;
    }
    if (clustered && bson_iter_init_find(&o, opts, "autoIndexId") && !bson_iter_as_bool(&o)) {
        bq_error_set(err, 6026501,
                     "The 'clusteredIndex' option does not support {autoIndexId: false}");
        return false;
    }
    if (clustered && bson_has_field(opts, "size")) {
        bq_error_set(err, 6049200, "Cannot specify 'size' for a clustered capped collection");
        return false;
    }
    if (clustered && bson_has_field(opts, "max")) {
        bq_error_set(err, 6049204, "Cannot specify 'max' for a clustered capped collection");
        return false;
    }
    if (clustered && bson_iter_init_find(&o, opts, "capped") && bson_iter_as_bool(&o) &&
        !bson_has_field(opts, "expireAfterSeconds")) {
        bq_error_set(err, 6049201,
                     "A capped clustered collection requires the 'expireAfterSeconds' option");
        return false;
    }
    int64_t expire = -1;
    if (bson_iter_init_find(&o, opts, "expireAfterSeconds") &&
        !wire_expire_after_check(&o, &expire, err))
        return false;

    bson_t spec = BSON_INITIALIZER;
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bool has_key = false, has_unique = false;
        const char *name = "_id_";
        bson_iter_recurse(&it, &ci);
        while (bson_iter_next(&ci)) {
            const char *k = bson_iter_key(&ci);
            bool ok = true;
            if (!strcmp(k, "key")) {
                ok = BSON_ITER_HOLDS_DOCUMENT(&ci);
                if (ok) {
                    bson_iter_t kp;
                    has_key = true;
                    bson_iter_recurse(&ci, &kp);
                    if (!bson_iter_next(&kp) || strcmp(bson_iter_key(&kp), "_id") ||
                        !BSON_ITER_HOLDS_NUMBER(&kp) || bson_iter_as_int64(&kp) != 1 ||
                        bson_iter_next(&kp)) {
                        bson_destroy(&spec);
                        bq_error_set(err, BQ_ERR_InvalidIndexSpecificationOption,
                                     "The clusteredIndex option is only supported for key: "
                                     "{_id: 1}");
                        return false;
                    }
                }
            } else if (!strcmp(k, "unique")) {
                ok = BSON_ITER_HOLDS_BOOL(&ci);
                has_unique = ok;
                if (ok && !bson_iter_bool(&ci)) {
                    bson_destroy(&spec);
                    bq_error_set(err, 5979700,
                                 "The clusteredIndex option requires unique: true");
                    return false;
                }
            } else if (!strcmp(k, "name")) {
                ok = BSON_ITER_HOLDS_UTF8(&ci);
                if (ok)
                    name = bson_iter_utf8(&ci, NULL);
            } else if (!strcmp(k, "v")) {
                ok = BSON_ITER_HOLDS_NUMBER(&ci);
                if (ok && bson_iter_as_int64(&ci) != 2) {
                    bson_destroy(&spec);
                    bq_error_set(err, 5979704, "Invalid clustered index version: %lld",
                                 (long long)bson_iter_as_int64(&ci));
                    return false;
                }
            } else {
                bson_destroy(&spec);
                bq_error_set(err, BQ_ERR_IDLUnknownField,
                             "BSON field 'create.clusteredIndex.%s' is an unknown field.", k);
                return false;
            }
            if (!ok) {
                bson_destroy(&spec);
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field 'create.clusteredIndex.%s' is the wrong type '%s'", k,
                             bq_type_name(bson_iter_type(&ci)));
                return false;
            }
        }
        if (!has_key || !has_unique) {
            bson_destroy(&spec);
            bq_error_set(err, BQ_ERR_IDLFailedToParse,
                         "BSON field 'create.clusteredIndex.%s' is missing but a required field",
                         has_key ? "unique" : "key");
            return false;
        }
        bson_t key;
        BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
        BSON_APPEND_INT32(&key, "_id", 1);
        bson_append_document_end(&spec, &key);
        BSON_APPEND_BOOL(&spec, "unique", true);
        BSON_APPEND_UTF8(&spec, "name", name);
        BSON_APPEND_INT32(&spec, "v", 2);
    }
    /* the options again, clusteredIndex and expireAfterSeconds normalized */
    bson_t out = BSON_INITIALIZER;
    bson_iter_init(&o, opts);
    while (bson_iter_next(&o)) {
        const char *k = bson_iter_key(&o);
        if (!strcmp(k, "clusteredIndex")) {
            if (BSON_ITER_HOLDS_DOCUMENT(&o))
                BSON_APPEND_DOCUMENT(&out, k, &spec);
            else if (bson_iter_bool(&o))
                BSON_APPEND_BOOL(&out, k, true);
        } else if (!strcmp(k, "expireAfterSeconds")) {
            BSON_APPEND_INT64(&out, k, expire);
        } else {
            bson_append_iter(&out, k, -1, &o);
        }
    }
    bson_reinit(opts);
    bson_concat(opts, &out);
    bson_destroy(&out);
    bson_destroy(&spec);
    return true;
}

/* Whether create's options ask for a clustered collection. */
static bool options_clustered(const bson_t *opts)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, opts, "clusteredIndex") &&
           (BSON_ITER_HOLDS_DOCUMENT(&it) || (BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it)));
}

bool cmd_create(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    if (!wire_arg_coll(ctx, true, &coll, err))
        return false;
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_CREATE, coll);
    bson_t *opts = &st->ops[0].doc;
    copy_options(ctx, opts);
    bson_iter_t it;
    if (bson_has_field(opts, "timeseries"))
        return create_timeseries(ctx, st, coll, err);
    if (bson_has_field(opts, "clusteredIndex") && !create_clustered(coll, opts, err))
        return false;
    if (bson_has_field(opts, "viewOn") || bson_has_field(opts, "pipeline"))
        return create_view(ctx, st, coll, err);
    bson_iter_init(&it, opts);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "capped") == 0 && !BSON_ITER_HOLDS_BOOL(&it) &&
            !BSON_ITER_HOLDS_NUMBER(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field 'create.capped' is the wrong type '%s', expected type "
                         "'bool'",
                         bq_type_name(bson_iter_type(&it)));
            return false;
        }
        if (strcmp(k, "encryptedFields") == 0) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "%s collections are not implemented yet in NEDB", k);
            return false;
        }
    }
    bool clustered = options_clustered(opts);
    if (!clustered && bson_has_field(opts, "expireAfterSeconds")) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "'expireAfterSeconds' is only supported on time-series collections or "
                     "when the 'clusteredIndex' option is specified");
        return false;
    }
    if (!clustered && bson_iter_init_find(&it, opts, "capped") && bson_iter_as_bool(&it) &&
        !bson_has_field(opts, "size")) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "the 'size' field is required when 'capped' is true");
        return false;
    }
    if (!wire_validate_options("create", ctx->db, coll, opts, err))
        return false;
    wire_cmd_submit(ctx, &st->intent, catalog_done);
    return true;
}

static bool drop_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    catalog_state_t *st = ctx->state;
    if (st->intent.err.code) {
        *err = st->intent.err;
        return false;
    }
    if (st->ops[0].err.code == BQ_ERR_NamespaceNotFound)
        return true; /* dropping what is not there is not an error since MongoDB 7.0 */
    if (st->ops[0].err.code) {
        /* (a time-series collection's buckets already gone is no error either) */
        *err = st->ops[0].err;
        return false;
    }
    char ns[ENG_NS_MAX + 80];
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, st->ops[0].coll);
    /* the indexes of the incarnation the drop ended (cmd_index.c) */
    int64_t before = st->ops[0].seq - 1;
    BSON_APPEND_INT32(ctx->reply, "nIndexesWas",
                      wire_index_count(eng_coll_get(ctx->server->db, ctx->db, st->ops[0].coll,
                                                    before),
                                       before));
    BSON_APPEND_UTF8(ctx->reply, "ns", ns);
    return true;
}

bool cmd_drop(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    if (!wire_arg_coll(ctx, false, &coll, err))
        return false;
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_DROP, coll);
    if (wire_ts_options(ctx->server->db, ctx->db, coll, eng_db_snapshot(ctx->server->db))) {
        /* a time-series collection: its buckets go with it */
        snprintf(st->ops[1].coll, sizeof st->ops[1].coll, WIRE_TS_BUCKETS_PREFIX "%s", coll);
        st->intent.nops = 2;
        st->intent.ordered = false;
    }
    wire_cmd_submit(ctx, &st->intent, drop_done);
    return true;
}

static bool drop_database_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    if (!catalog_done(ctx, err))
        return false;
    BSON_APPEND_UTF8(ctx->reply, "dropped", ctx->db);
    return true;
}

bool cmd_drop_database(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    eng_coll_info_t *colls;
    size_t n = eng_catalog_list(ctx->server->db, ctx->db, eng_db_snapshot(ctx->server->db),
                                &colls);
    free(colls);
    if (n == 0)
        return true; /* nothing to drop: no op in the log */
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_DROP_DATABASE, "$cmd");
    wire_cmd_submit(ctx, &st->intent, drop_database_done);
    return true;
}

/* collMod of a time-series collection: expireAfterSeconds (a number), recorded on the
 * collection and its buckets in one intent; changing the bucketing is not implemented. */
static bool coll_mod_timeseries(wire_cmd_ctx_t *ctx, catalog_state_t *st, const char *coll,
                                bq_error_t *err)
{
    bson_iter_t it;
    int64_t expire = -1;
    bson_iter_init(&it, &st->ops[0].doc);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "expireAfterSeconds") && BSON_ITER_HOLDS_UTF8(&it)) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "collMod expireAfterSeconds: \"%s\" on a time-series collection is "
                         "not implemented yet in NEDB",
                         bson_iter_utf8(&it, NULL));
            return false;
        }
        if (!strcmp(k, "expireAfterSeconds")) {
            if (!wire_expire_after_check(&it, &expire, err))
                return false;
        } else if (!strcmp(k, "timeseries")) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "collMod of a time-series collection's bucketing is not implemented "
                         "yet in NEDB");
            return false;
        } else {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "option not supported on a time-series collection: %s", k);
            return false;
        }
    }
    if (expire < 0)
        return true; /* nothing to change */
    for (int i = 0; i < 2; i++) {
        bson_reinit(&st->ops[i].doc);
        BSON_APPEND_INT64(&st->ops[i].doc, "expireAfterSeconds", expire);
    }
    snprintf(st->ops[1].coll, sizeof st->ops[1].coll, WIRE_TS_BUCKETS_PREFIX "%s", coll);
    st->intent.nops = 2;
    wire_cmd_submit(ctx, &st->intent, catalog_done);
    return true;
}

bool cmd_coll_mod(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    if (!wire_arg_coll(ctx, true, &coll, err))
        return false;
    if (bson_has_field(ctx->cmd, "index"))
        return cmd_index_coll_mod(ctx, coll, err); /* cmd_index.c */
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_COLLMOD, coll);
    copy_options(ctx, &st->ops[0].doc);
    if (wire_ts_options(ctx->server->db, ctx->db, coll, eng_db_snapshot(ctx->server->db)))
        return coll_mod_timeseries(ctx, st, coll, err);
    if (!wire_view_coll_mod_check(ctx, coll, &st->ops[0].doc, err) ||
        !wire_validate_options("collMod", ctx->db, coll, &st->ops[0].doc, err))
        return false;
    wire_cmd_submit(ctx, &st->intent, catalog_done);
    return true;
}

/* Splits "db.coll" for renameCollection. */
static bool ns_arg(const bson_t *cmd, const char *key, char *db, char *coll, bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, cmd, key) || !BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "'%s' must be a namespace string", key);
        return false;
    }
    const char *ns = bson_iter_utf8(&it, NULL);
    const char *dot = strchr(ns, '.');
    if (!dot || dot == ns || (size_t)(dot - ns) >= 64 || strlen(dot + 1) > ENG_NS_MAX) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid namespace specified '%s'", ns);
        return false;
    }
    memcpy(db, ns, (size_t)(dot - ns));
    db[dot - ns] = '\0';
    strcpy(coll, dot + 1);
    return wire_ns_check(db, coll, err);
}

bool cmd_rename_collection(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    char fdb[64], fcoll[ENG_NS_MAX + 1], tdb[64], tcoll[ENG_NS_MAX + 1];
    bool drop_target;
    if (!ns_arg(ctx->cmd, "renameCollection", fdb, fcoll, err) ||
        !ns_arg(ctx->cmd, "to", tdb, tcoll, err) ||
        !wire_arg_bool(ctx, "dropTarget", false, &drop_target, err))
        return false;
    if (strcmp(fdb, tdb) == 0 && strcmp(fcoll, tcoll) == 0) {
        bq_error_set(err, BQ_ERR_IllegalOperation, "Can't rename a collection to itself");
        return false;
    }
    /* time series (mongod 7.0): the collection itself never moves, its buckets only to
     * other buckets, and nothing else becomes buckets */
    size_t plen = strlen(WIRE_TS_BUCKETS_PREFIX);
    bool from_buckets = strncmp(fcoll, WIRE_TS_BUCKETS_PREFIX, plen) == 0;
    bool to_buckets = strncmp(tcoll, WIRE_TS_BUCKETS_PREFIX, plen) == 0;
    if (wire_ts_options(ctx->server->db, fdb, fcoll, eng_db_snapshot(ctx->server->db)) ||
        from_buckets != to_buckets) {
        bq_error_set(err, BQ_ERR_IllegalOperation,
                     "Renaming a time-series collection or its buckets to %s.%s is not allowed",
                     tdb, tcoll);
        return false;
    }
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_RENAME, fcoll);
    snprintf(st->ops[0].db, sizeof st->ops[0].db, "%s", fdb);
    snprintf(st->ops[0].to_db, sizeof st->ops[0].to_db, "%s", tdb);
    snprintf(st->ops[0].to_coll, sizeof st->ops[0].to_coll, "%s", tcoll);
    st->ops[0].drop_target = drop_target;
    wire_cmd_submit(ctx, &st->intent, catalog_done);
    return true;
}

/* ---- listings ---- */

static void id_index_spec(bson_t *out, const char *key)
{
    bson_t d, k;
    BSON_APPEND_DOCUMENT_BEGIN(out, key, &d);
    BSON_APPEND_INT32(&d, "v", 2);
    BSON_APPEND_DOCUMENT_BEGIN(&d, "key", &k);
    BSON_APPEND_INT32(&k, "_id", 1);
    bson_append_document_end(&d, &k);
    BSON_APPEND_UTF8(&d, "name", "_id_");
    bson_append_document_end(out, &d);
}

static bool cursor_batch_size(wire_cmd_ctx_t *ctx, int64_t *batch, bq_error_t *err)
{
    bson_iter_t it, c;
    *batch = -1;
    if (bson_iter_init_find(&it, ctx->cmd, "cursor")) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '%s.cursor' is the wrong type '%s', expected type 'object'",
                         ctx->name, bq_type_name(bson_iter_type(&it)));
            return false;
        }
        bson_iter_recurse(&it, &c);
        if (bson_iter_find(&c, "batchSize")) {
            if (!BSON_ITER_HOLDS_NUMBER(&c) || bson_iter_as_int64(&c) < 0) {
                bq_error_set(err, 51024, "BSON field 'batchSize' value must be >= 0");
                return false;
            }
            *batch = bson_iter_as_int64(&c);
        }
    }
    return true;
}

/* The listCollections entry of a view, as mongod gives it; false when c is not one. */
static bool list_view(bson_t *d, const eng_coll_info_t *c, bool name_only)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->options, "viewOn") || !BSON_ITER_HOLDS_UTF8(&it))
        return false;
    BSON_APPEND_UTF8(d, "name", c->name);
    BSON_APPEND_UTF8(d, "type", "view");
    if (!name_only) {
        bson_t info;
        BSON_APPEND_DOCUMENT(d, "options", c->options);
        BSON_APPEND_DOCUMENT_BEGIN(d, "info", &info);
        BSON_APPEND_BOOL(&info, "readOnly", true);
        BSON_APPEND_INT64(&info, "createdSeq", c->created_seq);
        bson_append_document_end(d, &info);
    }
    return true;
}

bool cmd_list_collections(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_t filter;
    bool has_filter, name_only;
    int64_t batch, snap;
    if (!wire_arg_doc(ctx, "filter", &filter, &has_filter, err) ||
        !wire_arg_bool(ctx, "nameOnly", false, &name_only, err) ||
        !cursor_batch_size(ctx, &batch, err) || !wire_read_snapshot(ctx, &snap, err))
        return false;
    bq_match_t *m = bq_match_compile(&filter, err);
    if (!m)
        return false;
    eng_coll_info_t *colls;
    size_t n = eng_catalog_list(ctx->server->db, ctx->db, snap, &colls);
    wire_cursor_t *cur = wire_cursor_new(ctx->db, "$cmd.listCollections");
    for (size_t i = 0; i < n; i++) {
        bson_t d = BSON_INITIALIZER, info;
        if (wire_ts_list_entry(&d, &colls[i], name_only) ||
            list_view(&d, &colls[i], name_only)) {
            /* a time-series collection or a view: its own entry */
        } else if (BSON_APPEND_UTF8(&d, "name", colls[i].name) &&
                   BSON_APPEND_UTF8(&d, "type", "collection") && !name_only) {
            BSON_APPEND_DOCUMENT(&d, "options", colls[i].options);
            BSON_APPEND_DOCUMENT_BEGIN(&d, "info", &info);
            BSON_APPEND_BOOL(&info, "readOnly", false);
            BSON_APPEND_INT64(&info, "createdSeq", colls[i].created_seq);
            bson_append_document_end(&d, &info);
            if (!bson_has_field(colls[i].options, "clusteredIndex"))
                id_index_spec(&d, "idIndex"); /* a clustered collection has none */
        }
        if (bq_match_eval(m, &d))
            wire_cursor_add_owned(cur, &d);
        bson_destroy(&d);
    }
    free(colls);
    bq_match_destroy(m);
    return wire_cursor_reply(ctx->server, cur, ctx->reply, "firstBatch", batch, false, err);
}

bool cmd_list_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    int64_t batch, snap;
    if (!wire_arg_coll(ctx, false, &coll, err) || !cursor_batch_size(ctx, &batch, err) ||
        !wire_read_snapshot(ctx, &snap, err))
        return false;
    eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, coll, snap);
    if (!c) {
        bq_error_set(err, BQ_ERR_NamespaceNotFound, "ns does not exist: %s.%s", ctx->db, coll);
        return false;
    }
    /* a time-series collection: no index of its own here (its buckets are keyed by _id) */
    bool ts = wire_ts_options(ctx->server->db, ctx->db, coll, snap) != NULL;
    if (!ts && !wire_view_refuse(ctx, coll, NULL, err))
        return false;
    wire_cursor_t *cur = wire_cursor_new(ctx->db, coll);
    if (ts)
        return wire_cursor_reply(ctx->server, cur, ctx->reply, "firstBatch", batch, false, err);
    bson_t **specs;
    size_t nspecs = wire_index_specs(c, snap, &specs);
    for (size_t i = 0; i < nspecs; i++) {
        wire_cursor_add_owned(cur, specs[i]);
        bson_destroy(specs[i]);
    }
    free(specs);
    return wire_cursor_reply(ctx->server, cur, ctx->reply, "firstBatch", batch, false, err);
}

bool cmd_list_databases(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_t filter;
    bool has_filter, name_only;
    int64_t snap;
    if (!wire_arg_doc(ctx, "filter", &filter, &has_filter, err) ||
        !wire_arg_bool(ctx, "nameOnly", false, &name_only, err) ||
        !wire_read_snapshot(ctx, &snap, err))
        return false;
    bq_match_t *m = bq_match_compile(&filter, err);
    if (!m)
        return false;
    eng_coll_info_t *colls;
    size_t n = eng_catalog_list(ctx->server->db, NULL, snap, &colls);
    bson_t dbs;
    uint32_t ndb = 0;
    int64_t total = 0;
    BSON_APPEND_ARRAY_BEGIN(ctx->reply, "databases", &dbs);
    for (size_t i = 0; i < n;) {
        /* the list is sorted by database: one entry per run */
        size_t j = i;
        int64_t size = 0;
        for (; j < n && strcmp(colls[j].db, colls[i].db) == 0; j++) {
            uint64_t count, bytes;
            eng_coll_stats(colls[j].coll, snap, &count, &bytes);
            size += (int64_t)bytes;
        }
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&d, "name", colls[i].db);
        if (!name_only) {
            BSON_APPEND_INT64(&d, "sizeOnDisk", size);
            BSON_APPEND_BOOL(&d, "empty", size == 0);
        }
        if (bq_match_eval(m, &d)) {
            char key[16];
            snprintf(key, sizeof key, "%u", ndb++);
            BSON_APPEND_DOCUMENT(&dbs, key, &d);
            total += size;
        }
        bson_destroy(&d);
        i = j;
    }
    bson_append_array_end(ctx->reply, &dbs);
    if (!name_only) {
        BSON_APPEND_INT64(ctx->reply, "totalSize", total);
        BSON_APPEND_INT64(ctx->reply, "totalSizeMb", total / (1024 * 1024));
    }
    free(colls);
    bq_match_destroy(m);
    return true;
}

/* ---- statistics ---- */

static int64_t scale_arg(const bson_t *cmd)
{
    bson_iter_t it;
    int64_t scale = 1;
    if (bson_iter_init_find(&it, cmd, "scale") && BSON_ITER_HOLDS_NUMBER(&it))
        scale = bson_iter_as_int64(&it);
    return scale > 0 ? scale : 1;
}

/* mongod's appendNumber: an int32 when the value fits, else an int64. */
static int64_t option_int64(const bson_t *options, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, options, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : 0;
}

/*
 * The fields mongod 7.0's appendCollectionStorageStats gives, in its order, for what NEDB
 * has: sizes are the documents' BSON bytes (NEDB's store is the op log; there is no
 * per-collection file, so storageSize and totalSize are the data size too and the free
 * space is 0), indexes are not sized (0) and never being built, nothing is orphaned, and
 * there is no storage-engine section (wiredTiger, indexDetails). A time-series collection
 * reports its buckets as mongod does: a timeseries document in place of count.
 */
bool wire_coll_storage_stats(eng_db_t *db, const char *dbname, const char *coll, int64_t snap,
                             int32_t scale, bson_t *out, bq_error_t *err)
{
    char buckets[ENG_NS_MAX + 1];
    bool ts = wire_ts_options(db, dbname, coll, snap) != NULL;
    if (ts)
        snprintf(buckets, sizeof buckets, "%s%s", WIRE_TS_BUCKETS_PREFIX, coll);
    else
        snprintf(buckets, sizeof buckets, "%s", coll);
    eng_coll_t *c = eng_coll_get(db, dbname, buckets, snap);
    if (!ts && c && wire_view_is(db, dbname, coll, snap)) {
        bq_error_set(err, BQ_ERR_CommandNotSupportedOnView,
                     "Namespace %s.%s is a view, not a collection", dbname, coll);
        return false;
    }
    bson_t sub;
    if (!c) {
        /* mongod's figures for a collection that is not there, then its error */
        bq_num_append(out, "size", 0);
        bq_num_append(out, "count", 0);
        bq_num_append(out, "numOrphanDocs", 0);
        bq_num_append(out, "storageSize", 0);
        BSON_APPEND_INT32(out, "totalSize", 0);
        BSON_APPEND_INT32(out, "nindexes", 0);
        bq_num_append(out, "totalIndexSize", 0);
        BSON_APPEND_DOCUMENT_BEGIN(out, "indexDetails", &sub);
        bson_append_document_end(out, &sub);
        BSON_APPEND_DOCUMENT_BEGIN(out, "indexSizes", &sub);
        bson_append_document_end(out, &sub);
        BSON_APPEND_INT32(out, "scaleFactor", scale);
        bq_error_set(err, BQ_ERR_NamespaceNotFound, "Collection [%s.%s] not found.", dbname,
                     buckets);
        return false;
    }
    uint64_t count, bytes;
    eng_coll_stats(c, snap, &count, &bytes);
    int64_t size = (int64_t)bytes, n = (int64_t)count;
    int64_t avg = n ? size / n : 0;
    bq_num_append(out, "size", size / scale);
    if (ts) {
        char *bns = bson_strdup_printf("%s.%s", dbname, buckets);
        BSON_APPEND_DOCUMENT_BEGIN(out, "timeseries", &sub);
        BSON_APPEND_UTF8(&sub, "bucketsNs", bns);
        bq_num_append(&sub, "bucketCount", n);
        if (n)
            BSON_APPEND_INT32(&sub, "avgBucketSize", (int32_t)avg);
        bson_append_document_end(out, &sub);
        bson_free(bns);
    } else {
        bq_num_append(out, "count", n);
        if (n)
            BSON_APPEND_INT32(out, "avgObjSize", (int32_t)avg);
    }
    bq_num_append(out, "numOrphanDocs", 0);
    bq_num_append(out, "storageSize", size / scale);
    bq_num_append(out, "freeStorageSize", 0);
    eng_coll_info_t info;
    eng_coll_info(c, &info);
    bson_iter_t it;
    bool capped = bson_iter_init_find(&it, info.options, "capped") && bson_iter_as_bool(&it);
    BSON_APPEND_BOOL(out, "capped", capped);
    if (capped) {
        bq_num_append(out, "max", option_int64(info.options, "max"));
        bq_num_append(out, "maxSize", option_int64(info.options, "size") / scale);
    }
    BSON_APPEND_INT32(out, "nindexes", wire_index_count(c, snap));
    BSON_APPEND_ARRAY_BEGIN(out, "indexBuilds", &sub);
    bson_append_array_end(out, &sub);
    bq_num_append(out, "totalIndexSize", 0);
    bq_num_append(out, "totalSize", size / scale);
    BSON_APPEND_DOCUMENT_BEGIN(out, "indexSizes", &sub);
    wire_index_sizes(&sub, c, snap);
    bson_append_document_end(out, &sub);
    BSON_APPEND_INT32(out, "scaleFactor", scale);
    return true;
}

/* collStats: {ns, <wire_coll_storage_stats>}, as mongod 7.0 answers it: a collection that
 * is not there gets the zeroed figures and ok: 1, not an error (the command is deprecated
 * since 6.2 in favour of $collStats, whose storageStats are the same function's). */
bool cmd_coll_stats(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    int64_t snap;
    int32_t scale = 1;
    bson_iter_t it;
    if (!wire_arg_coll(ctx, false, &coll, err) || !wire_read_snapshot(ctx, &snap, err))
        return false;
    if (bson_iter_init_find(&it, ctx->cmd, "scale") &&
        !agg_storage_scale_parse(&it, "collStats.scale", &scale, err))
        return false;
    char *ns = bson_strdup_printf("%s.%s", ctx->db, coll);
    BSON_APPEND_UTF8(ctx->reply, "ns", ns);
    bson_free(ns);
    if (wire_coll_storage_stats(ctx->server->db, ctx->db, coll, snap, scale, ctx->reply, err))
        return true;
    return err && err->code == BQ_ERR_NamespaceNotFound;
}

bool cmd_db_stats(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    int64_t snap;
    if (!wire_read_snapshot(ctx, &snap, err))
        return false;
    eng_coll_info_t *colls;
    size_t n = eng_catalog_list(ctx->server->db, ctx->db, snap, &colls);
    uint64_t objects = 0, bytes = 0;
    int64_t views = 0, nindexes = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t c, b;
        if (bson_has_field(colls[i].options, "viewOn")) {
            views++;
            continue;
        }
        eng_coll_stats(colls[i].coll, snap, &c, &b);
        objects += c;
        bytes += b;
        nindexes += wire_index_count(colls[i].coll, snap);
    }
    free(colls);
    int64_t scale = scale_arg(ctx->cmd);
    bson_t *r = ctx->reply;
    BSON_APPEND_UTF8(r, "db", ctx->db);
    BSON_APPEND_INT64(r, "collections", (int64_t)n - views);
    BSON_APPEND_INT64(r, "views", views);
    BSON_APPEND_INT64(r, "objects", (int64_t)objects);
    BSON_APPEND_DOUBLE(r, "avgObjSize", objects ? (double)bytes / (double)objects : 0.0);
    BSON_APPEND_DOUBLE(r, "dataSize", (double)bytes / (double)scale);
    BSON_APPEND_DOUBLE(r, "storageSize", (double)bytes / (double)scale);
    BSON_APPEND_INT64(r, "indexes", nindexes);
    BSON_APPEND_DOUBLE(r, "indexSize", 0.0);
    BSON_APPEND_DOUBLE(r, "totalSize", (double)bytes / (double)scale);
    BSON_APPEND_DOUBLE(r, "scaleFactor", (double)scale);
    return true;
}

/* ---- nedbVerify ---- */

bool cmd_nedb_verify(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    eng_verify_report_t rep;
    if (!eng_db_verify(ctx->server->db, &rep, err))
        return false;
    bson_t *r = ctx->reply;
    BSON_APPEND_BOOL(r, "valid", rep.valid);
    BSON_APPEND_INT64(r, "records", (int64_t)rep.records);
    BSON_APPEND_UTF8(r, "headHash", rep.head_hex);
    if (!rep.valid) {
        BSON_APPEND_INT64(r, "firstBadSeq", (int64_t)rep.bad_seq);
        BSON_APPEND_UTF8(r, "reason", eng_verify_reason_name(rep.reason));
        BSON_APPEND_UTF8(r, "detail", rep.detail);
    }
    return true;
}
