/*
 * bq.h: public header of bsonq/, NEDB's BSON semantics layer (DESIGN.md section 1).
 *
 * bsonq/ is pure: functions over libbson documents, no I/O, no threads, no globals that
 * change after startup. Every other layer includes this header for the error type.
 *
 * What lives here, by file:
 *   bq_error.c    the shared error type (bq_error.h) and the code table (bq_codes.def)
 *   bq_type.c     BSON type names as mongod spells them (bq_type.h)
 *   bq_compare.c  MongoDB's total order over BSON values (sort, $gt, indexes, $min ...)
 *   bq_dec.c      Decimal128 arithmetic and comparison over libbson's BID encoding
 *   bq_num.c      numeric arithmetic with MongoDB's result-type rules
 *   bq_path.c     dotted paths resolved the way queries resolve them (array fan-out)
 *   bq_match*.c   query filters: compile once, evaluate against many documents
 *
 * Values are libbson's bson_value_t. A bson_value_t that points into a document (from
 * bson_iter_value()) is borrowed: valid only while that document is. Functions here never
 * keep a pointer to an argument after they return unless they say so.
 */
#ifndef BQ_H
#define BQ_H

#include <bson/bson.h>

#include "bq_error.h"
#include "bq_type.h"

/* ---------------------------------------------------------------- comparison (bq_compare.c) */

/* MongoDB's canonical type rank: values of different ranks compare by rank alone.
 * MinKey -1 < undefined 0 < null 5 < numbers 10 < string/symbol 15 < object 20 < array 25
 * < binData 30 < objectId 35 < bool 40 < date 45 < timestamp 47 < regex 50 < dbPointer 55
 * < code 60 < codeWScope 65 < MaxKey 127. All numeric types share one rank (10). */
int bq_type_rank(bson_type_t t);

/* Total order over BSON values, as mongod sorts them (simple collation): returns <0, 0, >0.
 * Numbers compare by value across int32/int64/double/Decimal128 (NaN is the lowest number
 * and equals NaN; -0 equals 0; double vs Decimal128 converts the double to 34 digits).
 * Strings and symbols compare by bytes; objects field by field (type rank, name, value);
 * arrays element by element; BinData by length, then subtype, then bytes. */
int bq_value_compare(const bson_value_t *a, const bson_value_t *b);

/* bq_value_compare(a, b) == 0. */
bool bq_value_equal(const bson_value_t *a, const bson_value_t *b);

/* Compares two documents as objects (field by field). */
int bq_doc_compare(const bson_t *a, const bson_t *b);


/* ---------------------------------------------------------------- Decimal128 (bq_dec.c) */

/* IEEE 754-2008 decimal128 arithmetic over libbson's BID encoding: 34 digits, results
 * correctly rounded (round half to even), exponent range [-6176, 6111] with overflow to
 * infinity. Results that are exact keep IEEE's preferred exponent (1.0 + 2 = 3.0).
 * Division by zero gives +-Infinity (0/0 gives NaN): callers that must refuse it check
 * first. All of them are total: no errors. */
bson_decimal128_t bq_dec_add(bson_decimal128_t a, bson_decimal128_t b);
bson_decimal128_t bq_dec_sub(bson_decimal128_t a, bson_decimal128_t b);
bson_decimal128_t bq_dec_mul(bson_decimal128_t a, bson_decimal128_t b);
bson_decimal128_t bq_dec_div(bson_decimal128_t a, bson_decimal128_t b);
/* Truncated remainder (sign of a), like C's fmod; NaN when b is 0 or a is infinite. */
bson_decimal128_t bq_dec_mod(bson_decimal128_t a, bson_decimal128_t b);
/* Total numeric order: NaN lowest and equal to NaN, -0 == 0. Returns <0, 0, >0. */
int bq_dec_compare(bson_decimal128_t a, bson_decimal128_t b);
bool bq_dec_is_nan(bson_decimal128_t d);
bool bq_dec_is_inf(bson_decimal128_t d);
bool bq_dec_is_zero(bson_decimal128_t d);
bson_decimal128_t bq_dec_from_int64(int64_t v);
/* Converts a double rounded to `digits` significant digits (1..34). MongoDB converts with
 * 34 digits to compare and with 15 digits for arithmetic ($add of a double and a decimal). */
bson_decimal128_t bq_dec_from_double(double v, int digits);
/* Nearest double (correctly rounded). */
double bq_dec_to_double(bson_decimal128_t d);
/* Truncates toward zero into *out. Returns false (and leaves *out 0) for NaN, infinities
 * and values outside int64. *exact (if not NULL) is set when no fraction was dropped. */
bool bq_dec_to_int64(bson_decimal128_t d, int64_t *out, bool *exact);

/* ---------------------------------------------------------------- numbers (bq_num.c) */

/* True for int32, int64, double and Decimal128 values. */
bool bq_num_is_number(const bson_value_t *v);

/* Arithmetic with MongoDB's result types: int32 op int32 is int32 unless it overflows (then
 * int64); int64 that overflows becomes double; any double makes a double; any Decimal128
 * makes a Decimal128 (doubles converted with 15 digits, as mongod does). *out is a plain
 * value (never owns memory). Errors: TypeMismatch when an operand is not a number;
 * bq_num_div and bq_num_mod fail on division by zero with mongod's codes 16608 and 16610
 * ("can't $divide by zero" / "can't $mod by zero"). bq_num_div always returns a double
 * unless an operand is Decimal128. */
bool bq_num_add(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err);
bool bq_num_sub(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err);
bool bq_num_mul(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err);
bool bq_num_div(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err);
bool bq_num_mod(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err);

/* Value of a number as a double (Decimal128 rounded to nearest). False if not a number. */
bool bq_num_to_double(const bson_value_t *v, double *out);
/* Value of a number truncated toward zero into an int64. Returns false for non-numbers,
 * NaN, infinities and values out of range. *exact (optional) tells whether the value was
 * integral (nothing dropped). */
bool bq_num_to_int64(const bson_value_t *v, int64_t *out, bool *exact);
/* Compares two numbers by value (bq_value_compare restricted to numbers). */
int bq_num_compare(const bson_value_t *a, const bson_value_t *b);
/* True if v is a double NaN or a Decimal128 NaN. */
bool bq_num_is_nan(const bson_value_t *v);
/* Appends v to doc at key as an int32 when it fits, else as an int64: how mongod's
 * appendNumber writes counts and sizes in command replies. */
void bq_num_append(bson_t *doc, const char *key, int64_t v);

/* ---------------------------------------------------------------- paths (bq_path.c) */

/* One value reached by a dotted path, as a query sees it.
 *   value     the value, or NULL when the path is missing at this point (a query's
 *             {a: null} and {$exists: false} need to see those)
 *   in_array  true when the value is an element of an array the walk expanded (implicit
 *             array traversal or leaf-array expansion), false for a value stored directly
 *             at the path (including a whole array reported as itself)
 * Values are borrowed from the document being walked. */
typedef struct bq_path_hit {
    const bson_value_t *value;
    bool in_array;
} bq_path_hit_t;

/* Return true to stop the walk. */
typedef bool (*bq_path_cb)(void *ctx, const bq_path_hit_t *hit);

enum bq_path_flags {
    /* Leaf arrays are reported element by element and then as a whole (query equality
     * semantics). Without this flag a leaf array is reported once, as itself ($size,
     * $elemMatch and $all with $elemMatch need the array). */
    BQ_PATH_EXPAND_LEAF_ARRAYS = 1,
};

/* Walks `path` ("a.b.0.c") through `doc` the way MongoDB's query matcher does:
 *   - an object field is followed by name;
 *   - an array met before the end of the path fans out: each element that is an object is
 *     walked with the rest of the path; when the next component is all digits, the element
 *     at that index is also walked with the component consumed (so "a.0" both indexes the
 *     array and matches fields named "0" in its documents); nested arrays are not fanned
 *     out again;
 *   - a scalar met before the end of the path, or a missing field, reports a missing hit.
 * Calls cb for every hit until it returns true. Returns true if cb stopped the walk. */
bool bq_path_walk(const bson_t *doc, const char *path, int flags, bq_path_cb cb,
                  void *ctx);

/* Same, walking from a value (a document or array value; any other value has no fields
 * and reports one missing hit). */
bool bq_path_walk_value(const bson_value_t *root, const char *path, int flags,
                        bq_path_cb cb, void *ctx);

/* Plain lookup without array fan-out: follows objects, and arrays by numeric index only.
 * Returns true and fills *out (borrowed) when the path exists. */
bool bq_path_get(const bson_t *doc, const char *path, bson_value_t *out);

/* ---------------------------------------------------------------- collation (bq_collation.c) */

/* A MongoDB collation ({locale, strength, caseLevel, caseFirst, numericOrdering,
 * alternate, maxVariable, backwards, normalization}) compiled onto an ICU collator.
 * Immutable once built; shareable between threads. */
typedef struct bq_collation bq_collation_t;

/* Compiles a collation document. {locale: "simple"} is the binary comparison: true with
 * *out NULL. Errors: 40414 missing locale, 40415 unknown field, 14 wrong field types,
 * 9 FailedToParse bad values, 2 BadValue unknown locale. */
bool bq_collation_new(const bson_t *spec, bq_collation_t **out, bq_error_t *err);
/* Collations are reference counted: a matcher or sort compiled with one holds its own
 * reference, so the caller may destroy its reference right away. ref returns c (NULL
 * allowed); destroy drops one reference and frees on the last. */
bq_collation_t *bq_collation_ref(const bq_collation_t *c);
void bq_collation_destroy(bq_collation_t *c);
/* The collation with every field filled in, as mongod reports it. */
const bson_t *bq_collation_spec(const bq_collation_t *c);

/* Makes c the collation of this thread's string comparisons (bq_value_compare) until
 * bq_collation_leave(previous); returns the previous one. Matchers and sorts compiled with
 * a collation do this themselves; callers comparing values directly ($group keys,
 * distinct) use it around their comparisons. */
const bq_collation_t *bq_collation_enter(const bq_collation_t *c);
void bq_collation_leave(const bq_collation_t *prev);

/* ---------------------------------------------------------------- match (bq_match*.c) */

typedef struct bq_match bq_match_t;

/* Compiles a query filter ({a: 1, b: {$gt: 2}, $or: [...]}). Returns a new matcher the
 * caller frees with bq_match_destroy(), or NULL with err set:
 *   BadValue (2)        unknown operators ("unknown operator: $foo", "unknown top level
 *                       operator: $foo"), malformed arguments ("$in needs an array", ...)
 *   NotImplemented(238) $text, geo operators (not built yet); $expr before the
 *                       aggregation layer installed its hooks
 *   TypeMismatch (14), FailedToParse (9) malformed $jsonSchema (bq_match_schema.c)
 *   other codes as mongod uses them (e.g. 51108 for bad regex options).
 * The matcher copies what it needs: `filter` may be destroyed afterwards. A compiled
 * matcher is immutable and may be shared between threads. */
bq_match_t *bq_match_compile(const bson_t *filter, bq_error_t *err);

/* Options for compiling a filter whose $expr needs more than the document:
 *   let         the command's `let` variables ({name: expression}, evaluated once at
 *               compile time) visible to $expr as $$name; or NULL
 *   expr_scope  an aggregation-layer compile scope (agg_scope_t *) in which $expr is
 *               compiled, so a pipeline's $match sees the pipeline's variables; evaluate
 *               such a matcher with bq_match_eval_env and the matching runtime env. NULL
 *               for filters of find/update/delete. */
typedef struct bq_match_opts {
    const bson_t *let;
    void *expr_scope;
    const struct bq_collation *collation; /* string comparisons; NULL: simple (binary).
                                             The matcher takes a reference. */
} bq_match_opts_t;

bq_match_t *bq_match_compile_opts(const bson_t *filter, const bq_match_opts_t *opts,
                                  bq_error_t *err);

/* True when doc matches the filter. A $expr that fails to evaluate counts as no match;
 * use bq_match_eval_env to see the error. */
bool bq_match_eval(const bq_match_t *m, const bson_t *doc);

/* Evaluates with the aggregation layer's runtime env (agg_env_t *, or NULL) for $expr:
 * 1 when doc matches, 0 when not, -1 with err set when a $expr failed to evaluate (mongod
 * fails the whole command then). */
int bq_match_eval_env(const bq_match_t *m, const bson_t *doc, void *expr_env,
                      bq_error_t *err);

/* Frees a matcher; NULL is allowed. */
void bq_match_destroy(bq_match_t *m);

/* Describes why doc does not match, into details (always initialized; the caller destroys
 * it), in the shape of mongod's errInfo.details for document validation: {operatorName,
 * specifiedAs, reason, consideredValue, ...}; {operatorName: "$jsonSchema",
 * schemaRulesNotSatisfied: [...]} for $jsonSchema; {operatorName: "$and",
 * clausesNotSatisfied: [{index, details}]} for several clauses. Meaningful only for a doc
 * the matcher rejects (bq_match_schema.c). */
void bq_match_explain(const bq_match_t *m, const bson_t *doc, bson_t *details);

/* $expr evaluates an aggregation expression, and the expression language lives in
 * aggregation/, a layer above this one. That layer installs these hooks once at startup
 * (agg_install_bq_hooks); until then $expr compiles to NotImplemented.
 *   compile  compiles the $expr argument with the filter's options (let, expr_scope; opts
 *            is never NULL); NULL with err set on a bad expression
 *   matches  evaluates it against doc with the env given to bq_match_eval_env (NULL
 *            otherwise): 1 when the result is truthy, 0 when not, -1 with err set when
 *            evaluation fails
 *   destroy  frees what compile returned */
typedef struct bq_expr_hooks {
    void *(*compile)(const bson_value_t *spec, const bq_match_opts_t *opts, bq_error_t *err);
    int (*matches)(const void *compiled, const bson_t *doc, void *env, bq_error_t *err);
    void (*destroy)(void *compiled);
} bq_expr_hooks_t;

void bq_expr_hooks_install(const bq_expr_hooks_t *hooks);

/* Expressions in find projections ({total: {$add: ["$a", "$b"]}}, {n: "$name"}) come from
 * the same layer: agg_install_bq_hooks installs these too; until then such projections
 * compile to NotImplemented (bq_project.h).
 *   compile  compiles one projected value (an operator document, a "$path" string, an
 *            array) with the command's `let` variables (or NULL) visible as $$name; NULL
 *            with err set on a bad expression, 31325 ("Unknown expression $foo") when the
 *            top-level operator name is not an expression
 *   append   evaluates it against root (the whole document) and appends the result to out
 *            under key; appends nothing when the result is missing ($$REMOVE, a missing
 *            field); false with err set when evaluation fails
 *   destroy  frees what compile returned */
typedef struct bq_project_expr_hooks {
    void *(*compile)(const bson_value_t *spec, const bson_t *let, bq_error_t *err);
    bool (*append)(const void *compiled, const bson_t *root, const char *key, bson_t *out,
                   bq_error_t *err);
    void (*destroy)(void *compiled);
} bq_project_expr_hooks_t;

void bq_project_expr_hooks_install(const bq_project_expr_hooks_t *hooks);

#endif
