/*
 * cmd_aggregate_update.c: pipeline-style updates ("u" or findAndModify's "update" given
 * as an array of stages), for cmd_write.c.
 *
 * mongod runs such an update as a small aggregation over the one matched document (or
 * over the upsert's seed), with only the stages that reshape one document: $addFields /
 * $set, $project, $unset, $replaceRoot / $replaceWith. Any other stage is refused with 72
 * InvalidOptions. The command's `let` variables and $$NOW are visible. The result must
 * keep the document's _id (66 ImmutableField); a result without _id gets the original one
 * back, as mongod does.
 *
 * This file computes documents only; writing them is cmd_write.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd_aggregate.h"

static const char *const update_stages[] = {
    "$addFields", "$set", "$project", "$unset", "$replaceRoot", "$replaceWith",
};

bool wire_agg_update_check(wire_cmd_ctx_t *ctx, const bson_t *pipeline, bq_error_t *err)
{
    (void)ctx;
    bson_iter_t it;
    if (!bson_iter_init(&it, pipeline)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "the update pipeline is not valid BSON");
        return false;
    }
    while (bson_iter_next(&it)) {
        bson_iter_t st;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &st) ||
            !bson_iter_next(&st))
            continue; /* the pipeline parser reports these */
        const char *name = bson_iter_key(&st);
        bool allowed = false;
        for (size_t i = 0; i < sizeof update_stages / sizeof *update_stages; i++)
            allowed = allowed || !strcmp(name, update_stages[i]);
        if (!allowed) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "%s is not allowed to be used within an update", name);
            return false;
        }
    }
    return true;
}

/* The result with the original _id first when it lost it; 66 when it changed it. */
static bool keep_id(const bson_t *orig, const bson_t *result, bool is_upsert_seed, bson_t *out,
                    bq_error_t *err)
{
    bson_iter_t oit, rit;
    bool had = bson_iter_init_find(&oit, orig, "_id");
    bool has = bson_iter_init_find(&rit, result, "_id");
    bson_init(out);
    if (has && had) {
        const bson_value_t *a = bson_iter_value(&oit), *b = bson_iter_value(&rit);
        if (a->value_type != b->value_type || bq_value_compare(a, b) != 0) {
            if (!is_upsert_seed) {
                bq_error_set(err, BQ_ERR_ImmutableField,
                             "Performing an update on the path '_id' would modify the "
                             "immutable field '_id'");
                return false;
            }
        }
        bson_concat(out, result);
        return true;
    }
    if (!has && had)
        bson_append_iter(out, "_id", 3, &oit);
    bson_concat(out, result);
    return true;
}

bool wire_agg_update_apply(wire_cmd_ctx_t *ctx, const bson_t *pipeline, const bson_t *doc,
                           bool is_upsert_seed, bson_t *out, bq_error_t *err)
{
    bson_init(out);
    if (!wire_agg_update_check(ctx, pipeline, err))
        return false;
    bson_t let;
    bool has_let;
    if (!wire_arg_doc(ctx, "let", &let, &has_let, err))
        return false;
    agg_pipeline_opts_t opts = {.db = ctx->db, .coll = NULL, .let = has_let ? &let : NULL};
    agg_pipeline_t *p = agg_pipeline_parse(pipeline, &opts, err);
    if (!p)
        return false;
    agg_run_t run;
    uint32_t t, i;
    eng_db_cluster_time(ctx->server->db, eng_db_snapshot(ctx->server->db), &t, &i);
    bool ok = agg_run_init(&run, p, NULL, ctx->db, wire_now_ms(), t, i, false, err);
    bson_t *one = (bson_t *)doc;
    agg_iter_t *it = ok ? agg_pipeline_open(p, agg_iter_from_docs(&run, &one, 1), &run, err)
                        : NULL;
    ok = it != NULL;
    bson_t *res = NULL;
    if (ok) {
        int r = agg_iter_next(it, &res, err);
        if (r == 0) {
            /* the stages allowed here always yield their one document */
            bq_error_set(err, BQ_ERR_InternalError, "the update pipeline produced no document");
            ok = false;
        } else if (r < 0) {
            ok = false;
        }
    }
    if (ok) {
        bson_destroy(out);
        ok = keep_id(doc, res, is_upsert_seed, out, err);
    }
    if (res)
        bson_destroy(res);
    agg_iter_close(it);
    agg_run_cleanup(&run);
    agg_pipeline_destroy(p);
    return ok;
}
