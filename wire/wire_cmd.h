/*
 * wire_cmd.h: the command handlers, one declaration per handler, grouped by file. A
 * handler runs after wire_dispatch() has done the shared checks (wire_dispatch.c): it
 * appends its reply fields to ctx->reply, or returns false with err set.
 */
#ifndef WIRE_CMD_H
#define WIRE_CMD_H

#include "wire_int.h"

/* cmd_hello.c: the handshake and server identity */
bool cmd_hello(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_build_info(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_ping(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_sasl(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_logout(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_connection_status(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_whatsmyuri(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* cmd_diag.c: diagnostics */
bool cmd_get_parameter(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_set_parameter(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_get_cmd_line_opts(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_get_log(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_host_info(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_server_status(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_list_commands(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* wire_failpoint.c: test fail points */
bool cmd_configure_fail_point(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* cmd_session.c: logical sessions */
bool cmd_start_session(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_end_sessions(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_refresh_sessions(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* cmd_find.c: reads */
bool cmd_find(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_get_more(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_kill_cursors(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_count(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_distinct(wire_cmd_ctx_t *ctx, bq_error_t *err);
/* The documents of c at snap matching m (and filter, for the _id fast path), in natural
 * order, into a malloc'd array; returns how many, or WIRE_COLLECT_ERROR with err set (and
 * *out NULL) when a $expr in the filter failed to evaluate. */
#define WIRE_COLLECT_ERROR SIZE_MAX
size_t wire_collect(eng_coll_t *c, int64_t snap, const bq_match_t *m, const bson_t *filter,
                    eng_doc_t **out, bq_error_t *err);
/* The scan under wire_collect, keeping the documents for which keep() returns 1 (0:
 * skip, -1: fail with err), in natural order; same results and errors (an old version
 * that cannot be read back from the log fails it). */
typedef int (*wire_keep_fn)(void *arg, const eng_doc_t *d, bq_error_t *err);
size_t wire_scan_collect(eng_coll_t *c, int64_t snap, wire_keep_fn keep, void *arg,
                         eng_doc_t **out, bq_error_t *err);

/* cmd_write.c: writes */
bool cmd_insert(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_update(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_delete(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_find_and_modify(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* cmd_catalog.c: collections and databases */
bool cmd_create(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_drop(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_drop_database(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_list_databases(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_list_collections(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_list_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_rename_collection(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_coll_stats(wire_cmd_ctx_t *ctx, bq_error_t *err);
/* The storage statistics of db.coll at snap, appended to out, for collStats (after its ns)
 * and $collStats storageStats (wire_agg_source_t): size, count (for a time-series
 * collection a timeseries document instead), avgObjSize, numOrphanDocs, storageSize,
 * freeStorageSize, capped (max, maxSize), nindexes, indexBuilds, totalIndexSize, totalSize,
 * indexSizes, scaleFactor, in mongod 7.0's order, sizes divided by scale (>= 1); numbers
 * are int32 when they fit. False with err: 26 NamespaceNotFound for a missing collection
 * (after mongod's zeroed figures), 166 for a view. */
bool wire_coll_storage_stats(eng_db_t *db, const char *dbname, const char *coll, int64_t snap,
                             int32_t scale, bson_t *out, bq_error_t *err);
bool cmd_db_stats(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_coll_mod(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_nedb_verify(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* cmd_admin.c: administration (operations in progress, profiler, fsync, top, validate) */
bool cmd_current_op(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_kill_op(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_profile(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_fsync(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_fsync_unlock(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_get_default_rw_concern(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_repl_set_get_status(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_top(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_data_size(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_validate(wire_cmd_ctx_t *ctx, bq_error_t *err);

#endif
