/*
 * bq_num.c: numbers as MongoDB computes with them.
 *
 * Owns the result-type rules of arithmetic over int32, int64, double and Decimal128
 * ($add, $subtract, $multiply, $divide, $mod and the update operators $inc and $mul
 * build on these), numeric comparison across types, and conversions with exactness
 * flags. Decimal128 arithmetic itself is bq_dec.c. No errors are logged; failures are
 * reported through bq_error_t.
 */
#include <math.h>

#include "bq_int.h"

enum num_kind { NK_INT32, NK_INT64, NK_DOUBLE, NK_DEC };

bool bq_num_is_number(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        return true;
    default:
        return false;
    }
}

static enum num_kind kind_of(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return NK_INT32;
    case BSON_TYPE_INT64:
        return NK_INT64;
    case BSON_TYPE_DOUBLE:
        return NK_DOUBLE;
    default:
        return NK_DEC;
    }
}

static int64_t as_i64(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 ? v->value.v_int32 : v->value.v_int64;
}

static double as_double(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64:
        return (double)v->value.v_int64;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double;
    default:
        return bq_dec_to_double(v->value.v_decimal128);
    }
}

/* Decimal form of a number for arithmetic: doubles keep 15 digits, as mongod converts. */
static bson_decimal128_t as_dec(const bson_value_t *v, int double_digits)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
        return bq_dec_from_int64(as_i64(v));
    case BSON_TYPE_DOUBLE:
        return bq_dec_from_double(v->value.v_double, double_digits);
    default:
        return v->value.v_decimal128;
    }
}

bool bq_num_is_nan(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_DOUBLE)
        return isnan(v->value.v_double);
    if (v->value_type == BSON_TYPE_DECIMAL128)
        return bq_dec_is_nan(v->value.v_decimal128);
    return false;
}

/* Exact comparison of an int64 with a double (NaN is below every number). */
static int cmp_i64_double(int64_t i, double d)
{
    if (isnan(d))
        return 1;
    if (d < -9223372036854775808.0)
        return 1;
    if (d >= 9223372036854775808.0)
        return -1;
    int64_t t = (int64_t)d; /* truncation; exact for |d| < 2^63 */
    if (i != t)
        return i < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

int bq_num_compare(const bson_value_t *a, const bson_value_t *b)
{
    enum num_kind ka = kind_of(a), kb = kind_of(b);
    if (ka == NK_DEC || kb == NK_DEC)
        return bq_dec_compare(as_dec(a, 34), as_dec(b, 34));
    if (ka == NK_DOUBLE && kb == NK_DOUBLE) {
        double x = a->value.v_double, y = b->value.v_double;
        if (isnan(x) || isnan(y))
            return isnan(x) && isnan(y) ? 0 : isnan(x) ? -1 : 1;
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (ka == NK_DOUBLE)
        return -cmp_i64_double(as_i64(b), a->value.v_double);
    if (kb == NK_DOUBLE)
        return cmp_i64_double(as_i64(a), b->value.v_double);
    int64_t x = as_i64(a), y = as_i64(b);
    return x < y ? -1 : x > y ? 1 : 0;
}

static void set_int(bson_value_t *out, int64_t v, bool both_int32)
{
    if (both_int32 && v >= INT32_MIN && v <= INT32_MAX) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = (int32_t)v;
    } else {
        out->value_type = BSON_TYPE_INT64;
        out->value.v_int64 = v;
    }
}

static void set_double(bson_value_t *out, double d)
{
    out->value_type = BSON_TYPE_DOUBLE;
    out->value.v_double = d;
}

static void set_dec(bson_value_t *out, bson_decimal128_t d)
{
    out->value_type = BSON_TYPE_DECIMAL128;
    out->value.v_decimal128 = d;
}

enum arith_op { OP_ADD, OP_SUB, OP_MUL };

static bool check_numbers(const bson_value_t *a, const bson_value_t *b, const char *what,
                          bson_value_t *out, bq_error_t *err)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_NULL;
    if (!bq_num_is_number(a) || !bq_num_is_number(b)) {
        const bson_value_t *bad = bq_num_is_number(a) ? b : a;
        bq_error_set(err, BQ_ERR_TypeMismatch, "%s only supports numeric types, not %s",
                     what, bq_type_name(bad->value_type));
        return false;
    }
    return true;
}

static bool arith(enum arith_op op, const bson_value_t *a, const bson_value_t *b,
                  bson_value_t *out, bq_error_t *err)
{
    static const char *names[] = {"$add", "$subtract", "$multiply"};
    if (!check_numbers(a, b, names[op], out, err))
        return false;
    enum num_kind ka = kind_of(a), kb = kind_of(b);
    if (ka == NK_DEC || kb == NK_DEC) {
        bson_decimal128_t x = as_dec(a, 15), y = as_dec(b, 15);
        set_dec(out, op == OP_ADD   ? bq_dec_add(x, y)
                     : op == OP_SUB ? bq_dec_sub(x, y)
                                    : bq_dec_mul(x, y));
        return true;
    }
    if (ka == NK_DOUBLE || kb == NK_DOUBLE) {
        double x = as_double(a), y = as_double(b);
        set_double(out, op == OP_ADD ? x + y : op == OP_SUB ? x - y : x * y);
        return true;
    }
    int64_t x = as_i64(a), y = as_i64(b), r;
    bool ovf = op == OP_ADD   ? __builtin_add_overflow(x, y, &r)
               : op == OP_SUB ? __builtin_sub_overflow(x, y, &r)
                              : __builtin_mul_overflow(x, y, &r);
    if (ovf) {
        double dx = (double)x, dy = (double)y;
        set_double(out, op == OP_ADD ? dx + dy : op == OP_SUB ? dx - dy : dx * dy);
        return true;
    }
    set_int(out, r, ka == NK_INT32 && kb == NK_INT32);
    return true;
}

bool bq_num_add(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err)
{
    return arith(OP_ADD, a, b, out, err);
}

bool bq_num_sub(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err)
{
    return arith(OP_SUB, a, b, out, err);
}

bool bq_num_mul(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err)
{
    return arith(OP_MUL, a, b, out, err);
}

static bool is_zero(const bson_value_t *v)
{
    switch (kind_of(v)) {
    case NK_INT32:
    case NK_INT64:
        return as_i64(v) == 0;
    case NK_DOUBLE:
        return v->value.v_double == 0;
    default:
        return bq_dec_is_zero(v->value.v_decimal128);
    }
}

bool bq_num_div(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err)
{
    if (!check_numbers(a, b, "$divide", out, err))
        return false;
    if (is_zero(b)) {
        bq_error_set(err, 16608, "can't $divide by zero");
        return false;
    }
    if (kind_of(a) == NK_DEC || kind_of(b) == NK_DEC)
        set_dec(out, bq_dec_div(as_dec(a, 15), as_dec(b, 15)));
    else
        set_double(out, as_double(a) / as_double(b));
    return true;
}

bool bq_num_mod(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                bq_error_t *err)
{
    if (!check_numbers(a, b, "$mod", out, err))
        return false;
    if (is_zero(b)) {
        bq_error_set(err, 16610, "can't $mod by zero");
        return false;
    }
    enum num_kind ka = kind_of(a), kb = kind_of(b);
    if (ka == NK_DEC || kb == NK_DEC) {
        set_dec(out, bq_dec_mod(as_dec(a, 15), as_dec(b, 15)));
    } else if (ka == NK_DOUBLE || kb == NK_DOUBLE) {
        set_double(out, fmod(as_double(a), as_double(b)));
    } else {
        int64_t x = as_i64(a), y = as_i64(b);
        set_int(out, y == -1 ? 0 : x % y, ka == NK_INT32 && kb == NK_INT32);
    }
    return true;
}

bool bq_num_to_double(const bson_value_t *v, double *out)
{
    *out = 0;
    if (!bq_num_is_number(v))
        return false;
    *out = as_double(v);
    return true;
}

bool bq_num_to_int64(const bson_value_t *v, int64_t *out, bool *exact)
{
    *out = 0;
    if (exact)
        *exact = false;
    switch (kind_of(v)) {
    case NK_INT32:
    case NK_INT64:
        if (!bq_num_is_number(v))
            return false;
        *out = as_i64(v);
        if (exact)
            *exact = true;
        return true;
    case NK_DOUBLE: {
        double d = v->value.v_double;
        if (isnan(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return false;
        *out = (int64_t)d;
        if (exact)
            *exact = trunc(d) == d;
        return true;
    }
    default:
        if (v->value_type != BSON_TYPE_DECIMAL128)
            return false;
        return bq_dec_to_int64(v->value.v_decimal128, out, exact);
    }
}

void bq_num_append(bson_t *doc, const char *key, int64_t v)
{
    if (v >= INT32_MIN && v <= INT32_MAX)
        BSON_APPEND_INT32(doc, key, (int32_t)v);
    else
        BSON_APPEND_INT64(doc, key, v);
}
