/*
 * cmd_view.h: views (MongoDB 7.0 semantics) as the server's handlers see them.
 *
 * A view is a catalog entry like a collection: `create` with viewOn and pipeline records an
 * ordinary catalog op whose options hold {viewOn, pipeline}, so a view is sealed into the
 * chain, versioned (a view dropped at seq 90 is still a view as of seq 89), kept by
 * checkpoints and restored at restart, with no engine change. What makes it a view is only
 * the viewOn field of its options: every read path asks wire_view_resolve() and every
 * write path wire_view_refuse() before touching the store.
 *
 * Reads through a view run as an aggregation over the view's source collection: the
 * pipelines of the chain of views (the innermost view's first) followed by the command's
 * own stages (cmd_aggregate.c: wire_view_find, wire_agg_collect).
 */
#ifndef CMD_VIEW_H
#define CMD_VIEW_H

#include "wire_int.h"

/* mongod's limit on a chain of views. */
#define WIRE_VIEW_MAX_DEPTH 20

/* The options of db.name at snap when it is a view, time-series collections included
 * (their catalog entry is a view on the buckets): borrowed from the catalog, valid as long
 * as the snapshot; NULL for a collection or a missing name. */
const bson_t *wire_view_options(eng_db_t *db, const char *dbname, const char *name,
                                int64_t snap);

/* Whether db.name is a view at snap (false for collections and missing names). */
bool wire_view_is(eng_db_t *db, const char *dbname, const char *name, int64_t snap);

/*
 * Resolves db.name at snap. When it is a view: *is_view true, src (ENG_NS_MAX + 1 bytes)
 * the collection the chain of views finally reads, and *pipeline (an array document,
 * always initialized: the caller destroys it) the stages of every view of the chain, the
 * innermost first. When it is not: *is_view false, src = name, *pipeline empty. Errors:
 * ViewDepthLimitExceeded (165) past WIRE_VIEW_MAX_DEPTH views or a cycle.
 */
bool wire_view_resolve(eng_db_t *db, const char *dbname, const char *name, int64_t snap,
                       bool *is_view, char *src, bson_t *pipeline, bq_error_t *err);

/* CommandNotSupportedOnView (166) when ctx->db.coll is a view now: for writes and for
 * catalog commands that need a collection (what names the command in the message). */
bool wire_view_refuse(wire_cmd_ctx_t *ctx, const char *coll, const char *what,
                      bq_error_t *err);

/*
 * Checks a view definition for create / collMod of view `name` in ctx->db: viewOn a
 * non-empty string (TypeMismatch, InvalidNamespace), pipeline an array of stage documents
 * that parses (the aggregation codes) with no $out or $merge anywhere, nested pipelines
 * included (OptionNotSupportedOnView 167), and no cycle through existing views
 * (GraphContainsCycle 5) nor a chain deeper than WIRE_VIEW_MAX_DEPTH (165).
 */
bool wire_view_check_definition(wire_cmd_ctx_t *ctx, const char *name, const char *view_on,
                                const bson_t *pipeline, bq_error_t *err);

/* create with viewOn or pipeline among its options (opts: the command less its name and
 * generic fields): the definition checked as above, and only viewOn, pipeline and
 * collation allowed beside it (InvalidOptions 72). A view's collation is its own (none:
 * simple, not its source collection's default); a view on a view must have the same one
 * (OptionNotSupportedOnView 167). The collation in opts is rewritten with every field
 * filled in, as listCollections then shows it. */
bool wire_view_create_check(wire_cmd_ctx_t *ctx, const char *name, bson_t *opts,
                            bq_error_t *err);

/* The collation a read through view db.view runs with at snap (*out: a new reference, NULL
 * for simple): the view's own. A command `cmd` that names a collation (compiled: given)
 * other than the view's is OptionNotSupportedOnView (167) "Cannot override a view's
 * default collation", as in mongod. For a name that is no view: true with *out NULL. */
bool wire_view_collation(eng_db_t *db, const char *dbname, const char *view, int64_t snap,
                         const bson_t *cmd, const bq_collation_t *given, bq_collation_t **out,
                         bq_error_t *err);

/* collMod: on a view only viewOn and pipeline may change (InvalidOptions 72 otherwise) and
 * the new definition is checked; on a collection viewOn and pipeline are refused (72). */
bool wire_view_coll_mod_check(wire_cmd_ctx_t *ctx, const char *name, const bson_t *changes,
                              bq_error_t *err);

#endif
