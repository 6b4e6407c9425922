/*
 * agg_expr_arith.c: arithmetic expression operators. $add (numbers and at most one date),
 * $subtract (numbers, date - number, date - date), $multiply, $divide, $mod, $abs, $ceil,
 * $floor, $round, $trunc, $exp, $ln, $log, $log10, $pow, $sqrt.
 *
 * Result types follow mongod: int32 stays int32 until it overflows (then int64, then
 * double), any double makes a double, any Decimal128 makes a Decimal128; the pairwise
 * rules live in bsonq's bq_num_*. Rounding of Decimal128 ($round, $trunc, $ceil, $floor)
 * works on the BID encoding directly (coefficient and exponent). A null or missing operand
 * gives null. Errors carry mongod's location codes (16554, 16555, 16556, 16608, ...).
 * Transcendental functions of a Decimal128 are computed in double precision and converted
 * back (mongod uses a full decimal library): the last digits can differ.
 */
#include <math.h>
#include <string.h>

#include "agg_expr_int.h"

/* ---------------------------------------------------------------- Decimal128 rounding */

typedef unsigned __int128 u128;

enum dec_mode { DEC_HALF_EVEN, DEC_TRUNC, DEC_FLOOR, DEC_CEIL };

static u128 pow10_u128(int k)
{
    u128 r = 1;
    while (k-- > 0)
        r *= 10;
    return r;
}

/* Rounds d to `place` decimal places (negative: tens, hundreds, ...). The result has
 * exponent -place when digits were dropped; values already coarse enough are unchanged. */
static bson_decimal128_t dec_round(bson_decimal128_t d, int place, enum dec_mode mode)
{
    uint64_t hi = d.high, lo = d.low;
    bool neg = hi >> 63;
    int exp;
    u128 coef;
    if (((hi >> 61) & 3) == 3) {
        if (((hi >> 58) & 0x1f) >= 0x1e)
            return d; /* infinity or NaN */
        exp = (int)((hi >> 47) & 0x3fff) - 6176;
        coef = 0;
    } else {
        exp = (int)((hi >> 49) & 0x3fff) - 6176;
        coef = ((u128)(hi & ((1ULL << 49) - 1)) << 64) | lo;
    }
    if (exp >= -place)
        return d;
    int k = -place - exp;
    u128 q, r, div;
    bool above_half, half;
    if (k > 36) {
        q = 0;
        r = coef;
        above_half = false;
        half = false;
    } else {
        div = pow10_u128(k);
        q = coef / div;
        r = coef % div;
        u128 h = div / 2;
        above_half = r > h;
        half = r == h;
    }
    bool up = false;
    switch (mode) {
    case DEC_HALF_EVEN:
        up = above_half || (half && (q & 1));
        break;
    case DEC_TRUNC:
        break;
    case DEC_FLOOR:
        up = neg && r != 0;
        break;
    case DEC_CEIL:
        up = !neg && r != 0;
        break;
    }
    if (up)
        q++;
    int nexp = -place;
    bson_decimal128_t o;
    o.high = ((uint64_t)neg << 63) | ((uint64_t)(nexp + 6176) << 49) | (uint64_t)(q >> 64);
    o.low = (uint64_t)q;
    return o;
}

static bson_decimal128_t dec_abs(bson_decimal128_t d)
{
    d.high &= ~(1ULL << 63);
    return d;
}

/* ---------------------------------------------------------------- helpers */

static bool numeric_or_null(const bson_value_t *v, const char *op, bson_value_t *out,
                            bq_error_t *err)
{
    (void)out;
    if (!bq_num_is_number(v)) {
        bq_error_set(err, 28765, "%s only supports numeric types, not %s", op,
                     agg__type_name(v));
        return false;
    }
    return true;
}

/* Rounds a double to nearest, ties to even, then to int64 (for date arithmetic). */
static bool date_offset(const bson_value_t *v, int64_t *ms)
{
    if (v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64)
        return bq_num_to_int64(v, ms, NULL);
    double d;
    bq_num_to_double(v, &d);
    d = nearbyint(d);
    if (isnan(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
        return false;
    *ms = (int64_t)d;
    return true;
}

/* ---------------------------------------------------------------- $add $subtract */

static bool eval_add(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t sum = {.value_type = BSON_TYPE_INT32};
    sum.value.v_int32 = 0;
    bool have_date = false;
    int64_t date = 0;
    for (int i = 0; i < e->nargs; i++) {
        bson_value_t v;
        if (!agg__eval_arg(e, i, env, &v, err))
            return false;
        if (agg__nullish(&v)) {
            agg_value_cleanup(&v);
            agg__set_null(out);
            return true;
        }
        if (v.value_type == BSON_TYPE_DATE_TIME) {
            if (have_date) {
                bq_error_set(err, 16612, "only one date allowed in an $add expression");
                return false;
            }
            have_date = true;
            date = v.value.v_datetime;
            continue;
        }
        if (!bq_num_is_number(&v)) {
            bq_error_set(err, 16554, "$add only supports numeric or date types, not %s",
                         agg__type_name(&v));
            agg_value_cleanup(&v);
            return false;
        }
        bson_value_t r;
        bq_num_add(&sum, &v, &r, err);
        sum = r;
    }
    if (have_date) {
        int64_t off;
        if (!date_offset(&sum, &off) || __builtin_add_overflow(date, off, &date)) {
            bq_error_set(err, BQ_ERR_Overflow, "date overflow in $add");
            return false;
        }
        agg__set_date(out, date);
        return true;
    }
    *out = sum;
    return true;
}

static bool eval_subtract(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (bq_num_is_number(&v[0]) && bq_num_is_number(&v[1])) {
        ok = bq_num_sub(&v[0], &v[1], out, err);
    } else if (agg__nullish(&v[0]) || agg__nullish(&v[1])) {
        agg__set_null(out);
    } else if (v[0].value_type == BSON_TYPE_DATE_TIME) {
        if (v[1].value_type == BSON_TYPE_DATE_TIME) {
            agg__set_int64(out, v[0].value.v_datetime - v[1].value.v_datetime);
        } else if (bq_num_is_number(&v[1])) {
            int64_t off;
            if (!date_offset(&v[1], &off)) {
                bq_error_set(err, BQ_ERR_Overflow, "date overflow in $subtract");
                ok = false;
            } else {
                agg__set_date(out, v[0].value.v_datetime - off);
            }
        } else {
            bq_error_set(err, 16613, "cant $subtract a %s from a Date", agg__type_name(&v[1]));
            ok = false;
        }
    } else {
        bq_error_set(err, 16556, "cant $subtract a %s from a %s", agg__type_name(&v[1]),
                     agg__type_name(&v[0]));
        ok = false;
    }
done:
    agg__values_cleanup(v, 2);
    return ok;
}

/* ---------------------------------------------------------------- $multiply $divide $mod */

static bool eval_multiply(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    bson_value_t prod = {.value_type = BSON_TYPE_INT32};
    prod.value.v_int32 = 1;
    for (int i = 0; i < e->nargs; i++) {
        bson_value_t v;
        if (!agg__eval_arg(e, i, env, &v, err))
            return false;
        if (agg__nullish(&v)) {
            agg_value_cleanup(&v);
            agg__set_null(out);
            return true;
        }
        if (!bq_num_is_number(&v)) {
            bq_error_set(err, 16555, "$multiply only supports numeric types, not %s",
                         agg__type_name(&v));
            agg_value_cleanup(&v);
            return false;
        }
        bson_value_t r;
        bq_num_mul(&prod, &v, &r, err);
        prod = r;
    }
    *out = prod;
    return true;
}

static bool eval_div_mod(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                         bq_error_t *err, bool is_mod)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0]) || agg__nullish(&v[1])) {
        agg__set_null(out);
    } else if (!bq_num_is_number(&v[0]) || !bq_num_is_number(&v[1])) {
        bq_error_set(err, is_mod ? 16611 : 16609, "%s only supports numeric types, not %s and %s",
                     is_mod ? "$mod" : "$divide", agg__type_name(&v[0]), agg__type_name(&v[1]));
        ok = false;
    } else {
        ok = is_mod ? bq_num_mod(&v[0], &v[1], out, err) : bq_num_div(&v[0], &v[1], out, err);
        if (!ok)
            agg_value_cleanup(out);
    }
done:
    agg__values_cleanup(v, 2);
    return ok;
}

static bool eval_divide(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err)
{
    return eval_div_mod(e, env, out, err, false);
}

static bool eval_mod(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_div_mod(e, env, out, err, true);
}

/* ---------------------------------------------------------------- one-number operators */

static bool eval_abs(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    if (agg__nullish(&v)) {
        agg__set_null(out);
        return true;
    }
    if (!numeric_or_null(&v, "$abs", out, err)) {
        agg_value_cleanup(&v);
        return false;
    }
    switch (v.value_type) {
    case BSON_TYPE_INT32:
        if (v.value.v_int32 == INT32_MIN)
            agg__set_int64(out, -(int64_t)INT32_MIN);
        else
            agg__set_int32(out, v.value.v_int32 < 0 ? -v.value.v_int32 : v.value.v_int32);
        break;
    case BSON_TYPE_INT64:
        if (v.value.v_int64 == INT64_MIN) {
            bq_error_set(err, 28680, "can't take $abs of long long min");
            return false;
        }
        agg__set_int64(out, v.value.v_int64 < 0 ? -v.value.v_int64 : v.value.v_int64);
        break;
    case BSON_TYPE_DOUBLE:
        agg__set_double(out, fabs(v.value.v_double));
        break;
    default:
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = dec_abs(v.value.v_decimal128);
        break;
    }
    return true;
}

static bool eval_ceil_floor(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                            bq_error_t *err, bool ceil_)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    if (agg__nullish(&v)) {
        agg__set_null(out);
        return true;
    }
    if (!numeric_or_null(&v, ceil_ ? "$ceil" : "$floor", out, err)) {
        agg_value_cleanup(&v);
        return false;
    }
    *out = v;
    if (v.value_type == BSON_TYPE_DOUBLE)
        out->value.v_double = ceil_ ? ceil(v.value.v_double) : floor(v.value.v_double);
    else if (v.value_type == BSON_TYPE_DECIMAL128)
        out->value.v_decimal128 =
            dec_round(v.value.v_decimal128, 0, ceil_ ? DEC_CEIL : DEC_FLOOR);
    return true;
}

static bool eval_ceil(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_ceil_floor(e, env, out, err, true);
}

static bool eval_floor(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_ceil_floor(e, env, out, err, false);
}

/* Rounds an integer to a negative place (tens, hundreds, ...). */
static bool int_round(int64_t x, int place, bool trunc_, int64_t *out)
{
    if (place >= 0) {
        *out = x;
        return true;
    }
    if (place < -18) {
        *out = 0;
        return true;
    }
    int64_t p = 1;
    for (int i = 0; i < -place; i++)
        p *= 10;
    int64_t q = x / p, r = x % p;
    if (!trunc_) {
        int64_t ar = r < 0 ? -r : r;
        if (ar * 2 > p || (ar * 2 == p && (q & 1)))
            q += x < 0 ? -1 : 1;
    }
    return !__builtin_mul_overflow(q, p, out);
}

static bool eval_round_trunc(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                             bq_error_t *err, bool trunc_)
{
    const char *name = trunc_ ? "$trunc" : "$round";
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    int32_t place = 0;
    if (!ok)
        goto done;
    if (agg__nullish(&v[0])) {
        agg__set_null(out);
        goto done;
    }
    if (!bq_num_is_number(&v[0])) {
        bq_error_set(err, 51081, "%s only supports numeric types, not %s", name,
                     agg__type_name(&v[0]));
        ok = false;
        goto done;
    }
    if (e->nargs > 1) {
        if (agg__nullish(&v[1])) {
            agg__set_null(out);
            goto done;
        }
        int64_t p;
        if (!bq_num_is_number(&v[1]) || !agg__as_int64_exact(&v[1], &p)) {
            bq_error_set(err, 51082, "precision argument to  %s must be a integral value", name);
            ok = false;
            goto done;
        }
        if (p < -20 || p > 100) {
            bq_error_set(err, 51083,
                         "cannot apply %s with precision value %lld value must be in [-20, 100]",
                         name, (long long)p);
            ok = false;
            goto done;
        }
        place = (int32_t)p;
    }
    switch (v[0].value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64: {
        int64_t x = v[0].value_type == BSON_TYPE_INT32 ? v[0].value.v_int32 : v[0].value.v_int64;
        int64_t r;
        if (!int_round(x, place, trunc_, &r)) {
            bq_error_set(err, 51080, "invalid conversion from Decimal128 result in %s resulting "
                                     "from arguments: [%lld, %d]",
                         name, (long long)x, place);
            ok = false;
        } else if (v[0].value_type == BSON_TYPE_INT32 && r >= INT32_MIN && r <= INT32_MAX)
            agg__set_int32(out, (int32_t)r);
        else
            agg__set_int64(out, r);
        break;
    }
    case BSON_TYPE_DOUBLE: {
        double d = v[0].value.v_double;
        if (isnan(d) || isinf(d))
            agg__set_double(out, d);
        else if (place == 0)
            agg__set_double(out, trunc_ ? trunc(d) : nearbyint(d));
        else {
            bson_decimal128_t x = bq_dec_from_double(d, 34);
            x = dec_round(x, place, trunc_ ? DEC_TRUNC : DEC_HALF_EVEN);
            agg__set_double(out, bq_dec_to_double(x));
        }
        break;
    }
    default:
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 =
            dec_round(v[0].value.v_decimal128, place, trunc_ ? DEC_TRUNC : DEC_HALF_EVEN);
        break;
    }
done:
    agg__values_cleanup(v, e->nargs);
    return ok;
}

static bool eval_round(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_round_trunc(e, env, out, err, false);
}

static bool eval_trunc(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_round_trunc(e, env, out, err, true);
}

/* Double functions of one number: $exp $ln $log10 $sqrt. Domain checks per operator. */
typedef struct unary_fn {
    const char *name;
    double (*fn)(double);
    int domain_code;     /* 0: no domain check */
    bool positive;       /* argument must be > 0 (else >= 0) */
    const char *domain_msg;
} unary_fn_t;

static const unary_fn_t fn_exp = {"$exp", exp, 0, false, NULL};
static const unary_fn_t fn_ln = {"$ln", log, 28766, true,
                                 "$ln's argument must be a positive number, but is"};
static const unary_fn_t fn_log10 = {"$log10", log10, 28761, true,
                                    "$log10's argument must be a positive number, but is"};
static const unary_fn_t fn_sqrt = {"$sqrt", sqrt, 28714, false,
                                   "$sqrt's argument must be greater than or equal to 0"};

static bool eval_unary(const unary_fn_t *f, const agg_expr_t *e, agg_env_t *env,
                       bson_value_t *out, bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    if (agg__nullish(&v)) {
        agg__set_null(out);
        return true;
    }
    if (!numeric_or_null(&v, f->name, out, err)) {
        agg_value_cleanup(&v);
        return false;
    }
    double d;
    bq_num_to_double(&v, &d);
    if (f->domain_code && !isnan(d) && (f->positive ? !(d > 0) : d < 0)) {
        if (f->positive)
            bq_error_set(err, f->domain_code, "%s %g", f->domain_msg, d);
        else
            bq_error_set(err, f->domain_code, "%s", f->domain_msg);
        return false;
    }
    double r = f->fn(d);
    if (v.value_type == BSON_TYPE_DECIMAL128) {
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = bq_dec_from_double(r, 15);
    } else {
        agg__set_double(out, r);
    }
    return true;
}

static bool eval_exp(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_unary(&fn_exp, e, env, out, err);
}
static bool eval_ln(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_unary(&fn_ln, e, env, out, err);
}
static bool eval_log10(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_unary(&fn_log10, e, env, out, err);
}
static bool eval_sqrt(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_unary(&fn_sqrt, e, env, out, err);
}

static bool eval_log(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0]) || agg__nullish(&v[1])) {
        agg__set_null(out);
        goto done;
    }
    ok = false;
    if (!bq_num_is_number(&v[0])) {
        bq_error_set(err, 28756, "$log's argument must be numeric, not %s", agg__type_name(&v[0]));
        goto done;
    }
    if (!bq_num_is_number(&v[1])) {
        bq_error_set(err, 28757, "$log's base must be numeric, not %s", agg__type_name(&v[1]));
        goto done;
    }
    double x, b;
    bq_num_to_double(&v[0], &x);
    bq_num_to_double(&v[1], &b);
    if (!isnan(x) && !(x > 0)) {
        bq_error_set(err, 28758, "$log's argument must be a positive number, but is %g", x);
        goto done;
    }
    if (!isnan(b) && (!(b > 0) || b == 1)) {
        bq_error_set(err, 28759, "$log's base must be a positive number not equal to 1, but is %g",
                     b);
        goto done;
    }
    ok = true;
    double r = log(x) / log(b);
    if (v[0].value_type == BSON_TYPE_DECIMAL128 || v[1].value_type == BSON_TYPE_DECIMAL128) {
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = bq_dec_from_double(r, 15);
    } else {
        agg__set_double(out, r);
    }
done:
    agg__values_cleanup(v, 2);
    return ok;
}

/* Exact integer power when it fits in int64. */
static bool ipow(int64_t base, int64_t exp, int64_t *out)
{
    int64_t r = 1;
    while (exp > 0) {
        if (exp & 1)
            if (__builtin_mul_overflow(r, base, &r))
                return false;
        exp >>= 1;
        if (exp && __builtin_mul_overflow(base, base, &base))
            return false;
    }
    *out = r;
    return true;
}

static bool eval_pow(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0]) || agg__nullish(&v[1])) {
        agg__set_null(out);
        goto done;
    }
    ok = false;
    if (!bq_num_is_number(&v[0])) {
        bq_error_set(err, 28762, "$pow's base must be numeric, not %s", agg__type_name(&v[0]));
        goto done;
    }
    if (!bq_num_is_number(&v[1])) {
        bq_error_set(err, 28763, "$pow's exponent must be numeric, not %s",
                     agg__type_name(&v[1]));
        goto done;
    }
    double b, x;
    bq_num_to_double(&v[0], &b);
    bq_num_to_double(&v[1], &x);
    if (b == 0 && x < 0) {
        bq_error_set(err, 28764, "$pow cannot take a base of 0 and a negative exponent");
        goto done;
    }
    ok = true;
    bson_type_t tb = v[0].value_type, tx = v[1].value_type;
    if (tb == BSON_TYPE_DECIMAL128 || tx == BSON_TYPE_DECIMAL128) {
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = bq_dec_from_double(pow(b, x), 15);
        goto done;
    }
    if (tb == BSON_TYPE_DOUBLE || tx == BSON_TYPE_DOUBLE) {
        agg__set_double(out, pow(b, x));
        goto done;
    }
    int64_t ib = tb == BSON_TYPE_INT32 ? v[0].value.v_int32 : v[0].value.v_int64;
    int64_t ix = tx == BSON_TYPE_INT32 ? v[1].value.v_int32 : v[1].value.v_int64;
    bool both32 = tb == BSON_TYPE_INT32 && tx == BSON_TYPE_INT32;
    int64_t r;
    bool exact;
    if (ix < 0) {
        exact = ib == 1 || ib == -1;
        r = ib == 1 ? 1 : (ix % 2 == 0 ? 1 : -1);
    } else {
        exact = ipow(ib, ix, &r);
    }
    if (!exact)
        agg__set_double(out, pow(b, x));
    else if (both32 && r >= INT32_MIN && r <= INT32_MAX)
        agg__set_int32(out, (int32_t)r);
    else
        agg__set_int64(out, r);
done:
    agg__values_cleanup(v, 2);
    return ok;
}

const agg__op_t agg__ops_arith[] = {
    {"$add", NULL, eval_add, 0, -1, AGG__FOLD},
    {"$subtract", NULL, eval_subtract, 2, 2, AGG__FOLD},
    {"$multiply", NULL, eval_multiply, 0, -1, AGG__FOLD},
    {"$divide", NULL, eval_divide, 2, 2, AGG__FOLD},
    {"$mod", NULL, eval_mod, 2, 2, AGG__FOLD},
    {"$abs", NULL, eval_abs, 1, 1, AGG__FOLD},
    {"$ceil", NULL, eval_ceil, 1, 1, AGG__FOLD},
    {"$floor", NULL, eval_floor, 1, 1, AGG__FOLD},
    {"$round", NULL, eval_round, 1, 2, AGG__FOLD},
    {"$trunc", NULL, eval_trunc, 1, 2, AGG__FOLD},
    {"$exp", NULL, eval_exp, 1, 1, AGG__FOLD},
    {"$ln", NULL, eval_ln, 1, 1, AGG__FOLD},
    {"$log", NULL, eval_log, 2, 2, AGG__FOLD},
    {"$log10", NULL, eval_log10, 1, 1, AGG__FOLD},
    {"$pow", NULL, eval_pow, 2, 2, AGG__FOLD},
    {"$sqrt", NULL, eval_sqrt, 1, 1, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
