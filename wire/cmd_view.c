/*
 * cmd_view.c: views: how a catalog entry is recognised as one, how a chain of views
 * resolves to a source collection and one pipeline, and the checks of create and collMod.
 * See cmd_view.h for the design (a view is a catalog entry whose options hold viewOn and
 * pipeline; nothing in the engine knows about views).
 *
 * This file reads the catalog at a snapshot and never writes; the handlers in
 * cmd_catalog.c, cmd_find.c and cmd_aggregate.c call it.
 */
#include <string.h>

#include "agg_pipeline.h"
#include "cmd_timeseries.h"
#include "cmd_view.h"

const bson_t *wire_view_options(eng_db_t *db, const char *dbname, const char *name,
                                int64_t snap)
{
    eng_coll_t *c = eng_coll_get(db, dbname, name, snap);
    if (!c)
        return NULL;
    eng_coll_info_t info;
    eng_coll_info(c, &info);
    bson_iter_t it;
    if (!info.options || !bson_iter_init_find(&it, info.options, "viewOn") ||
        !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    return info.options;
}

bool wire_view_is(eng_db_t *db, const char *dbname, const char *name, int64_t snap)
{
    return wire_view_options(db, dbname, name, snap) != NULL;
}

/* Appends every element of the array at `key` of doc to arr, numbering from *n. */
static void append_stages(bson_t *arr, uint32_t *n, const bson_t *doc, const char *key)
{
    bson_iter_t it, st;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &st))
        return;
    while (bson_iter_next(&st)) {
        char k[16];
        snprintf(k, sizeof k, "%u", (*n)++);
        bson_append_iter(arr, k, -1, &st);
    }
}

bool wire_view_resolve(eng_db_t *db, const char *dbname, const char *name, int64_t snap,
                       bool *is_view, char *src, bson_t *pipeline, bq_error_t *err)
{
    const bson_t *chain[WIRE_VIEW_MAX_DEPTH];
    int depth = 0;
    bson_init(pipeline);
    *is_view = false;
    snprintf(src, ENG_NS_MAX + 1, "%s", name);
    for (;;) {
        const bson_t *o = wire_view_options(db, dbname, src, snap);
        if (!o)
            break;
        if (depth == WIRE_VIEW_MAX_DEPTH) {
            bq_error_set(err, BQ_ERR_ViewDepthLimitExceeded,
                         "View depth too deep or view cycle detected. Maximum depth is %d",
                         WIRE_VIEW_MAX_DEPTH);
            return false;
        }
        chain[depth++] = o;
        bson_iter_t it;
        bson_iter_init_find(&it, o, "viewOn");
        snprintf(src, ENG_NS_MAX + 1, "%s", bson_iter_utf8(&it, NULL));
    }
    *is_view = depth > 0;
    uint32_t n = 0;
    for (int i = depth - 1; i >= 0; i--)
        append_stages(pipeline, &n, chain[i], "pipeline");
    return true;
}

static bool same_collation(const bq_collation_t *a, const bq_collation_t *b)
{
    if (!a || !b)
        return a == b;
    return bson_equal(bq_collation_spec(a), bq_collation_spec(b));
}

bool wire_view_collation(eng_db_t *db, const char *dbname, const char *view, int64_t snap,
                         const bson_t *cmd, const bq_collation_t *given, bq_collation_t **out,
                         bq_error_t *err)
{
    *out = NULL;
    const bson_t *o = wire_view_options(db, dbname, view, snap);
    if (!o)
        return true;
    if (!wire_collation(o, out, err))
        return false;
    if (bson_has_field(cmd, "collation") && !same_collation(given, *out)) {
        bq_collation_destroy(*out);
        *out = NULL;
        bq_error_set(err, BQ_ERR_OptionNotSupportedOnView,
                     "Cannot override a view's default collation");
        return false;
    }
    return true;
}

bool wire_view_refuse(wire_cmd_ctx_t *ctx, const char *coll, const char *what,
                      bq_error_t *err)
{
    if (!wire_ts_refuse(ctx, coll, err))
        return false; /* a time-series collection: NotImplemented rather than "a view" */
    if (!wire_view_is(ctx->server->db, ctx->db, coll, eng_db_snapshot(ctx->server->db)))
        return true;
    bq_error_set(err, BQ_ERR_CommandNotSupportedOnView, "Namespace %s.%s is a view, not a "
                                                        "collection%s%s",
                 ctx->db, coll, what && *what ? ": " : "", what ? what : "");
    return false;
}

/* ---------------------------------------------------------------- definitions */

/* OptionNotSupportedOnView for $out / $merge anywhere in the stages, nested pipelines of
 * $lookup, $unionWith and $facet included. */
static bool stages_check(const bson_t *stages, int depth, bq_error_t *err)
{
    bson_iter_t it;
    if (depth > 20 || !bson_iter_init(&it, stages))
        return true; /* the parser reports what is malformed */
    while (bson_iter_next(&it)) {
        bson_iter_t st;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &st) ||
            !bson_iter_next(&st))
            continue;
        const char *name = bson_iter_key(&st);
        if (!strcmp(name, "$out") || !strcmp(name, "$merge")) {
            bq_error_set(err, BQ_ERR_OptionNotSupportedOnView,
                         "%s cannot be used in a view definition", name);
            return false;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&st))
            continue;
        bool lookup = !strcmp(name, "$lookup") || !strcmp(name, "$unionWith");
        bool facet = !strcmp(name, "$facet");
        if (!lookup && !facet)
            continue;
        bson_iter_t sub;
        bson_iter_recurse(&st, &sub);
        while (bson_iter_next(&sub)) {
            if (!BSON_ITER_HOLDS_ARRAY(&sub) || (lookup && strcmp(bson_iter_key(&sub), "pipeline")))
                continue;
            uint32_t len;
            const uint8_t *data;
            bson_t inner;
            bson_iter_array(&sub, &len, &data);
            if (bson_init_static(&inner, data, len) && !stages_check(&inner, depth + 1, err))
                return false;
        }
    }
    return true;
}

bool wire_view_check_definition(wire_cmd_ctx_t *ctx, const char *name, const char *view_on,
                                const bson_t *pipeline, bq_error_t *err)
{
    if (!view_on[0]) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "invalid namespace name for a view");
        return false;
    }
    if (!wire_ns_check(ctx->db, view_on, err) || !stages_check(pipeline, 0, err))
        return false;
    agg_pipeline_opts_t opts = {.db = ctx->db, .coll = view_on};
    agg_pipeline_t *p = agg_pipeline_parse(pipeline, &opts, err);
    if (!p)
        return false;
    agg_pipeline_destroy(p);
    /* the chain from viewOn, as it would be with `name` defined this way */
    int64_t snap = eng_db_snapshot(ctx->server->db);
    char cur[ENG_NS_MAX + 1];
    char path[1024];
    snprintf(cur, sizeof cur, "%s", view_on);
    snprintf(path, sizeof path, "%s.%s -> %s.%s", ctx->db, name, ctx->db, view_on);
    for (int depth = 1;; depth++) {
        if (!strcmp(cur, name)) {
            bq_error_set(err, BQ_ERR_GraphContainsCycle, "View cycle detected: [%s]", path);
            return false;
        }
        if (depth > WIRE_VIEW_MAX_DEPTH) {
            bq_error_set(err, BQ_ERR_ViewDepthLimitExceeded,
                         "View depth too deep or view cycle detected. Maximum depth is %d",
                         WIRE_VIEW_MAX_DEPTH);
            return false;
        }
        const bson_t *o = wire_view_options(ctx->server->db, ctx->db, cur, snap);
        if (!o)
            return true;
        bson_iter_t it;
        bson_iter_init_find(&it, o, "viewOn");
        snprintf(cur, sizeof cur, "%s", bson_iter_utf8(&it, NULL));
        size_t used = strlen(path);
        if (used < sizeof path)
            snprintf(path + used, sizeof path - used, " -> %s.%s", ctx->db, cur);
    }
}

/* viewOn and pipeline of a create / collMod, typed. *view_on NULL / *pipeline empty when
 * absent. */
static bool definition_args(const char *cmd, const bson_t *opts, const char **view_on,
                            bson_t *pipeline, bool *has_pipeline, bq_error_t *err)
{
    bson_iter_t it;
    *view_on = NULL;
    *has_pipeline = false;
    bson_init_static(pipeline, (const uint8_t *)"\005\0\0\0\0", 5);
    if (bson_iter_init_find(&it, opts, "viewOn")) {
        if (!BSON_ITER_HOLDS_UTF8(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '%s.viewOn' is the wrong type '%s', expected type 'string'",
                         cmd, bq_type_name(bson_iter_type(&it)));
            return false;
        }
        *view_on = bson_iter_utf8(&it, NULL);
    }
    if (bson_iter_init_find(&it, opts, "pipeline")) {
        if (!BSON_ITER_HOLDS_ARRAY(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '%s.pipeline' is the wrong type '%s', expected type "
                         "'array'",
                         cmd, bq_type_name(bson_iter_type(&it)));
            return false;
        }
        uint32_t len;
        const uint8_t *data;
        bson_iter_array(&it, &len, &data);
        bson_init_static(pipeline, data, len);
        *has_pipeline = true;
    }
    return true;
}

bool wire_view_create_check(wire_cmd_ctx_t *ctx, const char *name, bson_t *opts,
                            bq_error_t *err)
{
    const char *view_on;
    bson_t pipeline;
    bool has_pipeline;
    if (!definition_args("create", opts, &view_on, &pipeline, &has_pipeline, err))
        return false;
    if (!view_on) {
        bq_error_set(err, BQ_ERR_BadValue, "'pipeline' requires 'viewOn' to also be specified");
        return false;
    }
    bson_iter_t it;
    bson_iter_init(&it, opts);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "viewOn") || !strcmp(k, "pipeline") || !strcmp(k, "collation"))
            continue;
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "option not supported on a view: %s", k);
        return false;
    }
    if (!wire_view_check_definition(ctx, name, view_on, &pipeline, err))
        return false;
    /* the view's collation (none: simple, whatever its source's default): the same as the
     * view it is defined on, if that is a view, and recorded with every field filled in */
    bq_collation_t *co, *src_co = NULL;
    if (!wire_collation(opts, &co, err))
        return false;
    const bson_t *src = wire_view_options(ctx->server->db, ctx->db, view_on,
                                     eng_db_snapshot(ctx->server->db));
    if (src && !wire_collation(src, &src_co, err)) {
        bq_collation_destroy(co);
        return false;
    }
    bool ok = !src || same_collation(co, src_co);
    if (!ok)
        bq_error_set(err, BQ_ERR_OptionNotSupportedOnView,
                     "View %s.%s has conflicting collation with view %s.%s", ctx->db, name,
                     ctx->db, view_on);
    bq_collation_destroy(src_co);
    if (ok && bson_has_field(opts, "collation")) {
        bson_t normal = BSON_INITIALIZER;
        bson_copy_to_excluding_noinit(opts, &normal, "collation", NULL);
        if (co)
            BSON_APPEND_DOCUMENT(&normal, "collation", bq_collation_spec(co));
        bson_reinit(opts);
        bson_concat(opts, &normal);
        bson_destroy(&normal);
    }
    bq_collation_destroy(co);
    return ok;
}

bool wire_view_coll_mod_check(wire_cmd_ctx_t *ctx, const char *name, const bson_t *changes,
                              bq_error_t *err)
{
    const char *view_on;
    bson_t pipeline;
    bool has_pipeline;
    if (!definition_args("collMod", changes, &view_on, &pipeline, &has_pipeline, err))
        return false;
    const bson_t *o = wire_view_options(ctx->server->db, ctx->db, name,
                                   eng_db_snapshot(ctx->server->db));
    bson_iter_t it;
    if (!o) {
        if (view_on || has_pipeline) {
            bq_error_set(err, BQ_ERR_InvalidOptions, "option only supported on a view: %s",
                         view_on ? "viewOn" : "pipeline");
            return false;
        }
        return true;
    }
    bson_iter_init(&it, changes);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "viewOn") && strcmp(k, "pipeline")) {
            bq_error_set(err, BQ_ERR_InvalidOptions, "option not supported on a view: %s", k);
            return false;
        }
    }
    if (!view_on) {
        bson_iter_init_find(&it, o, "viewOn");
        view_on = bson_iter_utf8(&it, NULL);
    }
    if (!has_pipeline && bson_iter_init_find(&it, o, "pipeline") && BSON_ITER_HOLDS_ARRAY(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_array(&it, &len, &data);
        bson_init_static(&pipeline, data, len);
    }
    return wire_view_check_definition(ctx, name, view_on, &pipeline, err);
}
