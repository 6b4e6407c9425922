/*
 * bq_project.h: find-style projections ({a: 1, "b.c": 0, d: {$slice: 2}}) compiled once
 * and applied to many documents, with MongoDB 7.0's rules. Implemented in bq_project.c.
 *
 * Pure (no I/O, no threads); a compiled projection is immutable and may be shared.
 *
 * Supported: inclusion and exclusion of fields and dotted paths (through arrays of
 * documents), the nested form {a: {b: 1}}, _id included unless excluded, $slice (n or
 * [skip, limit]; alone it keeps the other fields), $elemMatch (alone it keeps only _id
 * and the first matching element, placed after the other kept fields), the positional
 * projection "a.$" (the element the query matched; needs the filter at apply time),
 * {$meta: "seq"} (NEDB's version seq, given at apply time) and literal values (strings
 * not starting with '$', null, dates, ...) which set the field to the value. Not yet:
 * aggregation expressions ({$add: ...}, "$field") and other $meta names: these fail to
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
 *   31276  more than one positional projection; 31395 a positional exclusion
 *   NotImplemented (238)  expressions, $meta other than "seq"
 * The projection copies what it needs. */
bq_project_t *bq_project_compile(const bson_t *projection, bq_error_t *err);

/* What an apply may need besides the document. Zero-initialise. */
typedef struct bq_project_opts {
    const bson_t *filter;   /* the query's filter, for the positional projection "a.$" */
    bool has_seq;           /* seq is known: {$meta: "seq"} fields get it (else omitted) */
    int64_t seq;
} bq_project_opts_t;

/* Applies the projection to doc. *out is always initialised (the caller destroys it).
 * Returns false with err set only for the positional projection when no array element
 * matched the filter (51246, "positional operator '.$' couldn't find a matching element
 * in the array"). bq_project_apply is bq_project_apply_ex with no options. */
bool bq_project_apply(const bq_project_t *p, const bson_t *doc, bson_t *out, bq_error_t *err);
bool bq_project_apply_ex(const bq_project_t *p, const bson_t *doc, const bq_project_opts_t *o,
                         bson_t *out, bq_error_t *err);

/* True when the projection has a positional "a.$" (pass the filter to apply_ex). */
bool bq_project_uses_positional(const bq_project_t *p);

/* True when the projection keeps only the fields it names (inclusion mode). */
bool bq_project_is_inclusion(const bq_project_t *p);

/* Frees a projection; NULL is allowed. */
void bq_project_destroy(bq_project_t *p);

#endif
