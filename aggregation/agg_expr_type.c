/*
 * agg_expr_type.c: type expression operators. $type, $isNumber, $convert and its
 * shorthands $toBool, $toInt, $toLong, $toDouble, $toDecimal, $toString, $toObjectId,
 * $toDate.
 *
 * One conversion routine (convert_value) implements mongod 7.0's conversion table: the
 * target types are double, string, objectId, bool, date, int, long and decimal; anything
 * the table does not allow, and any value that does not fit or parse, is ConversionFailure
 * (241), which $convert turns into its onError value when given. Strings parse strictly
 * (no surrounding spaces); dates parse ISO-8601 forms (date, date-time with optional
 * fraction and Z / +hh:mm / +hhmm offset), no zone meaning UTC.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_expr_int.h"

/* ---------------------------------------------------------------- $type $isNumber */

static bool eval_type(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    const char *n = agg__type_name(&v);
    agg__set_string(out, n, strlen(n));
    agg_value_cleanup(&v);
    return true;
}

static bool eval_is_number(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                           bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    agg__set_bool(out, bq_num_is_number(&v));
    agg_value_cleanup(&v);
    return true;
}

/* ---------------------------------------------------------------- parsing */

static bool parse_int64(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || strlen(s) != n)
        return false;
    size_t i = 0;
    if (s[0] == '-' || s[0] == '+')
        i++;
    if (i == n)
        return false;
    for (size_t j = i; j < n; j++)
        if (s[j] < '0' || s[j] > '9')
            return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end != s + n)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, size_t n, double *out)
{
    if (n == 0 || strlen(s) != n)
        return false;
    if (strcmp(s, "NaN") == 0 || strcmp(s, "-NaN") == 0) {
        *out = NAN;
        return true;
    }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(s, "-Infinity") == 0 || strcmp(s, "-inf") == 0) {
        *out = -INFINITY;
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' ||
              c == '+'))
            return false;
    }
    errno = 0;
    char *end;
    double d = strtod(s, &end);
    if (end != s + n || (errno == ERANGE && isinf(d)))
        return false;
    *out = d;
    return true;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* ISO-8601: YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|(+|-)HH[:]MM] */
bool agg__parse_date(const char *s, size_t n, int64_t *ms)
{
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0;
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return false;
    size_t i = 10;
    int64_t off_min = 0;
    if (i < n && (s[i] == 'T' || s[i] == ' ')) {
        i++;
        if (i + 5 > n || !digits(s + i, 2, &h) || s[i + 2] != ':' || !digits(s + i + 3, 2, &mi))
            return false;
        i += 5;
        if (i < n && s[i] == ':') {
            if (i + 3 > n || !digits(s + i + 1, 2, &se))
                return false;
            i += 3;
            if (i < n && s[i] == '.') {
                i++;
                int nd = 0, scale = 100;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    if (nd < 3)
                        frac += (s[i] - '0') * scale;
                    scale /= 10;
                    nd++;
                    i++;
                }
                if (nd == 0)
                    return false;
            }
        }
        if (i + 1 < n && s[i] == ' ' && (s[i + 1] == '+' || s[i + 1] == '-' || s[i + 1] == 'Z'))
            i++;
        if (i < n && s[i] == 'Z') {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i] == '-' ? -1 : 1, oh, om;
            i++;
            if (i + 2 > n || !digits(s + i, 2, &oh))
                return false;
            i += 2;
            if (i < n && s[i] == ':')
                i++;
            if (i + 2 > n || !digits(s + i, 2, &om))
                return false;
            i += 2;
            off_min = sign * (oh * 60 + om);
        }
    }
    if (i != n || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false;
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((days * 24 + h) * 60 + mi) * 60000LL + se * 1000LL + frac - off_min * 60000LL;
    return true;
}

/* ---------------------------------------------------------------- conversion */

static bool fail_conv(const bson_value_t *v, bson_type_t to, bq_error_t *err)
{
    bq_error_set(err, BQ_ERR_ConversionFailure,
                 "Unsupported conversion from %s to %s in $convert with no onError value",
                 agg__type_name(v), bq_type_name(to));
    return false;
}

static bool fail_parse(const char *s, bq_error_t *err)
{
    bq_error_set(err, BQ_ERR_ConversionFailure,
                 "Failed to parse number '%s' in $convert with no onError value", s);
    return false;
}

static bool fail_range(bq_error_t *err)
{
    bq_error_set(err, BQ_ERR_ConversionFailure,
                 "Conversion would overflow target type in $convert with no onError value");
    return false;
}

/* Converts a non-null value v to type `to`. */
static bool convert_value(const bson_value_t *v, bson_type_t to, bson_value_t *out,
                          bq_error_t *err)
{
    bson_type_t from = v->value_type;
    if (from == to && to != BSON_TYPE_UTF8) {
        agg_value_copy(v, out);
        return true;
    }
    switch (to) {
    case BSON_TYPE_DOUBLE:
        switch (from) {
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
            agg__set_double(out, from == BSON_TYPE_INT32 ? v->value.v_int32
                                                         : (double)v->value.v_int64);
            return true;
        case BSON_TYPE_DECIMAL128: {
            double d = bq_dec_to_double(v->value.v_decimal128);
            if (isinf(d) && !bq_dec_is_inf(v->value.v_decimal128))
                return fail_range(err);
            agg__set_double(out, d);
            return true;
        }
        case BSON_TYPE_BOOL:
            agg__set_double(out, v->value.v_bool ? 1.0 : 0.0);
            return true;
        case BSON_TYPE_DATE_TIME:
            agg__set_double(out, (double)v->value.v_datetime);
            return true;
        case BSON_TYPE_UTF8: {
            double d;
            if (!parse_double(v->value.v_utf8.str, v->value.v_utf8.len, &d))
                return fail_parse(v->value.v_utf8.str, err);
            agg__set_double(out, d);
            return true;
        }
        default:
            return fail_conv(v, to, err);
        }
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64: {
        int64_t i;
        switch (from) {
        case BSON_TYPE_INT32:
            i = v->value.v_int32;
            break;
        case BSON_TYPE_INT64:
            i = v->value.v_int64;
            break;
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128:
            if (!bq_num_to_int64(v, &i, NULL)) {
                bool special = bq_num_is_nan(v) ||
                               (from == BSON_TYPE_DOUBLE ? isinf(v->value.v_double)
                                                         : bq_dec_is_inf(v->value.v_decimal128));
                if (!special)
                    return fail_range(err);
                bq_error_set(err, BQ_ERR_ConversionFailure,
                             "Attempt to convert NaN or infinity value to integer type in "
                             "$convert with no onError value");
                return false;
            }
            break;
        case BSON_TYPE_BOOL:
            i = v->value.v_bool;
            break;
        case BSON_TYPE_DATE_TIME:
            if (to == BSON_TYPE_INT32)
                return fail_conv(v, to, err);
            i = v->value.v_datetime;
            break;
        case BSON_TYPE_UTF8:
            if (!parse_int64(v->value.v_utf8.str, v->value.v_utf8.len, &i))
                return fail_parse(v->value.v_utf8.str, err);
            break;
        default:
            return fail_conv(v, to, err);
        }
        if (to == BSON_TYPE_INT32) {
            if (i < INT32_MIN || i > INT32_MAX)
                return fail_range(err);
            agg__set_int32(out, (int32_t)i);
        } else {
            agg__set_int64(out, i);
        }
        return true;
    }
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t d;
        switch (from) {
        case BSON_TYPE_INT32:
            d = bq_dec_from_int64(v->value.v_int32);
            break;
        case BSON_TYPE_INT64:
            d = bq_dec_from_int64(v->value.v_int64);
            break;
        case BSON_TYPE_DOUBLE:
            d = bq_dec_from_double(v->value.v_double, 15);
            break;
        case BSON_TYPE_BOOL:
            d = bq_dec_from_int64(v->value.v_bool);
            break;
        case BSON_TYPE_DATE_TIME:
            d = bq_dec_from_int64(v->value.v_datetime);
            break;
        case BSON_TYPE_UTF8:
            if (strlen(v->value.v_utf8.str) != v->value.v_utf8.len ||
                !bson_decimal128_from_string(v->value.v_utf8.str, &d) ||
                (bq_dec_is_nan(d) && strcmp(v->value.v_utf8.str, "NaN") != 0 &&
                 strcmp(v->value.v_utf8.str, "-NaN") != 0))
                return fail_parse(v->value.v_utf8.str, err);
            break;
        default:
            return fail_conv(v, to, err);
        }
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = d;
        return true;
    }
    case BSON_TYPE_UTF8: {
        char buf[64];
        switch (from) {
        case BSON_TYPE_BOOL:
            snprintf(buf, sizeof buf, "%s", v->value.v_bool ? "true" : "false");
            break;
        case BSON_TYPE_OID:
            bson_oid_to_string(&v->value.v_oid, buf);
            break;
        case BSON_TYPE_UTF8:
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128:
        case BSON_TYPE_DATE_TIME:
        case BSON_TYPE_SYMBOL:
            return agg__coerce_to_string(v, out, err);
        default:
            return fail_conv(v, to, err);
        }
        agg__set_string(out, buf, strlen(buf));
        return true;
    }
    case BSON_TYPE_OID:
        if (from == BSON_TYPE_UTF8 && v->value.v_utf8.len == 24 &&
            bson_oid_is_valid(v->value.v_utf8.str, 24)) {
            out->value_type = BSON_TYPE_OID;
            bson_oid_init_from_string(&out->value.v_oid, v->value.v_utf8.str);
            return true;
        }
        if (from == BSON_TYPE_UTF8) {
            bq_error_set(err, BQ_ERR_ConversionFailure,
                         "Failed to parse objectId '%s' in $convert with no onError value: "
                         "Invalid string length for parsing to OID, expected 24 but found %u",
                         v->value.v_utf8.str, v->value.v_utf8.len);
            return false;
        }
        return fail_conv(v, to, err);
    case BSON_TYPE_BOOL:
        switch (from) {
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128:
            agg__set_bool(out, agg_value_truthy(v));
            return true;
        default:
            agg__set_bool(out, true);
            return true;
        }
    case BSON_TYPE_DATE_TIME:
        switch (from) {
        case BSON_TYPE_INT64:
            agg__set_date(out, v->value.v_int64);
            return true;
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128: {
            int64_t i;
            if (!bq_num_to_int64(v, &i, NULL))
                return fail_range(err);
            agg__set_date(out, i);
            return true;
        }
        case BSON_TYPE_OID:
            agg__set_date(out, (int64_t)bson_oid_get_time_t(&v->value.v_oid) * 1000);
            return true;
        case BSON_TYPE_TIMESTAMP:
            agg__set_date(out, (int64_t)v->value.v_timestamp.timestamp * 1000);
            return true;
        case BSON_TYPE_UTF8: {
            int64_t ms;
            if (!agg__parse_date(v->value.v_utf8.str, v->value.v_utf8.len, &ms)) {
                bq_error_set(err, BQ_ERR_ConversionFailure,
                             "Error parsing date string '%s'; in $convert with no onError "
                             "value", v->value.v_utf8.str);
                return false;
            }
            agg__set_date(out, ms);
            return true;
        }
        default:
            return fail_conv(v, to, err);
        }
    default:
        return fail_conv(v, to, err);
    }
}

/* ---------------------------------------------------------------- $convert and $toX */

/* $convert: args input, to, onError, onNull. */
static bool compile_convert(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                            bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$convert expects an object of named arguments but found: %s",
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"input", "to", "onError", "onNull"};
    if (!agg__compile_named(e, arg, scope, names, 4, 0, NULL, BQ_ERR_FailedToParse,
                            BQ_ERR_FailedToParse, err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, BQ_ERR_FailedToParse, "Missing 'input' parameter to $convert");
        return false;
    }
    if (!e->args[1]) {
        bq_error_set(err, BQ_ERR_FailedToParse, "Missing 'to' parameter to $convert");
        return false;
    }
    return true;
}

static bool target_type(const bson_value_t *to, bson_type_t *t, bq_error_t *err)
{
    if (to->value_type == BSON_TYPE_UTF8) {
        if (!bq_type_from_name(to->value.v_utf8.str, t)) {
            bq_error_set(err, BQ_ERR_BadValue, "Unknown type name: %s", to->value.v_utf8.str);
            return false;
        }
        return true;
    }
    if (bq_num_is_number(to)) {
        int32_t code;
        static const int valid[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                    16, 17, 18, 19, -1, 127};
        if (agg__as_int32(to, &code))
            for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
                if (valid[i] == code) {
                    *t = code == -1 ? BSON_TYPE_MINKEY
                         : code == 127 ? BSON_TYPE_MAXKEY
                                       : (bson_type_t)code;
                    return true;
                }
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "In $convert, numeric value for 'to' does not correspond to a BSON type");
        return false;
    }
    bq_error_set(err, BQ_ERR_FailedToParse,
                 "$convert's 'to' argument must be a string or number, but is %s",
                 agg__type_name(to));
    return false;
}

static bool eval_convert(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                         bq_error_t *err)
{
    bson_value_t in, to;
    if (!agg__eval_arg(e, 0, env, &in, err))
        return false;
    if (!agg__eval_arg(e, 1, env, &to, err)) {
        agg_value_cleanup(&in);
        return false;
    }
    bool ok = true;
    bson_type_t t;
    if (agg__nullish(&to)) {
        agg__set_null(out);
    } else if (!target_type(&to, &t, err)) {
        ok = false;
    } else if (agg__nullish(&in)) {
        if (e->args[3])
            ok = agg__eval_arg(e, 3, env, out, err);
        else
            agg__set_null(out);
    } else {
        bq_error_t cerr;
        bq_error_clear(&cerr);
        if (!convert_value(&in, t, out, &cerr)) {
            agg_value_cleanup(out);
            if (e->args[2] && cerr.code == BQ_ERR_ConversionFailure) {
                ok = agg__eval_arg(e, 2, env, out, err);
            } else {
                if (err)
                    *err = cerr;
                ok = false;
            }
        }
    }
    agg_value_cleanup(&in);
    agg_value_cleanup(&to);
    return ok;
}

static bool eval_to(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err,
                    bson_type_t t)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v))
        agg__set_null(out);
    else
        ok = convert_value(&v, t, out, err);
    agg_value_cleanup(&v);
    return ok;
}

#define TO_FN(fn, t)                                                                     \
    static bool fn(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err) \
    {                                                                                    \
        return eval_to(e, env, out, err, t);                                             \
    }
TO_FN(eval_to_bool, BSON_TYPE_BOOL)
TO_FN(eval_to_int, BSON_TYPE_INT32)
TO_FN(eval_to_long, BSON_TYPE_INT64)
TO_FN(eval_to_double, BSON_TYPE_DOUBLE)
TO_FN(eval_to_decimal, BSON_TYPE_DECIMAL128)
TO_FN(eval_to_string, BSON_TYPE_UTF8)
TO_FN(eval_to_object_id, BSON_TYPE_OID)
TO_FN(eval_to_date, BSON_TYPE_DATE_TIME)

const agg__op_t agg__ops_type[] = {
    {"$type", NULL, eval_type, 1, 1, AGG__FOLD},
    {"$isNumber", NULL, eval_is_number, 1, 1, AGG__FOLD},
    {"$convert", compile_convert, eval_convert, 0, 0, AGG__FOLD},
    {"$toBool", NULL, eval_to_bool, 1, 1, AGG__FOLD},
    {"$toInt", NULL, eval_to_int, 1, 1, AGG__FOLD},
    {"$toLong", NULL, eval_to_long, 1, 1, AGG__FOLD},
    {"$toDouble", NULL, eval_to_double, 1, 1, AGG__FOLD},
    {"$toDecimal", NULL, eval_to_decimal, 1, 1, AGG__FOLD},
    {"$toString", NULL, eval_to_string, 1, 1, AGG__FOLD},
    {"$toObjectId", NULL, eval_to_object_id, 1, 1, AGG__FOLD},
    {"$toDate", NULL, eval_to_date, 1, 1, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
