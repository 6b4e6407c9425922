/*
 * bq_update.h: MongoDB update documents (operator updates and replacements) and the
 * document an upsert starts from. Implemented in bq_update.c (parsing, the path tree,
 * scalar operators) and bq_update_arr.c (array operators).
 *
 * Like the rest of bsonq/ this is pure: no I/O, no threads. A compiled update is
 * immutable once compiled and may be shared between threads; every apply builds a fresh
 * output document.
 *
 * Semantics follow MongoDB 7.0: fields of one update are processed in lexicographic
 * order (numeric field names in numeric order), so new fields are appended in that
 * order; _id may not change; two operators may not touch the same path or a path and its
 * prefix; MongoDB's error codes and messages are kept.
 */
#ifndef BQ_UPDATE_H
#define BQ_UPDATE_H

#include <bson/bson.h>

#include "bq_error.h"

typedef struct bq_update bq_update_t;

/* Options of one apply. Zero-initialise and set what you need. */
typedef struct bq_update_opts {
    bool is_upsert_insert;    /* $setOnInsert applies; _id is moved to the front */
    /* Index of the array element the query matched, for the positional operator "$"
     * (a.$.b), when has_positional is set (see bq_update_positional_index). Without it,
     * or with a negative index, an update that uses "$" fails with BadValue, as mongod
     * does when the query did not match an array element. */
    bool has_positional;
    int64_t positional_index;
    /* The time $currentDate writes, in milliseconds since the epoch; 0: read the clock. */
    int64_t now_ms;
} bq_update_opts_t;

/* Compiles an update document: either operators ({$set: {...}, $inc: {...}}) or a
 * replacement document (no top-level key starting with '$'). array_filters (may be NULL)
 * is the arrayFilters array of the update command, as a BSON array document.
 * Returns a new update the caller frees with bq_update_destroy(), or NULL with err set:
 *   FailedToParse (9)    unknown modifier, empty operator document, operator argument that
 *                        is not a document, unused or malformed array filters
 *   ConflictingUpdateOperators (40)  two operators on the same path or on a prefix of it
 *   EmptyFieldName (56)  empty path or path component
 *   BadValue (2)         malformed operator arguments ($push clauses, $rename targets,
 *                        positional misuse, unknown array filter identifier ...)
 *   TypeMismatch (14)    $inc/$mul with a non-numeric argument
 *   DollarPrefixedFieldName (52)  a replacement with a top-level '$' field
 * The update copies what it needs: `update` and `array_filters` may be destroyed after. */
bq_update_t *bq_update_compile(const bson_t *update, const bson_t *array_filters,
                               bq_error_t *err);

/* Pipeline-style updates (an array of aggregation stages). Not built yet: always returns
 * NULL with NotImplemented (238). */
bq_update_t *bq_update_compile_pipeline(const bson_t *pipeline, const bson_t *array_filters,
                                        bq_error_t *err);

/* True when the update is a replacement document. */
bool bq_update_is_replacement(const bq_update_t *u);

/* True when the update uses the positional operator "$" (the caller must then pass the
 * matched array index in bq_update_opts_t.positional_index). */
bool bq_update_uses_positional(const bq_update_t *u);

/* The array index the positional operator "$" stands for when `filter` matched `doc`:
 * the first element of the array before ".$" in the update's paths that satisfies the
 * filter's conditions on that array (top level and inside $and), which is the element
 * mongod's matcher records. Returns true and sets *index, or false (and *index -1) when
 * the update has no "$", the field is not an array, the filter says nothing about it, or
 * no element satisfies it: the update must then fail as mongod's does (apply without
 * has_positional reports it). */
bool bq_update_positional_index(const bq_update_t *u, const bson_t *filter, const bson_t *doc,
                                int64_t *index);

/* Applies the update to doc. *out is always initialised (the caller destroys it, even on
 * failure); on success it holds the new document. *changed (may be NULL) is false when the
 * new document is byte-for-byte the old one (MongoDB's nModified counts only real
 * changes). $setOnInsert applies only when is_upsert_insert. Returns false with err set:
 *   ImmutableField (66)      the update would change or remove _id
 *   TypeMismatch (14)        $inc/$mul/$bit on a non-numeric field, $pop on a non-array
 *   PathNotViable (28)       a path that runs through a scalar or an array by name
 *   BadValue (2)             $push/$addToSet/$pull on a non-array, array updates ($[])
 *                            on a missing or non-array field, positional without a match
 *   ConflictingUpdateOperators (40)  two array updates reached the same element */
bool bq_update_apply(const bq_update_t *u, const bson_t *doc, bool is_upsert_insert,
                     bson_t *out, bool *changed, bq_error_t *err);

/* Same with all options (opts may be NULL: the defaults of a plain update). */
bool bq_update_apply_ex(const bq_update_t *u, const bson_t *doc, const bq_update_opts_t *opts,
                        bson_t *out, bool *changed, bq_error_t *err);

/* The document an upsert starts from: the equality conditions of `filter` (field: value,
 * field: {$eq: value}, and those inside $and), dotted paths turned into nested documents,
 * _id first. Operators other than $eq, and values that are regular expressions, contribute
 * nothing. *out is always initialised. Errors: NotSingleValueField (54) when a path is
 * matched twice ({a: 1, 'a.b': 2}); NotImplemented never. */
bool bq_upsert_seed(const bson_t *filter, bson_t *out, bq_error_t *err);

/* Frees a compiled update; NULL is allowed. */
void bq_update_destroy(bq_update_t *u);

#endif
