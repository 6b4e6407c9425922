/*
 * bq_project.h: find-style projections ({a: 1, "b.c": 0, d: {$slice: 2}}) compiled once
 * and applied to many documents, with MongoDB 7.0's rules. Implemented in bq_project.c.
 *
 * Pure (no I/O, no threads); a compiled projection is immutable and may be shared.
 *
 * Supported: inclusion and exclusion of fields and dotted paths (through arrays of
 * documents), the nested form {a: {b: 1}}, _id included unless excluded, $slice (n or
 * [skip, limit]; alone it keeps the other fields), $elemMatch (alone it keeps only _id
 * and the first matching element, placed after the other kept fields), and literal values (strings not starting with '$', null,
 * dates, ...) which set the field to the value. Not yet: aggregation expressions
 * ({$add: ...}, "$field"), {$meta: ...}, and the positional projection a.$: these fail to
 * compile with NotImplemented (238).
 */
#ifndef BQ_PROJECT_H
#define BQ_PROJECT_H

#include <bson/bson.h>

#include "bq_error.h"

typedef struct bq_project bq_project_t;

/* Compiles a projection document (NULL or empty: the whole document). Returns a new
 * projection the caller frees with bq_project_destroy(), or NULL with err set:
 *   31253  "Cannot do inclusion on field a in exclusion projection"
 *   31254  "Cannot do exclusion on field b in inclusion projection"
 *   31249  "Path collision at a.b remaining portion b" (a path below an existing leaf)
 *   31250  "Path collision at a" (a path that already has sub-paths or is repeated)
 *   51270  an empty sub-projection {a: {}}
 *   BadValue (2)  malformed $slice / $elemMatch arguments, '$' field names
 *   NotImplemented (238)  expressions, $meta, positional projection
 * The projection copies what it needs. */
bq_project_t *bq_project_compile(const bson_t *projection, bq_error_t *err);

/* Applies the projection to doc. *out is always initialised (the caller destroys it).
 * Returns false only on errors found while applying (none at present, kept for
 * expressions). */
bool bq_project_apply(const bq_project_t *p, const bson_t *doc, bson_t *out, bq_error_t *err);

/* True when the projection keeps only the fields it names (inclusion mode). */
bool bq_project_is_inclusion(const bq_project_t *p);

/* Frees a projection; NULL is allowed. */
void bq_project_destroy(bq_project_t *p);

#endif
