/*
 * bq_sort.h: sort specifications ({a: 1, "b.c": -1}) compiled once and used to order
 * documents the way MongoDB 7.0's find and $sort do. Implemented in bq_sort.c.
 *
 * Pure (no I/O, no threads); a compiled sort is immutable and may be shared.
 *
 * Order of one key: the values at the path are gathered (arrays on the way fan out, a
 * leaf array contributes its elements); an ascending key uses the smallest of them and a
 * descending key the largest (bq_value_compare order). A missing field sorts as null; an
 * empty array sorts before null (and so last when descending).
 */
#ifndef BQ_SORT_H
#define BQ_SORT_H

#include <bson/bson.h>

#include "bq_error.h"

typedef struct bq_sort bq_sort_t;

/* Compiles a sort document. Values must be numbers equal to 1 or -1; {$natural: 1|-1}
 * asks for natural (storage) order. An empty document is allowed (no ordering).
 * Returns a new sort the caller frees with bq_sort_destroy(), or NULL with err set:
 *   15974         a value that is not a number ("Illegal key in $sort specification: a: ...")
 *   15975         a number other than 1/-1 ("$sort key ordering must be 1 (for ascending)
 *                 or -1 (for descending)")
 *   17312         an object other than {$meta: ...}
 *   NotImplemented (238)  {$meta: "textScore"} and other $meta sorts
 *   FailedToParse (9)     {$meta: ...} with other keys, or an empty field name
 * The sort copies what it needs. */
bq_sort_t *bq_sort_compile(const bson_t *sort, bq_error_t *err);

/* Compares two documents: <0 when a sorts before b, 0 when equal for this sort, >0. */
int bq_sort_compare(const bq_sort_t *s, const bson_t *a, const bson_t *b);

/* Same for two values (documents are walked; any other value has no fields, so every key
 * is missing). $push's $sort uses this for array elements. */
int bq_sort_compare_values(const bq_sort_t *s, const bson_value_t *a, const bson_value_t *b);

/* True when the sort has no keys (nothing to order). */
bool bq_sort_is_empty(const bq_sort_t *s);

/* True when the sort is {$natural: 1|-1}; *dir (may be NULL) gets 1 or -1. */
bool bq_sort_is_natural(const bq_sort_t *s, int *dir);

/* Stable merge sort of n documents with this sort (pointers are reordered, documents are
 * not copied). Returns false only when memory runs out. */
bool bq_sort_docs(const bq_sort_t *s, const bson_t **docs, size_t n);

/* Frees a sort; NULL is allowed. */
void bq_sort_destroy(bq_sort_t *s);

struct bq_collation;
/* Orders strings by collation c (the sort takes a reference); NULL: binary. */
void bq_sort_set_collation(bq_sort_t *s, const struct bq_collation *c);

#endif
