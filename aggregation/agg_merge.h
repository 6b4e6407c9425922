/*
 * agg_merge.h: $out and $merge, MongoDB 7.0 semantics. The stages are parsed here (their
 * table entries are in agg_stage_join.c, flagged AGG_STAGE_LAST | AGG_STAGE_NO_FACET, with
 * no open function); the pipeline stops before them and agg_pipeline_out() hands the
 * caller (wire/) the target. The caller writes every document the pipeline yields:
 *
 *   $out    replaces the target collection with the documents (db and coll in agg_out_t).
 *
 *   $merge  for each document:
 *             1. agg_merge_prepare(out, doc, &prepared, &filter, err): the document as it
 *                will be written (a new ObjectId _id first when `on` includes _id and the
 *                document has none) and the filter that finds the matching target document
 *                ({f: {$eq: value}} per `on` field; {_id: {$eq: v}} by default);
 *             2. the caller looks the filter up in the target collection (at most one match
 *                is expected: mongod requires a unique index on the `on` fields, see below);
 *             3. agg_merge_apply(out, run, existing or NULL, prepared, &result, err) says
 *                what to write.
 *
 * `on` fields. mongod refuses `on` fields without a unique index on exactly them (51183);
 * the caller checks that before writing (wire/cmd_aggregate_out.c) and matches them with
 * a filter (at most one document can match).
 *
 * Errors of the helpers, with mongod's codes: 51132 an `on` field missing, null, undefined
 * or an array in the document; 11000 DuplicateKey for whenMatched "fail"; 13113 for
 * whenNotMatched "fail"; 66 ImmutableField when the new document would change the target's
 * _id; errors of the whenMatched pipeline and let expressions.
 */
#ifndef AGG_MERGE_H
#define AGG_MERGE_H

#include "agg_pipeline.h"

typedef enum agg_merge_action {
    AGG_MERGE_ACT_INSERT,  /* insert *result (no match, whenNotMatched: insert) */
    AGG_MERGE_ACT_REPLACE, /* replace the matched document by *result (same _id) */
    AGG_MERGE_ACT_KEEP,    /* leave the matched document as it is (keepExisting) */
    AGG_MERGE_ACT_DISCARD, /* write nothing (no match, whenNotMatched: discard) */
} agg_merge_action_t;

/* Step 1 above. doc and filter are always initialized (bson_init) and the caller destroys
 * them. Fails with 51132. */
bool agg_merge_prepare(const agg_out_t *out, const bson_t *incoming, bson_t *doc,
                       bson_t *filter, bq_error_t *err);

/* Step 3 above. out must come from agg_pipeline_out() of a $merge pipeline; run is the
 * command's run (its variables and $$NOW are visible to the whenMatched pipeline, which
 * sees the matched document as $$ROOT, the incoming one as $$new and the $merge let
 * variables evaluated against the incoming document). existing is the matched target
 * document or NULL. Returns the action (>= 0), with *result set for INSERT and REPLACE;
 * -1 with err set. *result is always initialized and the caller destroys it. */
int agg_merge_apply(const agg_out_t *out, agg_run_t *run, const bson_t *existing,
                    const bson_t *incoming, bson_t *result, bq_error_t *err);

/* ---------------------------------------------------------------- inside aggregation/ */

bool agg__out_parse(const bson_value_t *spec, agg_parse_t *pc, void **state, bq_error_t *err);
void agg__out_free(void *state);
bool agg__merge_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                      bq_error_t *err);
void agg__merge_free(void *state);

/* Checks a field path as mongod's FieldPath does (40352, 15998, 16410, 40353). */
bool agg__join_path_check(const char *path, bq_error_t *err);

/* A new heap document: doc with the dotted path set to v, as mongod's setNestedField. */
bson_t *agg__join_doc_with_path(const bson_t *doc, const char *path, const bson_value_t *v);

#endif
