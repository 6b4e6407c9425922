/*
 * agg_acc.h: accumulators, MongoDB 7.0 semantics, shared by $group / $bucket /
 * $bucketAuto (agg_stage_group.c), $setWindowFields (agg_stage_window.c) and the
 * expression forms of $sum, $avg, ... (agg_expr_acc.c).
 *
 * An accumulator is compiled once from {$op: arg} into an immutable agg_acc_t: the
 * argument expression(s) compiled against the stage's scope ($topN's output, sortBy and
 * n; $percentile's input and p; ...). Documents are then folded into a per-group state:
 *
 *     st = agg_acc_state_new(acc, env, err)     env's ROOT: the group key (see below)
 *     for each document of the group:
 *         agg_acc_add_doc(acc, st, env, &mem, err)    (= agg_acc_input + agg_acc_add)
 *     agg_acc_result(acc, st, &value, err)
 *     agg_acc_state_destroy(st)
 *
 * Window functions also take values out: agg_acc_remove() removes the OLDEST value still
 * in the state (windows slide forward, so removals come in the order of the adds). Every
 * accumulator supports it on a state created with agg_acc_state_new_window(); such a state
 * keeps the inputs it holds and agg_acc_result() recomputes from them (mongod's removable
 * $sum/$avg/$stdDev*... give the same values).
 *
 * Inputs. agg_acc_input() evaluates the argument(s) for one document into one value the
 * caller owns: the plain value for most accumulators (EOD when missing), an internal pair
 * for $top/$bottom/$topN/$bottomN (sort key and output). Callers treat it as opaque and
 * hand it to agg_acc_add / agg_acc_remove.
 *
 * Memory. add/remove adjust *mem (may be NULL) by the bytes the state holds more or less,
 * roughly; the stage charges them with agg_mem_charge() (292 without allowDiskUse).
 *
 * Errors are mongod's codes: 15952 unknown group operator, 40237 ... per accumulator;
 * $firstN family 5787801/5787900/5787901/5787902/5787903/5787906/5787907/5787908; $top
 * family 5788001-5788005;
 * $mergeObjects 40400; $percentile 7429703/7750300-7750303/40414/40415 (see agg_acc.c).
 */
#ifndef AGG_ACC_H
#define AGG_ACC_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "agg_expr.h"

typedef struct agg_acc agg_acc_t;
typedef struct agg_acc_state agg_acc_state_t;

/* Where an accumulator is used: some are refused in some places (mongod: $count is an
 * accumulator in $group and a window function; $median/$percentile everywhere). */
enum agg_acc_ctx {
    AGG_ACC_GROUP = 0,  /* $group, $bucket, $bucketAuto output */
    AGG_ACC_WINDOW = 1, /* $setWindowFields output */
};

/* True when `name` ("$sum") is an accumulator this file implements. */
bool agg_acc_exists(const char *name);

/* Compiles the accumulator `name` with its argument `arg` (the value of {$op: arg}) in
 * scope. Returns a new accumulator the caller frees with agg_acc_destroy, or NULL with
 * err set: 15952 for an unknown name ("unknown group operator '$x'"), the accumulator's
 * own argument errors, and expression compile errors. */
agg_acc_t *agg_acc_compile(const char *name, const bson_value_t *arg, agg_scope_t *scope,
                           enum agg_acc_ctx ctx, bq_error_t *err);

/* Compiles one field of a $group/$bucket output spec: `spec` must be a document with
 * exactly one field naming an accumulator ({field: {$sum: "$x"}}). Errors: 40234 not a
 * document ("The field 'f' must be an accumulator object"), 40238 not exactly one field
 * ("The field 'f' must specify one accumulator"), 15952 unknown operator. */
agg_acc_t *agg_acc_compile_field(const char *field, const bson_value_t *spec,
                                 agg_scope_t *scope, bq_error_t *err);

/* Frees an accumulator; NULL is allowed. */
void agg_acc_destroy(agg_acc_t *a);

/* The accumulator's name ("$sum"), borrowed. */
const char *agg_acc_name(const agg_acc_t *a);

/* A new empty state for one group. Evaluates what the accumulator evaluates once per
 * group ($firstN's n, $topN's n) with env as it is: mongod evaluates it against the group
 * key, so $group sets ROOT to the _id when it is a document (else to an empty document),
 * $bucketAuto to an empty document. Returns NULL with err set when such a value is invalid (5787902 n not
 * integral, 5787908 n <= 0, ...). */
agg_acc_state_t *agg_acc_state_new(const agg_acc_t *a, agg_env_t *env, bq_error_t *err);

/* Same for a window: the state keeps its inputs so that agg_acc_remove works. */
agg_acc_state_t *agg_acc_state_new_window(const agg_acc_t *a, agg_env_t *env,
                                          bq_error_t *err);

/* Frees a state; NULL is allowed. */
void agg_acc_state_destroy(agg_acc_state_t *st);

/* Evaluates the accumulator's argument(s) for the document in env into *in (always
 * initialized, owned by the caller, release with agg_value_cleanup). False with err on an
 * evaluation error. */
bool agg_acc_input(const agg_acc_t *a, agg_env_t *env, bson_value_t *in, bq_error_t *err);

/* Adds one input (from agg_acc_input; borrowed, copied as needed) to the state. *mem (may
 * be NULL) grows by the bytes the state now holds more. Errors: $mergeObjects 40400 on a
 * non-document, ... */
bool agg_acc_add(const agg_acc_t *a, agg_acc_state_t *st, const bson_value_t *in,
                 int64_t *mem, bq_error_t *err);

/* agg_acc_input then agg_acc_add. */
bool agg_acc_add_doc(const agg_acc_t *a, agg_acc_state_t *st, agg_env_t *env, int64_t *mem,
                     bq_error_t *err);

/* Removes the oldest input still in a window state (one made by agg_acc_state_new_window);
 * `in` is that input again (it may be used to check, never required). *mem shrinks. */
bool agg_acc_remove(const agg_acc_t *a, agg_acc_state_t *st, const bson_value_t *in,
                    int64_t *mem, bq_error_t *err);

/* The accumulated value, into *out (always initialized; owned by the caller). The state
 * is unchanged: the result may be asked for again after more adds/removes. Empty states
 * give what mongod gives for an empty group or window ($sum 0, $avg null, $push [], ...). */
bool agg_acc_result(const agg_acc_t *a, const agg_acc_state_t *st, bson_value_t *out,
                    bq_error_t *err);

/* ---------------------------------------------------------------- expression forms */

/* Folds n values as the expression form of an accumulator does ({$sum: [1, 2]},
 * {$avg: "$arr"} ...): name is one of $sum $avg $min $max $stdDevPop $stdDevSamp;
 * values are borrowed. Result into *out (owned). */
bool agg_acc_fold(const char *name, const bson_value_t *vals, size_t n, bson_value_t *out,
                  bq_error_t *err);

/* The expression forms of $median / $percentile: `a` compiled with agg_acc_compile, `input`
 * the value of its input (agg_acc_input). A number gives that number for every p, an array
 * the percentiles of its numeric elements, anything else (or no numbers) null / an array of
 * nulls. Result into *out (owned). */
bool agg_acc_quantile_value(const agg_acc_t *a, const bson_value_t *input, bson_value_t *out,
                            bq_error_t *err);

#endif
