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
 * {$meta: "seq"} (NEDB's version seq, given at apply time), literal values (strings
 * not starting with '$', null, dates, ...) which set the field to the value, and
 * aggregation expressions ({$add: [...]}, "$field", arrays, $$REMOVE) evaluated against
 * the whole document through the hooks the aggregation layer installs (bq.h:
 * bq_project_expr_hooks_t; without them expressions fail with NotImplemented (238)).
 * Not yet: $meta names other than "seq" (NotImplemented).
 */
#ifndef BQ_PROJECT_H
#define BQ_PROJECT_H

#include <bson/bson.h>

#include "bq_error.h"

typedef struct bq_project bq_project_t;

/* Compiles a projection document (NULL or empty: the whole document). Returns a new
 * projection the caller frees with bq_project_destroy(), or NULL with err set:
 *   31253  "Cannot do inclusion on field a in exclusion projection"
 *   31252  an operator expression in an exclusion projection; 31310 another computed
 *          value (literal, "$path") there; 31325 "Unknown expression $foo"
 *   31271 / 31308  a positional projection given a document / a literal
 *   the expression's own code for a bad expression (15983, 16020, 17276 ...)
 *   31254  "Cannot do exclusion on field b in inclusion projection"
 *   31249  "Path collision at a.b remaining portion b" (a path below an existing leaf)
 *   31250  "Path collision at a" (a path that already has sub-paths or is repeated)
 *   51270  an empty sub-projection {a: {}}
 *   31273 / 31272 / 31257 / 31258 / 31259  find's $slice given a non-number non-array, an
 *          array not of two elements, a non-number skip, a non-number limit, a limit <= 0
 *          (only without the hooks: with them a bad find $slice is parsed as the expression)
 *   31274 / 31275  $elemMatch given a non-document / on a dotted path
 *   31255 / 31256  $elemMatch and a positional projection together (in either order)
 *   16410  a field name starting with '$'; BadValue (2)  $meta without a string
 *   31276  more than one positional projection; 31395 a positional exclusion
 *   NotImplemented (238)  $meta other than "seq"; expressions before the aggregation
 *                         layer installed its hooks
 * The projection copies what it needs. */
bq_project_t *bq_project_compile(const bson_t *projection, bq_error_t *err);

/* The same with the command's `let` variables ({name: expression}, or NULL) visible to
 * the projection's expressions as $$name. */
bq_project_t *bq_project_compile_let(const bson_t *projection, const bson_t *let,
                                     bq_error_t *err);

/* What an apply may need besides the document. Zero-initialise. */
typedef struct bq_project_opts {
    const bson_t *filter;   /* the query's filter, for the positional projection "a.$" */
    bool has_seq;           /* seq is known: {$meta: "seq"} fields get it (else omitted) */
    int64_t seq;
} bq_project_opts_t;

/* Applies the projection to doc. *out is always initialised (the caller destroys it).
 * Returns false with err set for the positional projection when no array element
 * matched the filter (51246, "positional operator '.$' couldn't find a matching element
 * in the array") and when an expression fails to evaluate (its error, e.g. 16554 for a
 * non-numeric $add); out is then incomplete. bq_project_apply is bq_project_apply_ex
 * with no options. */
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
