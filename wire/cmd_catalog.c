/*
 * cmd_catalog.c: databases and collections: create, drop, dropDatabase, listDatabases,
 * listCollections, listIndexes, renameCollection, collStats, dbStats, collMod, and
 * nedbVerify. Every catalog change is an op in the log ("c"), applied by the committer like
 * any write; the listings read the catalog at the command's snapshot. Collection options
 * are recorded as given (validator, validationLevel and validationAction checked by
 * wire_validate_options, enforced by wire_validate.c) and listCollections reports them so.
 * A view is a catalog entry whose options are {viewOn, pipeline} (cmd_view.h): create and
 * collMod check its definition there, listCollections reports it with type "view".
 */
#include <stdlib.h>
#include <string.h>

#include "cmd_index.h"
#include "cmd_view.h"
#include "wire_cmd.h"
#include "wire_cursor.h"
#include "wire_validate.h"

/* Arguments every command may carry that are not collection options. */
static bool generic_arg(const char *key)
{
    static const char *const generic[] = {
        "$db", "lsid", "txnNumber", "autocommit", "startTransaction", "$clusterTime",
        "writeConcern", "readConcern", "$readPreference", "comment", "maxTimeMS", "apiVersion",
        "apiStrict", "apiDeprecationErrors", "$audit", "$client", "mayBypassWriteBlocking"};
    for (size_t i = 0; i < sizeof generic / sizeof *generic; i++)
        if (strcmp(key, generic[i]) == 0)
            return true;
    return false;
}

/* A catalog write of one op; its completion ends the command. */
typedef struct catalog_state {
    eng_intent_t intent;
    eng_wop_t op;
} catalog_state_t;

static void catalog_state_free(void *p)
{
    catalog_state_t *st = p;
    eng_wop_cleanup(&st->op);
    bson_free(st);
}

static catalog_state_t *catalog_begin(wire_cmd_ctx_t *ctx, eng_wop_kind_t kind,
                                      const char *coll)
{
    catalog_state_t *st = BSON_ALIGNED_ALLOC0(catalog_state_t); /* embeds bson_t */
    eng_wop_init(&st->op, kind, ctx->db, coll);
    st->intent.ops = &st->op;
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
    if (st->op.err.code) {
        *err = st->op.err;
        return false;
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
        if (!generic_arg(bson_iter_key(&it)))
            bson_append_iter(out, bson_iter_key(&it), -1, &it);
}

/* create of a view: the definition checked (cmd_view.c), recorded as the options of a
 * catalog entry, with pipeline [] when none was given. */
static bool create_view(wire_cmd_ctx_t *ctx, catalog_state_t *st, const char *coll,
                        bq_error_t *err)
{
    if (!wire_view_create_check(ctx, coll, &st->op.doc, err))
        return false;
    if (!bson_has_field(&st->op.doc, "pipeline")) {
        bson_t empty = BSON_INITIALIZER;
        BSON_APPEND_ARRAY(&st->op.doc, "pipeline", &empty);
        bson_destroy(&empty);
    }
    wire_cmd_submit(ctx, &st->intent, catalog_done);
    return true;
}

bool cmd_create(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    if (!wire_arg_coll(ctx, true, &coll, err))
        return false;
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_CREATE, coll);
    copy_options(ctx, &st->op.doc);
    bson_iter_t it;
    if (bson_has_field(&st->op.doc, "viewOn") || bson_has_field(&st->op.doc, "pipeline"))
        return create_view(ctx, st, coll, err);
    bson_iter_init(&it, &st->op.doc);
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
        if (strcmp(k, "timeseries") == 0 || strcmp(k, "clusteredIndex") == 0 ||
            strcmp(k, "encryptedFields") == 0) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "%s collections are not implemented yet in NEDB", k);
            return false;
        }
    }
    if (bson_iter_init_find(&it, &st->op.doc, "capped") && bson_iter_as_bool(&it) &&
        !bson_has_field(&st->op.doc, "size")) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "the 'size' field is required when 'capped' is true");
        return false;
    }
    if (!wire_validate_options("create", &st->op.doc, err))
        return false;
    wire_cmd_submit(ctx, &st->intent, catalog_done);
    return true;
}

static bool drop_done(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    catalog_state_t *st = ctx->state;
    if (st->op.err.code == BQ_ERR_NamespaceNotFound)
        return true; /* dropping what is not there is not an error since MongoDB 7.0 */
    if (!catalog_done(ctx, err))
        return false;
    char ns[ENG_NS_MAX + 80];
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, st->op.coll);
    /* the indexes of the incarnation the drop ended (cmd_index.c) */
    int64_t before = st->op.seq - 1;
    BSON_APPEND_INT32(ctx->reply, "nIndexesWas",
                      wire_index_count(eng_coll_get(ctx->server->db, ctx->db, st->op.coll,
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

bool cmd_coll_mod(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    if (!wire_arg_coll(ctx, true, &coll, err))
        return false;
    if (bson_has_field(ctx->cmd, "index"))
        return cmd_index_coll_mod(ctx, coll, err); /* cmd_index.c */
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_COLLMOD, coll);
    copy_options(ctx, &st->op.doc);
    if (!wire_view_coll_mod_check(ctx, coll, &st->op.doc, err) ||
        !wire_validate_options("collMod", &st->op.doc, err))
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
    catalog_state_t *st = catalog_begin(ctx, ENG_WOP_RENAME, fcoll);
    snprintf(st->op.db, sizeof st->op.db, "%s", fdb);
    snprintf(st->op.to_db, sizeof st->op.to_db, "%s", tdb);
    snprintf(st->op.to_coll, sizeof st->op.to_coll, "%s", tcoll);
    st->op.drop_target = drop_target;
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
        if (list_view(&d, &colls[i], name_only)) {
            /* a view: its own entry */
        } else if (BSON_APPEND_UTF8(&d, "name", colls[i].name) &&
                   BSON_APPEND_UTF8(&d, "type", "collection") && !name_only) {
            BSON_APPEND_DOCUMENT(&d, "options", colls[i].options);
            BSON_APPEND_DOCUMENT_BEGIN(&d, "info", &info);
            BSON_APPEND_BOOL(&info, "readOnly", false);
            BSON_APPEND_INT64(&info, "createdSeq", colls[i].created_seq);
            bson_append_document_end(&d, &info);
            id_index_spec(&d, "idIndex");
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
    if (!wire_view_refuse(ctx, coll, NULL, err))
        return false;
    wire_cursor_t *cur = wire_cursor_new(ctx->db, coll);
    bson_t holder = BSON_INITIALIZER;
    id_index_spec(&holder, "x");
    bson_iter_t it;
    bson_iter_init_find(&it, &holder, "x");
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t spec;
    bson_init_static(&spec, data, len);
    wire_cursor_add_owned(cur, &spec);
    bson_destroy(&holder);
    /* the secondary indexes that existed at the snapshot (cmd_index.c creates them) */
    const bson_t **specs;
    size_t nspecs = eng_coll_indexes(c, snap, &specs);
    for (size_t i = 0; i < nspecs; i++)
        wire_cursor_add_owned(cur, specs[i]);
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

bool cmd_coll_stats(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    const char *coll;
    int64_t snap;
    if (!wire_arg_coll(ctx, false, &coll, err) || !wire_read_snapshot(ctx, &snap, err))
        return false;
    eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, coll, snap);
    if (!c) {
        bq_error_set(err, BQ_ERR_NamespaceNotFound, "Collection [%s.%s] not found.", ctx->db,
                     coll);
        return false;
    }
    uint64_t count, bytes;
    eng_coll_stats(c, snap, &count, &bytes);
    int64_t scale = scale_arg(ctx->cmd);
    eng_coll_info_t info;
    eng_coll_info(c, &info);
    bson_iter_t it;
    bool capped = bson_iter_init_find(&it, info.options, "capped") && bson_iter_as_bool(&it);
    char ns[ENG_NS_MAX + 80];
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, coll);
    bson_t *r = ctx->reply, sizes;
    BSON_APPEND_UTF8(r, "ns", ns);
    BSON_APPEND_INT64(r, "count", (int64_t)count);
    BSON_APPEND_INT64(r, "size", (int64_t)bytes / scale);
    if (count)
        BSON_APPEND_INT64(r, "avgObjSize", (int64_t)(bytes / count));
    BSON_APPEND_INT64(r, "storageSize", (int64_t)bytes / scale);
    BSON_APPEND_INT32(r, "nindexes", wire_index_count(c, snap));
    BSON_APPEND_INT64(r, "totalIndexSize", 0);
    BSON_APPEND_DOCUMENT_BEGIN(r, "indexSizes", &sizes);
    wire_index_sizes(&sizes, c, snap);
    bson_append_document_end(r, &sizes);
    BSON_APPEND_INT64(r, "totalSize", (int64_t)bytes / scale);
    BSON_APPEND_INT32(r, "scaleFactor", (int32_t)scale);
    BSON_APPEND_BOOL(r, "capped", capped);
    return true;
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
