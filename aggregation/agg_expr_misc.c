/*
 * agg_expr_misc.c: the remaining operators. $rand (never folded), $binarySize, $bsonSize,
 * $meta (no metadata is produced yet: every known name is NotImplemented), trigonometry
 * ($sin $cos $tan $asin $acos $atan $atan2 $sinh $cosh $tanh $asinh $acosh $atanh) and
 * angle conversion ($degreesToRadians $radiansToDegrees).
 *
 * Trigonometry is computed in double precision; a Decimal128 argument gives a Decimal128
 * result converted from the double (mongod computes those in decimal). Arguments outside
 * a function's domain fail with 50989, as mongod's bounds checks do.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "agg_expr_int.h"

/* ---------------------------------------------------------------- $rand */

static bool compile_rand(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                         bq_error_t *err)
{
    (void)scope;
    if (arg->value_type != BSON_TYPE_DOCUMENT || agg__array_len(arg) != 0) {
        bq_error_set(err, 3040500, "$rand does not currently accept arguments");
        return false;
    }
    e->nargs = 0;
    return true;
}

static bool eval_rand(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    (void)e;
    (void)err;
    if (env->rand_state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        env->rand_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
                          (uint64_t)(uintptr_t)env ^ 0x9e3779b97f4a7c15ULL;
    }
    /* xorshift64* */
    uint64_t x = env->rand_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    env->rand_state = x;
    uint64_t r = x * 0x2545f4914f6cdd1dULL;
    agg__set_double(out, (double)(r >> 11) * (1.0 / 9007199254740992.0));
    return true;
}

/* ---------------------------------------------------------------- sizes */

static bool eval_binary_size(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                             bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v))
        agg__set_null(out);
    else if (v.value_type == BSON_TYPE_UTF8)
        agg__set_int32(out, (int32_t)v.value.v_utf8.len);
    else if (v.value_type == BSON_TYPE_BINARY)
        agg__set_int32(out, (int32_t)v.value.v_binary.data_len);
    else {
        bq_error_set(err, 51276, "$binarySize requires a string or BinData argument, found: %s",
                     agg__type_name(&v));
        ok = false;
    }
    agg_value_cleanup(&v);
    return ok;
}

static bool eval_bson_size(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                           bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v))
        agg__set_null(out);
    else if (v.value_type == BSON_TYPE_DOCUMENT)
        agg__set_int32(out, (int32_t)v.value.v_doc.data_len);
    else {
        bq_error_set(err, 31393, "$bsonSize requires a document input, found: %s",
                     agg__type_name(&v));
        ok = false;
    }
    agg_value_cleanup(&v);
    return ok;
}

/* ---------------------------------------------------------------- $meta */

static bool compile_meta(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                         bq_error_t *err)
{
    (void)e;
    (void)scope;
    static const char *const known[] = {
        "textScore",   "randVal",      "searchScore", "searchHighlights", "geoNearDistance",
        "geoNearPoint", "recordId",    "indexKey",    "sortKey",          "searchScoreDetails",
        "searchSequenceToken", "vectorSearchScore",
    };
    if (arg->value_type == BSON_TYPE_UTF8)
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(arg->value.v_utf8.str, known[i]) == 0) {
                bq_error_set(err, BQ_ERR_NotImplemented, "$meta: \"%s\" is not supported yet",
                             known[i]);
                return false;
            }
    bq_error_set(err, 17308, "Unsupported argument to $meta: %s",
                 arg->value_type == BSON_TYPE_UTF8 ? arg->value.v_utf8.str
                                                   : agg__type_name(arg));
    return false;
}

static bool eval_meta(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    (void)e;
    (void)env;
    (void)out;
    bq_error_set(err, BQ_ERR_NotImplemented, "$meta is not supported yet");
    return false;
}

/* ---------------------------------------------------------------- trigonometry */

enum bound { B_NONE, B_FINITE, B_UNIT, B_GE1, B_OPEN_UNIT };

typedef struct trig {
    const char *name;
    double (*fn)(double);
    enum bound bound;
} trig_t;

static double deg2rad(double d) { return d * (M_PI / 180.0); }
static double rad2deg(double r) { return r * (180.0 / M_PI); }

static const trig_t trigs[] = {
    {"$sin", sin, B_FINITE},      {"$cos", cos, B_FINITE},       {"$tan", tan, B_FINITE},
    {"$asin", asin, B_UNIT},      {"$acos", acos, B_UNIT},       {"$atan", atan, B_NONE},
    {"$sinh", sinh, B_NONE},      {"$cosh", cosh, B_NONE},       {"$tanh", tanh, B_NONE},
    {"$asinh", asinh, B_NONE},    {"$acosh", acosh, B_GE1},      {"$atanh", atanh, B_UNIT},
    {"$degreesToRadians", deg2rad, B_NONE}, {"$radiansToDegrees", rad2deg, B_NONE},
};

static bool eval_trig(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    const trig_t *t = NULL;
    for (size_t i = 0; i < sizeof trigs / sizeof trigs[0]; i++)
        if (strcmp(trigs[i].name, e->op->name) == 0)
            t = &trigs[i];
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    if (agg__nullish(&v)) {
        agg__set_null(out);
        return true;
    }
    if (!bq_num_is_number(&v)) {
        bq_error_set(err, 28765, "%s only supports numeric types, not %s", t->name,
                     agg__type_name(&v));
        agg_value_cleanup(&v);
        return false;
    }
    double d;
    bq_num_to_double(&v, &d);
    bool in = true;
    switch (t->bound) {
    case B_NONE: break;
    case B_FINITE: in = isnan(d) || !isinf(d); break;
    case B_UNIT: in = isnan(d) || (d >= -1 && d <= 1); break;
    case B_GE1: in = isnan(d) || d >= 1; break;
    case B_OPEN_UNIT: in = isnan(d) || (d > -1 && d < 1); break;
    }
    if (!in) {
        bq_error_set(err, 50989, "cannot apply %s to %g, value must be in its domain", t->name, d);
        return false;
    }
    double r = t->fn(d);
    if (v.value_type == BSON_TYPE_DECIMAL128) {
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = bq_dec_from_double(r, 15);
    } else {
        agg__set_double(out, r);
    }
    return true;
}

static bool eval_atan2(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0]) || agg__nullish(&v[1])) {
        agg__set_null(out);
        goto done;
    }
    if (!bq_num_is_number(&v[0]) || !bq_num_is_number(&v[1])) {
        bq_error_set(err, 51044, "$atan2 only supports numeric types, not %s and %s",
                     agg__type_name(&v[0]), agg__type_name(&v[1]));
        ok = false;
        goto done;
    }
    double y, x;
    bq_num_to_double(&v[0], &y);
    bq_num_to_double(&v[1], &x);
    if (v[0].value_type == BSON_TYPE_DECIMAL128 || v[1].value_type == BSON_TYPE_DECIMAL128) {
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = bq_dec_from_double(atan2(y, x), 15);
    } else {
        agg__set_double(out, atan2(y, x));
    }
done:
    agg__values_cleanup(v, 2);
    return ok;
}

const agg__op_t agg__ops_misc[] = {
    {"$rand", compile_rand, eval_rand, 0, 0, 0},
    {"$binarySize", NULL, eval_binary_size, 1, 1, AGG__FOLD},
    {"$bsonSize", NULL, eval_bson_size, 1, 1, AGG__FOLD},
    {"$meta", compile_meta, eval_meta, 0, 0, 0},
    {"$sin", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$cos", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$tan", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$asin", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$acos", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$atan", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$atan2", NULL, eval_atan2, 2, 2, AGG__FOLD},
    {"$sinh", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$cosh", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$tanh", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$asinh", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$acosh", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$atanh", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$degreesToRadians", NULL, eval_trig, 1, 1, AGG__FOLD},
    {"$radiansToDegrees", NULL, eval_trig, 1, 1, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
