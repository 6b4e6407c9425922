/*
 * cmd_timeseries.h: time-series collections (MongoDB 7.0 semantics) as the server's
 * handlers see them.
 *
 * A time-series collection X is two catalog entries created by one intent, as mongod
 * keeps them:
 *
 *   system.buckets.X  a real collection: options {clusteredIndex: true, timeseries,
 *                     expireAfterSeconds?}; it holds one bucket document per measurement.
 *   X                 a view over it (cmd_view.h): options {viewOn: "system.buckets.X",
 *                     pipeline: [{$replaceWith: "$data"}], timeseries, expireAfterSeconds?}.
 *
 * A bucket is {_id: <ObjectId>, control: {version: 1, min: {<timeField>: t},
 * max: {<timeField>: t}}, meta?: <the measurement's metaField value>, data: <the
 * measurement as inserted, its own _id first>}. The bucket's server-generated _id is the
 * store's key, so measurements may share an _id as mongod allows; reads of X run the view
 * pipeline and return the measurements exactly as inserted. Nothing below the wire layer
 * knows about time series: the engine sees a view and a collection, the aggregation code
 * a $replaceWith.
 *
 * Writes as MongoDB 7.0 allows them ("Time Series Collection Limitations"): delete takes
 * any filter, limit 0 or 1 and a collation; each matching measurement's bucket is deleted.
 * update must be multi: true, not an upsert, on a collection with a metaField, filter on
 * and modify only the metaField with update operators (InvalidOptions 72 otherwise, with
 * mongod's messages); each matching measurement is updated and re-wrapped into its bucket.
 * findAndModify is refused as 7.0 refuses it on a view (166); 7.1 added it. The write
 * commands in cmd_write.c see measurements only: they collect buckets by a filter on the
 * measurement, read a bucket's measurement and re-wrap an updated one through the
 * functions below.
 */
#ifndef CMD_TIMESERIES_H
#define CMD_TIMESERIES_H

#include "wire_int.h"

#define WIRE_TS_BUCKETS_PREFIX "system.buckets."

/* The catalog options of db.name at snap when it is a time-series collection (borrowed
 * from the catalog), else NULL. */
const bson_t *wire_ts_options(eng_db_t *db, const char *dbname, const char *name,
                              int64_t snap);

/*
 * Checks create's options (opts: the command less its name and generic fields, with a
 * timeseries field) for a time-series collection `name` in ctx->db, and builds the two
 * catalog entries' options (both always initialized) and the buckets' name (ENG_NS_MAX + 1
 * bytes). Errors as mongod 7.0: TypeMismatch (14), IDLFailedToParse (40414) for a missing
 * timeField, IDLUnknownField (40415), BadValue (2) for a bad granularity or a NUL in a
 * field name, 51024 for a bucket span out of [1, 31536000], InvalidOptions (72) for
 * bucketing options that do not go together, dotted or equal time/meta fields, a bad
 * expireAfterSeconds and options a time-series collection cannot have; NotImplemented
 * (238) for a collation (views here read with the simple collation).
 */
bool wire_ts_create_build(wire_cmd_ctx_t *ctx, const char *name, const bson_t *opts,
                          bson_t *view_opts, bson_t *buckets_opts, char *buckets_name,
                          bq_error_t *err);

/* expireAfterSeconds of a create (time-series or clustered collection): a number (14) in
 * [0, INT32_MAX] (InvalidOptions 72), into *out. */
bool wire_expire_after_check(const bson_iter_t *it, int64_t *out, bq_error_t *err);

/*
 * Wraps a measurement (already given its _id) into the bucket document to store in
 * system.buckets.X; ts_opts are X's catalog options. `out` is always initialized and *id
 * set to the bucket's _id on success (the caller destroys it). Errors: BadValue (2) when
 * the time field is missing or not a BSON date, with mongod's message; BSONObjectTooLarge
 * (10334) when the bucket is larger than a document may be.
 */
bool wire_ts_bucket_build(const bson_t *ts_opts, const bson_t *measurement, bson_t *out,
                          bson_value_t *id, bq_error_t *err);

/* The measurement inside a stored bucket (bytes borrowed like the bucket's) into `out`, a
 * static bson_t; false when the document is not a bucket of this layout. */
bool wire_ts_measurement(const uint8_t *bucket, uint32_t len, bson_t *out);

/* The buckets of c at snap whose measurement matches m (NULL: all), in natural order, into
 * a malloc'd array (as wire_collect: the count, or WIRE_COLLECT_ERROR with err set). */
size_t wire_ts_collect(eng_coll_t *c, int64_t snap, const bq_match_t *m, eng_doc_t **out,
                       bq_error_t *err);

/* The bucket of an updated measurement into `out` (always initialized): the old bucket's
 * _id (into *id, owned by the caller on success), bounds and meta from the measurement.
 * BadValue (2) when the time field is no longer a date, 10334 as wire_ts_bucket_build. */
bool wire_ts_bucket_rebuild(const bson_t *ts_opts, const uint8_t *bucket, uint32_t len,
                            const bson_t *measurement, bson_t *out, bson_value_t *id,
                            bq_error_t *err);

/* MongoDB 7.0's checks of one update statement on a time-series collection, in mongod's
 * order: multi (72), upsert (72), a metaField (72), the filter on the metaField only, no
 * $expr or $where (72), no pipeline or replacement (72), the update on the metaField only
 * ($rename's target too) (72). */
bool wire_ts_update_check(const bson_t *ts_opts, const bson_t *q, const bson_t *u,
                          bool u_is_pipeline, bool multi, bool upsert, bq_error_t *err);

/* CommandNotSupportedOnView (166) when ctx->db.coll is a time-series collection: MongoDB
 * 7.0 runs findAndModify on collections only (time-series support came in 7.1). */
bool wire_ts_fam_refuse(wire_cmd_ctx_t *ctx, const char *coll, bq_error_t *err);

/* The listCollections entry of a time-series collection (type "timeseries", its options
 * without the view's definition); false when c is not one. */
bool wire_ts_list_entry(bson_t *d, const eng_coll_info_t *c, bool name_only);

/* NotImplemented (238) naming the command when ctx->db.coll is a time-series collection
 * now: for the index and catalog commands NEDB does not run on one. */
bool wire_ts_refuse(wire_cmd_ctx_t *ctx, const char *coll, bq_error_t *err);

#endif
