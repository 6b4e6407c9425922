/*
 * agg_expr_str.c: string expression operators. $concat, $substr/$substrBytes, $substrCP,
 * $toLower, $toUpper, $strLenBytes, $strLenCP, $indexOfBytes, $indexOfCP, $split, $trim,
 * $ltrim, $rtrim, $replaceOne, $replaceAll, $strcasecmp, $regexMatch, $regexFind,
 * $regexFindAll.
 *
 * Strings are UTF-8 byte strings as stored. "CP" operators count code points; "Bytes"
 * operators count bytes and refuse to cut a character in half. Case mapping and
 * $strcasecmp are ASCII-only, as in mongod. Operators that coerce ($substr, $toLower,
 * $strcasecmp) use agg__coerce_to_string: numbers print as mongod prints them, dates in
 * ISO-8601, null/missing become "". Regexes are PCRE2 with UTF; a constant regex is
 * compiled once with the expression, a computed one at every evaluation.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agg_expr_int.h"

/* ---------------------------------------------------------------- helpers */

void agg__format_double(double d, char *buf, size_t size)
{
    if (isnan(d)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, size, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

void agg__format_date(int64_t ms, char *buf, size_t size)
{
    int64_t secs = ms / 1000, milli = ms % 1000;
    if (milli < 0) {
        milli += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)milli);
}

bool agg__coerce_to_string(const bson_value_t *v, bson_value_t *out, bq_error_t *err)
{
    char buf[64];
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        agg__set_string(out, v->value.v_utf8.str, v->value.v_utf8.len);
        return true;
    case BSON_TYPE_SYMBOL:
        agg__set_string(out, v->value.v_symbol.symbol, v->value.v_symbol.len);
        return true;
    case BSON_TYPE_CODE:
        agg__set_string(out, v->value.v_code.code, v->value.v_code.code_len);
        return true;
    case BSON_TYPE_INT32:
        snprintf(buf, sizeof buf, "%d", v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        snprintf(buf, sizeof buf, "%lld", (long long)v->value.v_int64);
        break;
    case BSON_TYPE_DOUBLE:
        agg__format_double(v->value.v_double, buf, sizeof buf);
        break;
    case BSON_TYPE_DECIMAL128:
        bson_decimal128_to_string(&v->value.v_decimal128, buf);
        break;
    case BSON_TYPE_DATE_TIME:
        agg__format_date(v->value.v_datetime, buf, sizeof buf);
        break;
    case BSON_TYPE_TIMESTAMP:
        snprintf(buf, sizeof buf, "Timestamp(%u, %u)", v->value.v_timestamp.timestamp,
                 v->value.v_timestamp.increment);
        break;
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        buf[0] = '\0';
        break;
    default:
        bq_error_set(err, 16007, "can't convert from BSON type %s to String", agg__type_name(v));
        return false;
    }
    agg__set_string(out, buf, strlen(buf));
    return true;
}

static bool is_cont(unsigned char c) { return (c & 0xc0) == 0x80; }

static size_t utf8_len(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        cps += !is_cont((unsigned char)s[i]);
    return cps;
}

/* Byte offset of code point `cp` (or n when past the end). */
static size_t utf8_offset(const char *s, size_t n, size_t cp)
{
    size_t i = 0;
    while (i < n && cp > 0) {
        i++;
        while (i < n && is_cont((unsigned char)s[i]))
            i++;
        cp--;
    }
    return i;
}

/* Decodes the code point at s[*i], advancing *i. */
static uint32_t utf8_next(const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    uint32_t cp;
    int extra = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
    cp = extra == 0 ? c : extra == 1 ? (c & 0x1f) : extra == 2 ? (c & 0x0f) : (c & 0x07);
    (*i)++;
    for (int k = 0; k < extra && *i < n; k++, (*i)++)
        cp = (cp << 6) | ((unsigned char)s[*i] & 0x3f);
    return cp;
}

static bool get_string(const bson_value_t *v, const char **s, size_t *n)
{
    if (v->value_type != BSON_TYPE_UTF8)
        return false;
    *s = v->value.v_utf8.str;
    *n = v->value.v_utf8.len;
    return true;
}

/* ---------------------------------------------------------------- $concat */

static bool eval_concat(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err)
{
    bson_string_t *acc = bson_string_new("");
    bool ok = true, null = false;
    for (int i = 0; i < e->nargs && ok; i++) {
        bson_value_t v;
        ok = agg__eval_arg(e, i, env, &v, err);
        if (!ok)
            break;
        if (agg__nullish(&v)) {
            null = true;
        } else if (v.value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, 16702, "$concat only supports strings, not %s", agg__type_name(&v));
            ok = false;
        } else if (!null) {
            bson_string_append(acc, v.value.v_utf8.str);
        }
        agg_value_cleanup(&v);
    }
    if (ok) {
        if (null)
            agg__set_null(out);
        else
            agg__set_string(out, acc->str, acc->len);
    }
    bson_string_free(acc, true);
    return ok;
}

/* ---------------------------------------------------------------- substrings */

static bool eval_substr_bytes(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                              bq_error_t *err)
{
    const char *name = e->op->name;
    bson_value_t v[3], s = {.value_type = BSON_TYPE_EOD};
    bool ok = agg__eval_args(e, env, v, err) && agg__coerce_to_string(&v[0], &s, err);
    if (!ok)
        goto done;
    ok = false;
    if (!bq_num_is_number(&v[1])) {
        bq_error_set(err, 16034, "%s: starting index must be a numeric type (is BSON type %s)",
                     name, agg__type_name(&v[1]));
        goto done;
    }
    if (!bq_num_is_number(&v[2])) {
        bq_error_set(err, 16035, "%s: length must be a numeric type (is BSON type %s)", name,
                     agg__type_name(&v[2]));
        goto done;
    }
    int64_t start, len;
    bq_num_to_int64(&v[1], &start, NULL);
    if (!bq_num_to_int64(&v[2], &len, NULL))
        len = -1;
    if (start < 0) {
        bq_error_set(err, 50752, "%s: starting index must be non-negative (got: %lld)", name,
                     (long long)start);
        goto done;
    }
    const char *str = s.value.v_utf8.str;
    size_t n = s.value.v_utf8.len;
    ok = true;
    if ((uint64_t)start >= n) {
        agg__set_string(out, "", 0);
        goto done;
    }
    if (is_cont((unsigned char)str[start])) {
        bq_error_set(err, 28656,
                     "%s: Invalid range, starting index is a UTF-8 continuation byte.", name);
        ok = false;
        goto done;
    }
    size_t end = len < 0 || (uint64_t)len > n - (size_t)start ? n : (size_t)start + (size_t)len;
    if (end < n && is_cont((unsigned char)str[end])) {
        bq_error_set(err, 28657,
                     "%s: Invalid range, ending index is in the middle of a UTF-8 character.",
                     name);
        ok = false;
        goto done;
    }
    agg__set_string(out, str + start, end - (size_t)start);
done:
    agg_value_cleanup(&s);
    agg__values_cleanup(v, 3);
    return ok;
}

static bool eval_substr_cp(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                           bq_error_t *err)
{
    bson_value_t v[3], s = {.value_type = BSON_TYPE_EOD};
    bool ok = agg__eval_args(e, env, v, err) && agg__coerce_to_string(&v[0], &s, err);
    if (!ok)
        goto done;
    ok = false;
    int32_t start, len;
    if (!bq_num_is_number(&v[1])) {
        bq_error_set(err, 34450, "$substrCP: starting index must be a numeric type (is BSON "
                                 "type %s)", agg__type_name(&v[1]));
        goto done;
    }
    if (!agg__as_int32(&v[1], &start)) {
        bq_error_set(err, 34451, "$substrCP: starting index cannot be represented as a 32-bit "
                                 "integral value");
        goto done;
    }
    if (!bq_num_is_number(&v[2])) {
        bq_error_set(err, 34452, "$substrCP: length must be a numeric type (is BSON type %s)",
                     agg__type_name(&v[2]));
        goto done;
    }
    if (!agg__as_int32(&v[2], &len)) {
        bq_error_set(err, 34453, "$substrCP: length cannot be represented as a 32-bit integral "
                                 "value");
        goto done;
    }
    if (len < 0) {
        bq_error_set(err, 34454, "$substrCP: length must be a nonnegative integer.");
        goto done;
    }
    if (start < 0) {
        bq_error_set(err, 34455, "$substrCP: the starting index must be nonnegative integer.");
        goto done;
    }
    ok = true;
    const char *str = s.value.v_utf8.str;
    size_t n = s.value.v_utf8.len;
    size_t b = utf8_offset(str, n, (size_t)start);
    size_t en = b + utf8_offset(str + b, n - b, (size_t)len);
    agg__set_string(out, str + b, en - b);
done:
    agg_value_cleanup(&s);
    agg__values_cleanup(v, 3);
    return ok;
}

/* ---------------------------------------------------------------- case, length */

static bool eval_case(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err,
                      bool upper)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = agg__coerce_to_string(&v, out, err);
    agg_value_cleanup(&v);
    if (!ok)
        return false;
    char *p = out->value.v_utf8.str;
    for (uint32_t i = 0; i < out->value.v_utf8.len; i++) {
        if (upper && p[i] >= 'a' && p[i] <= 'z')
            p[i] = (char)(p[i] - 'a' + 'A');
        else if (!upper && p[i] >= 'A' && p[i] <= 'Z')
            p[i] = (char)(p[i] - 'A' + 'a');
    }
    return true;
}

static bool eval_to_lower(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    return eval_case(e, env, out, err, false);
}

static bool eval_to_upper(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    return eval_case(e, env, out, err, true);
}

static bool eval_strlen(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err, bool cp)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    const char *s;
    size_t n;
    if (!get_string(&v, &s, &n)) {
        bq_error_set(err, cp ? 34471 : 34473, "%s requires a string argument, found: %s",
                     e->op->name, agg__type_name(&v));
        agg_value_cleanup(&v);
        return false;
    }
    agg__set_int32(out, (int32_t)(cp ? utf8_len(s, n) : n));
    agg_value_cleanup(&v);
    return true;
}

static bool eval_strlen_bytes(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                              bq_error_t *err)
{
    return eval_strlen(e, env, out, err, false);
}

static bool eval_strlen_cp(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                           bq_error_t *err)
{
    return eval_strlen(e, env, out, err, true);
}

/* ---------------------------------------------------------------- $indexOf* */

static bool index_arg(const bson_value_t *v, const char *name, int64_t *out, bq_error_t *err)
{
    if (!bq_num_is_number(v) || !agg__as_int64_exact(v, out)) {
        bq_error_set(err, 40096, "%s requires an integral starting index, found a value of "
                                 "type: %s", name, agg__type_name(v));
        return false;
    }
    if (*out < 0) {
        bq_error_set(err, 40097, "%s requires a nonnegative start index, found: %lld", name,
                     (long long)*out);
        return false;
    }
    return true;
}

static bool eval_index_of(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err, bool cp)
{
    const char *name = e->op->name;
    bson_value_t v[4];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0])) {
        agg__set_null(out);
        goto done;
    }
    ok = false;
    const char *s, *sub;
    size_t n, m;
    if (!get_string(&v[0], &s, &n)) {
        bq_error_set(err, cp ? 40093 : 40091, "%s requires a string as the first argument, "
                                              "found: %s", name, agg__type_name(&v[0]));
        goto done;
    }
    if (!get_string(&v[1], &sub, &m)) {
        bq_error_set(err, cp ? 40094 : 40092, "%s requires a string as the second argument, "
                                              "found: %s", name, agg__type_name(&v[1]));
        goto done;
    }
    size_t total = cp ? utf8_len(s, n) : n;
    int64_t start = 0, end = (int64_t)total;
    if (e->nargs > 2 && !index_arg(&v[2], name, &start, err))
        goto done;
    if (e->nargs > 3 && !index_arg(&v[3], name, &end, err))
        goto done;
    ok = true;
    agg__set_int32(out, -1);
    if (end > (int64_t)total)
        end = (int64_t)total;
    if (start > end || start > (int64_t)total)
        goto done;
    if (!cp) {
        for (int64_t i = start; i + (int64_t)m <= end; i++)
            if (memcmp(s + i, sub, m) == 0) {
                agg__set_int32(out, (int32_t)i);
                break;
            }
    } else {
        size_t b = utf8_offset(s, n, (size_t)start), eb = utf8_offset(s, n, (size_t)end);
        for (int64_t i = start; b <= eb; i++) {
            if (b + m <= eb && memcmp(s + b, sub, m) == 0) {
                agg__set_int32(out, (int32_t)i);
                break;
            }
            if (b == eb)
                break;
            b++;
            while (b < n && is_cont((unsigned char)s[b]))
                b++;
        }
    }
done:
    agg__values_cleanup(v, e->nargs);
    return ok;
}

static bool eval_index_of_bytes(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                                bq_error_t *err)
{
    return eval_index_of(e, env, out, err, false);
}

static bool eval_index_of_cp(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                             bq_error_t *err)
{
    return eval_index_of(e, env, out, err, true);
}

/* ---------------------------------------------------------------- $split */

static bool eval_split(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0])) {
        agg__set_null(out);
        goto done;
    }
    ok = false;
    const char *s, *d;
    size_t n, m;
    if (!get_string(&v[0], &s, &n)) {
        bq_error_set(err, 40085, "$split requires an expression that evaluates to a string as "
                                 "a first argument, found: %s", agg__type_name(&v[0]));
        goto done;
    }
    if (!get_string(&v[1], &d, &m)) {
        bq_error_set(err, 40086, "$split requires an expression that evaluates to a string as "
                                 "a second argument, found: %s", agg__type_name(&v[1]));
        goto done;
    }
    if (m == 0) {
        bq_error_set(err, 40087, "$split requires a non-empty separator");
        goto done;
    }
    ok = true;
    bson_t arr;
    bson_init(&arr);
    uint32_t idx = 0;
    size_t pos = 0;
    for (;;) {
        size_t i = pos;
        while (i + m <= n && memcmp(s + i, d, m) != 0)
            i++;
        bool found = i + m <= n;
        size_t piece_end = found ? i : n;
        bson_value_t piece;
        agg__set_string(&piece, s + pos, piece_end - pos);
        agg__array_append(&arr, &idx, &piece);
        agg_value_cleanup(&piece);
        if (!found)
            break;
        pos = i + m;
    }
    agg__set_array_steal(out, &arr);
done:
    agg__values_cleanup(v, 2);
    return ok;
}

/* ---------------------------------------------------------------- $trim $ltrim $rtrim */

enum { TRIM_L = 1, TRIM_R = 2 };

static bool compile_trim(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                         bq_error_t *err)
{
    const char *name = e->op->name;
    e->ival = strcmp(name, "$ltrim") == 0 ? TRIM_L : strcmp(name, "$rtrim") == 0 ? TRIM_R
                                                                              : TRIM_L | TRIM_R;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 50696, "%s only supports an object as an argument, found: %s", name,
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"input", "chars"};
    if (!agg__compile_named(e, arg, scope, names, 2, 0, NULL, 50696, 50694, err)) {
        if (err && err->code == 50694)
            bq_error_set(err, 50694, "%s found an unknown argument", name);
        return false;
    }
    if (!e->args[0]) {
        bq_error_set(err, 50695, "%s requires an 'input' field", name);
        return false;
    }
    return true;
}

static bool is_default_ws(uint32_t c)
{
    return c == 0 || c == ' ' || (c >= 9 && c <= 13) || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static bool in_chars(uint32_t c, const char *chars, size_t n)
{
    size_t i = 0;
    while (i < n)
        if (utf8_next(chars, n, &i) == c)
            return true;
    return false;
}

static bool eval_trim(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    const char *name = e->op->name;
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0])) {
        agg__set_null(out);
        goto done;
    }
    const char *s, *chars = NULL;
    size_t n, cn = 0;
    if (!get_string(&v[0], &s, &n)) {
        bq_error_set(err, 50699, "%s requires its input to be a string, got %s instead.", name,
                     agg__type_name(&v[0]));
        ok = false;
        goto done;
    }
    if (e->args[1]) {
        if (agg__nullish(&v[1])) {
            agg__set_null(out);
            goto done;
        }
        if (!get_string(&v[1], &chars, &cn)) {
            bq_error_set(err, 50700, "%s requires 'chars' to be a string, got %s instead.", name,
                         agg__type_name(&v[1]));
            ok = false;
            goto done;
        }
    }
    size_t b = 0, en = n;
    if (e->ival & TRIM_L) {
        while (b < n) {
            size_t i = b;
            uint32_t c = utf8_next(s, n, &i);
            if (!(chars ? in_chars(c, chars, cn) : is_default_ws(c)))
                break;
            b = i;
        }
    }
    if (e->ival & TRIM_R) {
        while (en > b) {
            size_t st = en - 1;
            while (st > b && is_cont((unsigned char)s[st]))
                st--;
            size_t i = st;
            uint32_t c = utf8_next(s, n, &i);
            if (!(chars ? in_chars(c, chars, cn) : is_default_ws(c)))
                break;
            en = st;
        }
    }
    agg__set_string(out, s + b, en - b);
done:
    agg__values_cleanup(v, 2);
    return ok;
}

/* ---------------------------------------------------------------- $replaceOne/All */

static bool compile_replace(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                            bq_error_t *err)
{
    const char *name = e->op->name;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 51751, "%s requires an object as an argument, found: %s", name,
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"input", "find", "replacement"};
    if (!agg__compile_named(e, arg, scope, names, 3, 0, NULL, 51751, 51750, err))
        return false;
    static const int codes[] = {51749, 51748, 51747};
    for (int i = 0; i < 3; i++)
        if (!e->args[i]) {
            bq_error_set(err, codes[i], "%s requires '%s' to be specified", name, names[i]);
            return false;
        }
    return true;
}

static bool eval_replace(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                         bq_error_t *err)
{
    static const char *const names[] = {"input", "find", "replacement"};
    static const int codes[] = {51746, 51745, 51744};
    bool all = strcmp(e->op->name, "$replaceAll") == 0;
    bson_value_t v[3];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    for (int i = 0; i < 3; i++)
        if (!agg__nullish(&v[i]) && v[i].value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, codes[i], "%s requires that '%s' be a string, found: %s",
                         e->op->name, names[i], agg__type_name(&v[i]));
            ok = false;
            goto done;
        }
    if (agg__nullish(&v[0]) || agg__nullish(&v[1]) || agg__nullish(&v[2])) {
        agg__set_null(out);
        goto done;
    }
    const char *s = v[0].value.v_utf8.str, *f = v[1].value.v_utf8.str,
               *r = v[2].value.v_utf8.str;
    size_t n = v[0].value.v_utf8.len, m = v[1].value.v_utf8.len, rl = v[2].value.v_utf8.len;
    bson_string_t *acc = bson_string_new("");
    size_t pos = 0;
    bool done_one = false;
    while (pos <= n) {
        size_t i = pos;
        bool found = false;
        if (!(done_one && !all))
            for (; i + m <= n; i++)
                if (memcmp(s + i, f, m) == 0) {
                    found = true;
                    break;
                }
        if (!found) {
            char *tail = bson_strndup(s + pos, n - pos);
            bson_string_append(acc, tail);
            bson_free(tail);
            break;
        }
        char *head = bson_strndup(s + pos, i - pos);
        bson_string_append(acc, head);
        bson_free(head);
        char *rep = bson_strndup(r, rl);
        bson_string_append(acc, rep);
        bson_free(rep);
        done_one = true;
        if (m == 0) {
            /* an empty find matches between every character */
            if (i >= n)
                break;
            size_t j = i + 1;
            while (j < n && is_cont((unsigned char)s[j]))
                j++;
            char *ch = bson_strndup(s + i, j - i);
            bson_string_append(acc, ch);
            bson_free(ch);
            pos = j;
            if (!all) {
                char *tail = bson_strndup(s + pos, n - pos);
                bson_string_append(acc, tail);
                bson_free(tail);
                break;
            }
        } else {
            pos = i + m;
        }
    }
    agg__set_string(out, acc->str, acc->len);
    bson_string_free(acc, true);
done:
    agg__values_cleanup(v, 3);
    return ok;
}

/* ---------------------------------------------------------------- $strcasecmp */

static bool eval_strcasecmp(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                            bq_error_t *err)
{
    bson_value_t v[2], s[2] = {{.value_type = BSON_TYPE_EOD}, {.value_type = BSON_TYPE_EOD}};
    bool ok = agg__eval_args(e, env, v, err) && agg__coerce_to_string(&v[0], &s[0], err) &&
              agg__coerce_to_string(&v[1], &s[1], err);
    if (ok) {
        const char *a = s[0].value.v_utf8.str, *b = s[1].value.v_utf8.str;
        size_t na = s[0].value.v_utf8.len, nb = s[1].value.v_utf8.len, i = 0;
        int c = 0;
        for (; i < na && i < nb && c == 0; i++) {
            int x = (unsigned char)a[i], y = (unsigned char)b[i];
            if (x >= 'a' && x <= 'z')
                x -= 32;
            if (y >= 'a' && y <= 'z')
                y -= 32;
            c = x - y;
        }
        if (c == 0)
            c = na < nb ? -1 : na > nb ? 1 : 0;
        agg__set_int32(out, c < 0 ? -1 : c > 0 ? 1 : 0);
    }
    agg__values_cleanup(s, 2);
    agg__values_cleanup(v, 2);
    return ok;
}

/* ---------------------------------------------------------------- regex operators */

enum regex_kind { RX_MATCH, RX_FIND, RX_FIND_ALL };

typedef struct rx_const {
    pcre2_code *code;  /* NULL: regex is null (no match) */
} rx_const_t;

static void rx_const_free(void *p)
{
    rx_const_t *c = p;
    if (c->code)
        pcre2_code_free(c->code);
    bson_free(c);
}

/* Reads pattern and options from the regex/options values and compiles. *code NULL with
 * true means "regex is null": no match. */
static bool rx_build(const char *op, const bson_value_t *rx, const bson_value_t *opts,
                     pcre2_code **code, bq_error_t *err)
{
    *code = NULL;
    const char *pattern = NULL, *ropts = "";
    if (rx->value_type == BSON_TYPE_REGEX) {
        pattern = rx->value.v_regex.regex;
        ropts = rx->value.v_regex.options ? rx->value.v_regex.options : "";
    } else if (rx->value_type == BSON_TYPE_UTF8) {
        pattern = rx->value.v_utf8.str;
    } else if (!agg__nullish(rx)) {
        bq_error_set(err, 51105, "%s needs 'regex' to be of type string or regex", op);
        return false;
    }
    const char *o = "";
    if (opts->value_type == BSON_TYPE_UTF8) {
        o = opts->value.v_utf8.str;
        if (*o && *ropts) {
            bq_error_set(err, 51107, "%s found regex option(s) specified in both 'regex' and "
                                     "'option' fields", op);
            return false;
        }
    } else if (!agg__nullish(opts)) {
        bq_error_set(err, 51106, "%s needs 'options' to be of type string", op);
        return false;
    }
    if (!*o)
        o = ropts;
    uint32_t flags = PCRE2_UTF;
    for (; *o; o++) {
        switch (*o) {
        case 'i': flags |= PCRE2_CASELESS; break;
        case 'm': flags |= PCRE2_MULTILINE; break;
        case 's': flags |= PCRE2_DOTALL; break;
        case 'x': flags |= PCRE2_EXTENDED; break;
        case 'u': break;
        default:
            bq_error_set(err, 51108, "%s invalid flag in regex options: %c", op, *o);
            return false;
        }
    }
    if (!pattern)
        return true;
    if (rx->value_type == BSON_TYPE_UTF8 && strlen(pattern) != rx->value.v_utf8.len) {
        bq_error_set(err, 51109, "%s: regular expression cannot contain an embedded null byte",
                     op);
        return false;
    }
    int ec;
    PCRE2_SIZE eo;
    *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, flags, &ec, &eo, NULL);
    if (!*code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        bq_error_set(err, 51111, "Invalid Regex in %s: %s", op, (const char *)msg);
        return false;
    }
    return true;
}

static bool compile_regex(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                          bq_error_t *err)
{
    const char *op = e->op->name;
    e->ival = strcmp(op, "$regexMatch") == 0 ? RX_MATCH
              : strcmp(op, "$regexFind") == 0 ? RX_FIND
                                              : RX_FIND_ALL;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 51103, "%s expects an object of named arguments but found: %s", op,
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"input", "regex", "options"};
    if (!agg__compile_named(e, arg, scope, names, 3, 0, NULL, 51103, 31024, err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 31022, "%s requires 'input' parameter", op);
        return false;
    }
    if (!e->args[1]) {
        bq_error_set(err, 31023, "%s requires 'regex' parameter", op);
        return false;
    }
    bool rc = e->args[1]->kind == AGG__CONST;
    bool oc = !e->args[2] || e->args[2]->kind == AGG__CONST;
    if (rc && oc) {
        static const bson_value_t none = {.value_type = BSON_TYPE_EOD};
        rx_const_t *c = bson_malloc0(sizeof *c);
        if (!rx_build(op, &e->args[1]->value, e->args[2] ? &e->args[2]->value : &none,
                      &c->code, err)) {
            bson_free(c);
            return false;
        }
        e->data = c;
        e->data_free = rx_const_free;
    }
    return true;
}

/* Appends the match document {match, idx, captures} for one match. */
static void rx_match_doc(const char *s, size_t n, PCRE2_SIZE *ov, uint32_t ncap,
                         bson_value_t *out)
{
    bson_t d, caps;
    bson_init(&d);
    bson_append_utf8(&d, "match", 5, s + ov[0], (int)(ov[1] - ov[0]));
    bson_append_int32(&d, "idx", 3, (int32_t)utf8_len(s, ov[0]));
    bson_append_array_begin(&d, "captures", 8, &caps);
    for (uint32_t i = 1; i < ncap; i++) {
        char key[16];
        snprintf(key, sizeof key, "%u", i - 1);
        if (ov[2 * i] == PCRE2_UNSET)
            bson_append_null(&caps, key, -1);
        else
            bson_append_utf8(&caps, key, -1, s + ov[2 * i], (int)(ov[2 * i + 1] - ov[2 * i]));
    }
    bson_append_array_end(&d, &caps);
    (void)n;
    agg__set_doc_steal(out, &d);
}

static bool eval_regex(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                       bq_error_t *err)
{
    const char *op = e->op->name;
    int kind = (int)e->ival;
    bson_value_t v[3];
    pcre2_code *code = NULL;
    bool own = false;
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (!agg__nullish(&v[0]) && v[0].value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, 51104, "%s needs 'input' to be of type string", op);
        ok = false;
        goto done;
    }
    if (e->data) {
        code = ((rx_const_t *)e->data)->code;
    } else {
        ok = rx_build(op, &v[1], &v[2], &code, err);
        own = true;
        if (!ok)
            goto done;
    }
    if (!code || agg__nullish(&v[0])) {
        if (kind == RX_MATCH)
            agg__set_bool(out, false);
        else if (kind == RX_FIND)
            agg__set_null(out);
        else {
            bson_t a = BSON_INITIALIZER;
            agg__set_array_steal(out, &a);
        }
        goto done;
    }
    const char *s = v[0].value.v_utf8.str;
    size_t n = v[0].value.v_utf8.len;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    uint32_t ncap = pcre2_get_ovector_count(md);
    int rc = pcre2_match(code, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    if (kind == RX_MATCH) {
        agg__set_bool(out, rc >= 0);
    } else if (kind == RX_FIND) {
        if (rc < 0)
            agg__set_null(out);
        else
            rx_match_doc(s, n, pcre2_get_ovector_pointer(md), ncap, out);
    } else {
        bson_t arr;
        bson_init(&arr);
        uint32_t idx = 0;
        size_t start = 0;
        while (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            bson_value_t m;
            rx_match_doc(s, n, ov, ncap, &m);
            agg__array_append(&arr, &idx, &m);
            agg_value_cleanup(&m);
            start = ov[1];
            if (ov[1] == ov[0]) {
                if (start >= n)
                    break;
                start++;
                while (start < n && is_cont((unsigned char)s[start]))
                    start++;
            }
            if (start > n)
                break;
            rc = pcre2_match(code, (PCRE2_SPTR)s, n, start, 0, md, NULL);
        }
        agg__set_array_steal(out, &arr);
    }
    pcre2_match_data_free(md);
done:
    if (own && code)
        pcre2_code_free(code);
    agg__values_cleanup(v, e->nargs);
    return ok;
}

const agg__op_t agg__ops_str[] = {
    {"$concat", NULL, eval_concat, 0, -1, AGG__FOLD},
    {"$substr", NULL, eval_substr_bytes, 3, 3, AGG__FOLD},
    {"$substrBytes", NULL, eval_substr_bytes, 3, 3, AGG__FOLD},
    {"$substrCP", NULL, eval_substr_cp, 3, 3, AGG__FOLD},
    {"$toLower", NULL, eval_to_lower, 1, 1, AGG__FOLD},
    {"$toUpper", NULL, eval_to_upper, 1, 1, AGG__FOLD},
    {"$strLenBytes", NULL, eval_strlen_bytes, 1, 1, AGG__FOLD},
    {"$strLenCP", NULL, eval_strlen_cp, 1, 1, AGG__FOLD},
    {"$indexOfBytes", NULL, eval_index_of_bytes, 2, 4, AGG__FOLD},
    {"$indexOfCP", NULL, eval_index_of_cp, 2, 4, AGG__FOLD},
    {"$split", NULL, eval_split, 2, 2, AGG__FOLD},
    {"$trim", compile_trim, eval_trim, 0, 0, AGG__FOLD},
    {"$ltrim", compile_trim, eval_trim, 0, 0, AGG__FOLD},
    {"$rtrim", compile_trim, eval_trim, 0, 0, AGG__FOLD},
    {"$replaceOne", compile_replace, eval_replace, 0, 0, AGG__FOLD},
    {"$replaceAll", compile_replace, eval_replace, 0, 0, AGG__FOLD},
    {"$strcasecmp", NULL, eval_strcasecmp, 2, 2, AGG__FOLD},
    {"$regexMatch", compile_regex, eval_regex, 0, 0, 0},
    {"$regexFind", compile_regex, eval_regex, 0, 0, 0},
    {"$regexFindAll", compile_regex, eval_regex, 0, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
