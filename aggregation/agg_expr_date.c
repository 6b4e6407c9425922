/*
 * agg_expr_date.c: date expression operators of MongoDB 7.0. The extractors ($year,
 * $month, $dayOfMonth, $dayOfWeek, $dayOfYear, $hour, $minute, $second, $millisecond,
 * $week, $isoWeek, $isoWeekYear, $isoDayOfWeek), $dateToParts and $dateFromParts,
 * $dateToString and $dateFromString (with their %-format languages), and the calendar
 * arithmetic $dateAdd, $dateSubtract, $dateDiff and $dateTrunc.
 *
 * Every operator takes an optional `timezone` (an Olson name or a fixed UTC offset,
 * resolved by agg_tz.c); wall-clock parts are computed in that zone. A "date" argument
 * may be a Date, a Timestamp (its seconds) or an ObjectId (its creation second), as in
 * mongod. Null or missing arguments make the result null (or onNull where an operator has
 * one) before any type is checked, in mongod's order. Nothing here keeps state between
 * evaluations; zones are cached by agg_tz.c.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agg_expr_int.h"

#define MS_PER_DAY 86400000LL
#define MS_2000 946684800000LL  /* 2000-01-01T00:00:00: $dateTrunc's reference point */

static const char *const month_names[] = {"January", "February", "March",     "April",
                                          "May",     "June",     "July",      "August",
                                          "September", "October", "November", "December"};

/* ---------------------------------------------------------------- shared helpers */

/* Date, Timestamp or ObjectId to milliseconds since the epoch. */
static bool value_to_ms(const bson_value_t *v, int64_t *ms)
{
    switch (v->value_type) {
    case BSON_TYPE_DATE_TIME:
        *ms = v->value.v_datetime;
        return true;
    case BSON_TYPE_TIMESTAMP:
        *ms = (int64_t)v->value.v_timestamp.timestamp * 1000;
        return true;
    case BSON_TYPE_OID:
        *ms = (int64_t)bson_oid_get_time_t(&v->value.v_oid) * 1000;
        return true;
    default:
        return false;
    }
}

static bool date_arg(const bson_value_t *v, int64_t *ms, bq_error_t *err)
{
    if (value_to_ms(v, ms))
        return true;
    bq_error_set(err, 16006, "can't convert from BSON type %s to Date", agg__type_name(v));
    return false;
}

/* Wall-clock fields of a local time. */
typedef struct parts {
    int64_t year;
    int month, day, hour, minute, second, millis;
    int dow;  /* 0 = Sunday */
    int doy;  /* 1..366 */
    int64_t days; /* local day number */
    int64_t tod;  /* milliseconds since local midnight */
} parts_t;

/* Day number to milliseconds, false when out of range. */
static bool days_to_ms(int64_t days, int64_t *ms)
{
    return !__builtin_mul_overflow(days, MS_PER_DAY, ms);
}

static void split_local(int64_t local_ms, parts_t *p)
{
    int64_t rem = local_ms % MS_PER_DAY;  /* no products: safe at the ends of int64 */
    p->days = local_ms / MS_PER_DAY;
    if (rem < 0) {
        rem += MS_PER_DAY;
        p->days--;
    }
    p->tod = rem;
    agg__civil_from_days(p->days, &p->year, &p->month, &p->day);
    p->hour = (int)(rem / 3600000);
    p->minute = (int)(rem / 60000 % 60);
    p->second = (int)(rem / 1000 % 60);
    p->millis = (int)(rem % 1000);
    p->dow = (int)(((p->days + 4) % 7 + 7) % 7);
    p->doy = (int)(p->days - agg__days_from_civil(p->year, 1, 1) + 1);
}

static int weeks_in_iso_year(int64_t y)
{
    int jan1 = (int)(((agg__days_from_civil(y, 1, 1) + 4) % 7 + 7) % 7);
    return jan1 == 4 || (jan1 == 3 && agg__is_leap(y)) ? 53 : 52;
}

static void iso_week(const parts_t *p, int64_t *iso_year, int *week)
{
    int isodow = p->dow == 0 ? 7 : p->dow;
    int w = (p->doy - isodow + 10) / 7;
    *iso_year = p->year;
    if (w < 1) {
        *iso_year = p->year - 1;
        w = weeks_in_iso_year(*iso_year);
    } else if (w > weeks_in_iso_year(p->year)) {
        *iso_year = p->year + 1;
        w = 1;
    }
    *week = w;
}

/* Evaluates the timezone argument i (absent: UTC). *isnull when it is null/missing. */
static bool eval_tz(const agg_expr_t *e, int i, agg_env_t *env, agg__tz_t *tz, bool *isnull,
                    bq_error_t *err)
{
    *isnull = false;
    agg__tz_utc(tz);
    if (i >= e->nargs || !e->args[i])
        return true;
    if (e->data) {  /* a constant zone, resolved while compiling */
        *tz = *(const agg__tz_t *)e->data;
        return true;
    }
    bson_value_t v;
    if (!agg__eval_arg(e, i, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v)) {
        *isnull = true;
    } else if (v.value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, 40517, "timezone must evaluate to a string, found %s",
                     agg__type_name(&v));
        ok = false;
    } else {
        ok = agg__tz_parse(v.value.v_utf8.str, v.value.v_utf8.len, tz, err);
    }
    agg_value_cleanup(&v);
    return ok;
}

/* A constant timezone argument i is resolved once, while compiling, into e->data (mongod
 * does the same when it optimizes, so a bad constant zone fails there); evaluations then
 * skip the zone cache and its lock. */
static bool precompile_tz(agg_expr_t *e, int i, bq_error_t *err)
{
    if (i >= e->nargs || !e->args[i])
        return true;
    const bson_value_t *v = agg_expr_constant(e->args[i]);
    if (!v || agg__nullish(v))
        return true;
    if (v->value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, 40517, "timezone must evaluate to a string, found %s",
                     agg__type_name(v));
        return false;
    }
    agg__tz_t *tz = bson_malloc(sizeof *tz);
    if (!agg__tz_parse(v->value.v_utf8.str, v->value.v_utf8.len, tz, err)) {
        bson_free(tz);
        return false;
    }
    e->data = tz;
    e->data_free = bson_free;
    return true;
}

/* Whether the optional argument i was given. */
static bool present(const agg_expr_t *e, int i) { return i < e->nargs && e->args[i]; }

/* ---------------------------------------------------------------- extractors */

enum part_kind {
    P_YEAR, P_MONTH, P_DAY_OF_MONTH, P_DAY_OF_WEEK, P_DAY_OF_YEAR, P_HOUR, P_MINUTE,
    P_SECOND, P_MILLISECOND, P_WEEK, P_ISO_WEEK, P_ISO_WEEK_YEAR, P_ISO_DAY_OF_WEEK,
};

static const struct {
    const char *name;
    enum part_kind kind;
} part_ops[] = {
    {"$year", P_YEAR},           {"$month", P_MONTH},
    {"$dayOfMonth", P_DAY_OF_MONTH}, {"$dayOfWeek", P_DAY_OF_WEEK},
    {"$dayOfYear", P_DAY_OF_YEAR}, {"$hour", P_HOUR},
    {"$minute", P_MINUTE},       {"$second", P_SECOND},
    {"$millisecond", P_MILLISECOND}, {"$week", P_WEEK},
    {"$isoWeek", P_ISO_WEEK},    {"$isoWeekYear", P_ISO_WEEK_YEAR},
    {"$isoDayOfWeek", P_ISO_DAY_OF_WEEK},
};

/* {$op: <date>}, {$op: [<date>]} or {$op: {date, timezone}}: args[0] date, args[1] tz. */
static bool compile_part(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                         bq_error_t *err)
{
    for (size_t i = 0; i < sizeof part_ops / sizeof part_ops[0]; i++)
        if (strcmp(part_ops[i].name, e->op->name) == 0)
            e->ival = part_ops[i].kind;
    bson_iter_t it;
    if (arg->value_type == BSON_TYPE_DOCUMENT && agg__iter_init(&it, arg) &&
        (!bson_iter_next(&it) || bson_iter_key(&it)[0] != '$')) {
        agg__expr_args_alloc(e, 2);
        agg__iter_init(&it, arg);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            int slot = strcmp(k, "date") == 0 ? 0 : strcmp(k, "timezone") == 0 ? 1 : -1;
            if (slot < 0) {
                bq_error_set(err, 40535, "unrecognized option to %s: \"%s\"", e->op->name, k);
                return false;
            }
            bson_value_t sub = *bson_iter_value(&it);
            agg_expr_destroy(e->args[slot]);
            e->args[slot] = agg_expr_compile(&sub, scope, err);
            if (!e->args[slot])
                return false;
        }
        if (!e->args[0]) {
            bq_error_set(err, 40539, "missing 'date' argument to %s", e->op->name);
            return false;
        }
        return precompile_tz(e, 1, err);
    }
    if (arg->value_type == BSON_TYPE_ARRAY) {
        uint32_t n = agg__array_len(arg);
        if (n != 1) {
            bq_error_set(err, 40536,
                         "%s accepts exactly one argument if given an array, but was given %u",
                         e->op->name, n);
            return false;
        }
    }
    return agg__compile_operands(e, arg, scope, 1, 1, err);
}

static bool eval_part(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t d;
    if (!agg__eval_arg(e, 0, env, &d, err))
        return false;
    agg__tz_t tz;
    bool tz_null, ok = true;
    int64_t ms;
    if (agg__nullish(&d)) {
        agg__set_null(out);
        goto done;
    }
    if (!(ok = eval_tz(e, 1, env, &tz, &tz_null, err)))
        goto done;
    if (tz_null) {
        agg__set_null(out);
        goto done;
    }
    if (!(ok = date_arg(&d, &ms, err)))
        goto done;
    parts_t p;
    split_local(agg__tz_to_local(&tz, ms), &p);
    int64_t iy;
    int iw;
    switch ((enum part_kind)e->ival) {
    case P_YEAR:
        agg__set_int32(out, (int32_t)p.year);
        break;
    case P_MONTH:
        agg__set_int32(out, p.month);
        break;
    case P_DAY_OF_MONTH:
        agg__set_int32(out, p.day);
        break;
    case P_DAY_OF_WEEK:
        agg__set_int32(out, p.dow + 1);
        break;
    case P_DAY_OF_YEAR:
        agg__set_int32(out, p.doy);
        break;
    case P_HOUR:
        agg__set_int32(out, p.hour);
        break;
    case P_MINUTE:
        agg__set_int32(out, p.minute);
        break;
    case P_SECOND:
        agg__set_int32(out, p.second);
        break;
    case P_MILLISECOND:
        agg__set_int32(out, p.millis);
        break;
    case P_WEEK:
        agg__set_int32(out, (p.doy - 1 + 7 - p.dow) / 7);
        break;
    case P_ISO_WEEK:
        iso_week(&p, &iy, &iw);
        agg__set_int64(out, iw);  /* mongod answers a long for $isoWeek and $isoWeekYear */
        break;
    case P_ISO_WEEK_YEAR:
        iso_week(&p, &iy, &iw);
        agg__set_int64(out, iy);
        break;
    case P_ISO_DAY_OF_WEEK:
        agg__set_int32(out, p.dow == 0 ? 7 : p.dow);
        break;
    }
done:
    agg_value_cleanup(&d);
    return ok;
}

/* ---------------------------------------------------------------- $dateToParts */

static bool compile_to_parts(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                             bq_error_t *err)
{
    static const char *const names[] = {"date", "timezone", "iso8601"};
    if (!agg__compile_named(e, arg, scope, names, 3, 0, NULL, 40524, 40520, err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 40522, "Missing 'date' parameter to $dateToParts");
        return false;
    }
    return precompile_tz(e, 1, err);
}

static void append_i32(bson_t *b, const char *k, int64_t v)
{
    bson_append_int32(b, k, -1, (int32_t)v);
}

static bool eval_to_parts(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    bson_value_t d, iso;
    iso.value_type = BSON_TYPE_EOD;
    if (!agg__eval_arg(e, 0, env, &d, err))
        return false;
    agg__tz_t tz;
    bool tz_null, ok = true;
    int64_t ms;
    if (!(ok = eval_tz(e, 1, env, &tz, &tz_null, err)))
        goto done;
    if (!(ok = agg__eval_arg(e, 2, env, &iso, err)))
        goto done;
    if (present(e, 2) && !agg__nullish(&iso) && iso.value_type != BSON_TYPE_BOOL) {
        bq_error_set(err, 40521, "iso8601 must evaluate to a bool, found %s",
                     agg__type_name(&iso));
        ok = false;
        goto done;
    }
    if (agg__nullish(&d) || tz_null || (present(e, 2) && agg__nullish(&iso))) {
        agg__set_null(out);
        goto done;
    }
    if (!(ok = date_arg(&d, &ms, err)))
        goto done;
    parts_t p;
    split_local(agg__tz_to_local(&tz, ms), &p);
    bson_t b;
    bson_init(&b);
    if (iso.value_type == BSON_TYPE_BOOL && iso.value.v_bool) {
        int64_t iy;
        int iw;
        iso_week(&p, &iy, &iw);
        append_i32(&b, "isoWeekYear", iy);
        append_i32(&b, "isoWeek", iw);
        append_i32(&b, "isoDayOfWeek", p.dow == 0 ? 7 : p.dow);
    } else {
        append_i32(&b, "year", p.year);
        append_i32(&b, "month", p.month);
        append_i32(&b, "day", p.day);
    }
    append_i32(&b, "hour", p.hour);
    append_i32(&b, "minute", p.minute);
    append_i32(&b, "second", p.second);
    append_i32(&b, "millisecond", p.millis);
    agg__set_doc_steal(out, &b);
done:
    agg_value_cleanup(&d);
    agg_value_cleanup(&iso);
    return ok;
}

/* ---------------------------------------------------------------- $dateFromParts */

enum {
    FP_YEAR, FP_MONTH, FP_DAY, FP_HOUR, FP_MINUTE, FP_SECOND, FP_MS, FP_ISO_YEAR, FP_ISO_WEEK,
    FP_ISO_DOW, FP_TZ, FP_N
};
static const char *const from_parts_names[FP_N] = {
    "year",        "month",   "day",          "hour",    "minute", "second", "millisecond",
    "isoWeekYear", "isoWeek", "isoDayOfWeek", "timezone"};

static bool compile_from_parts(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                               bq_error_t *err)
{
    if (!agg__compile_named(e, arg, scope, from_parts_names, FP_N, 0, NULL, 40519, 40518,
                            err))
        return false;
    bool natural = e->args[FP_YEAR] || e->args[FP_MONTH] || e->args[FP_DAY];
    bool iso = e->args[FP_ISO_YEAR] || e->args[FP_ISO_WEEK] || e->args[FP_ISO_DOW];
    if (!e->args[FP_YEAR] && !e->args[FP_ISO_YEAR]) {
        bq_error_set(err, 40516,
                     "$dateFromParts requires either 'year' or 'isoWeekYear' to be present");
        return false;
    }
    if (e->args[FP_YEAR] && iso) {
        bq_error_set(err, 40489, "$dateFromParts does not allow mixing natural dates with ISO "
                                 "dates");
        return false;
    }
    if (e->args[FP_ISO_YEAR] && natural) {
        bq_error_set(err, 40525, "$dateFromParts does not allow mixing ISO dates with natural "
                                 "dates");
        return false;
    }
    return precompile_tz(e, FP_TZ, err);
}

/* Evaluates part i (default `def` when absent). Returns 0 on success, 1 when null/missing,
 * -1 on error. Bounded parts must lie in [-32768, 32767] (31034). */
static int eval_part_num(const agg_expr_t *e, int i, agg_env_t *env, int64_t def,
                         bool bounded, int64_t *out, bq_error_t *err)
{
    *out = def;
    if (!present(e, i))
        return 0;
    bson_value_t v;
    if (!agg__eval_arg(e, i, env, &v, err))
        return -1;
    int rc = 0;
    if (agg__nullish(&v)) {
        rc = 1;
    } else if (!agg__as_int64_exact(&v, out)) {
        bson_t tmp = BSON_INITIALIZER;
        bson_append_value(&tmp, "v", 1, &v);
        char *js = bson_as_relaxed_extended_json(&tmp, NULL);
        bq_error_set(err, 40515, "'%s' must evaluate to an integer, found %s with value %s",
                     from_parts_names[i], agg__type_name(&v), js ? js : "?");
        bson_free(js);
        bson_destroy(&tmp);
        rc = -1;
    } else if (bounded && (*out < -32768 || *out > 32767)) {
        bq_error_set(err, 31034,
                     "'%s' must evaluate to a value in the range [-32768, 32767]; value %lld "
                     "is not in range",
                     from_parts_names[i], (long long)*out);
        rc = -1;
    }
    agg_value_cleanup(&v);
    return rc;
}

static bool eval_from_parts(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                            bq_error_t *err)
{
    bool iso = present(e, FP_ISO_YEAR);
    int64_t v[FP_TZ];
    static const bool bounded[FP_TZ] = {false, true, true, true, true, false, false,
                                        false, true, true};
    int order_nat[] = {FP_YEAR, FP_MONTH, FP_DAY, FP_HOUR, FP_MINUTE, FP_SECOND, FP_MS};
    int order_iso[] = {FP_ISO_YEAR, FP_ISO_WEEK, FP_ISO_DOW, FP_HOUR, FP_MINUTE, FP_SECOND,
                       FP_MS};
    const int *order = iso ? order_iso : order_nat;
    for (int i = 0; i < FP_TZ; i++)
        v[i] = 0;
    for (int k = 0; k < 7; k++) {
        int i = order[k];
        int64_t def = (i == FP_MONTH || i == FP_DAY || i == FP_ISO_WEEK || i == FP_ISO_DOW)
                          ? 1
                      : i == FP_YEAR || i == FP_ISO_YEAR ? 1970
                                                         : 0;
        int rc = eval_part_num(e, i, env, def, bounded[i], &v[i], err);
        if (rc < 0)
            return false;
        if (rc > 0) {
            agg__set_null(out);
            return true;
        }
    }
    agg__tz_t tz;
    bool tz_null;
    if (!eval_tz(e, FP_TZ, env, &tz, &tz_null, err))
        return false;
    if (tz_null) {
        agg__set_null(out);
        return true;
    }
    int64_t y = iso ? v[FP_ISO_YEAR] : v[FP_YEAR];
    if (y < 1 || y > 9999) {
        bq_error_set(err, iso ? 31095 : 40523,
                     "'%s' must evaluate to an integer in the range 1 to 9999, found %lld",
                     iso ? "isoWeekYear" : "year", (long long)y);
        return false;
    }
    int64_t days;
    if (iso) {
        int64_t jan4 = agg__days_from_civil(y, 1, 4);
        int jan4_iso = (int)(((jan4 + 3) % 7 + 7) % 7) + 1;  /* 1 = Monday */
        days = jan4 - (jan4_iso - 1) + (v[FP_ISO_WEEK] - 1) * 7 + (v[FP_ISO_DOW] - 1);
    } else {
        int64_t m0 = v[FP_MONTH] - 1;
        int64_t yy = y + agg__floor_div(m0, 12);
        int64_t mm = m0 - agg__floor_div(m0, 12) * 12 + 1;
        days = agg__days_from_civil(yy, mm, 1) + v[FP_DAY] - 1;
    }
    int64_t ms = days * MS_PER_DAY + v[FP_HOUR] * 3600000 + v[FP_MINUTE] * 60000, t;
    if (__builtin_mul_overflow(v[FP_SECOND], (int64_t)1000, &t) ||
        __builtin_add_overflow(ms, t, &ms) || __builtin_add_overflow(ms, v[FP_MS], &ms)) {
        bq_error_set(err, BQ_ERR_DurationOverflow,
                     "Overflow casting from a lower-precision duration to a higher-precision "
                     "duration");
        return false;
    }
    agg__set_date(out, agg__tz_to_utc(&tz, ms));
    return true;
}

/* ---------------------------------------------------------------- formats */

/* Checks a $dateToString / $dateFromString format: '%' must be followed by one of `ok`. */
static bool format_check(const char *f, size_t n, const char *ok, bq_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i] != '%')
            continue;
        if (i + 1 == n) {
            bq_error_set(err, 18535, "Unmatched '%%' at end of format string");
            return false;
        }
        if (!f[i + 1] || !strchr(ok, f[i + 1])) {
            bq_error_set(err, 18536, "Invalid format character '%%%c' in format string",
                         f[i + 1]);
            return false;
        }
        i++;
    }
    return true;
}

#define TO_STRING_SPECS "bBdGHjLmMSuUVwYzZ%"
#define FROM_STRING_SPECS "bBdGHjLmMSuVYzZ%"

static bool put_padded(bson_string_t *s, int64_t v, int width, bq_error_t *err)
{
    if (v < 0 || v > 9999) {
        bq_error_set(err, 18537,
                     "Could not convert date to string: date component was outside the "
                     "supported range of 0-9999: %lld",
                     (long long)v);
        return false;
    }
    char buf[16];
    snprintf(buf, sizeof buf, "%0*lld", width, (long long)v);
    bson_string_append(s, buf);
    return true;
}

static bool format_date(const char *f, size_t n, int64_t ms, const agg__tz_t *tz,
                        bson_value_t *out, bq_error_t *err)
{
    int32_t off = agg__tz_offset(tz, ms);
    parts_t p;
    split_local(agg__tz_to_local(tz, ms), &p);
    int64_t iy;
    int iw;
    iso_week(&p, &iy, &iw);
    bson_string_t *s = bson_string_new("");
    bool ok = true;
    char buf[32];
    for (size_t i = 0; i < n && ok; i++) {
        if (f[i] != '%' || i + 1 >= n) {
            bson_string_append_c(s, f[i]);
            continue;
        }
        switch (f[++i]) {
        case 'Y': ok = put_padded(s, p.year, 4, err); break;
        case 'G': ok = put_padded(s, iy, 4, err); break;
        case 'm': ok = put_padded(s, p.month, 2, err); break;
        case 'd': ok = put_padded(s, p.day, 2, err); break;
        case 'H': ok = put_padded(s, p.hour, 2, err); break;
        case 'M': ok = put_padded(s, p.minute, 2, err); break;
        case 'S': ok = put_padded(s, p.second, 2, err); break;
        case 'L': ok = put_padded(s, p.millis, 3, err); break;
        case 'j': ok = put_padded(s, p.doy, 3, err); break;
        case 'w': ok = put_padded(s, p.dow + 1, 1, err); break;
        case 'u': ok = put_padded(s, p.dow == 0 ? 7 : p.dow, 1, err); break;
        case 'U': ok = put_padded(s, (p.doy - 1 + 7 - p.dow) / 7, 2, err); break;
        case 'V': ok = put_padded(s, iw, 2, err); break;
        case 'b':
            bson_string_append_printf(s, "%.3s", month_names[p.month - 1]);
            break;
        case 'B': bson_string_append(s, month_names[p.month - 1]); break;
        case 'z': {
            int32_t a = off < 0 ? -off : off;
            snprintf(buf, sizeof buf, "%c%02d%02d", off < 0 ? '-' : '+', a / 3600,
                     a / 60 % 60);
            bson_string_append(s, buf);
            break;
        }
        case 'Z':
            snprintf(buf, sizeof buf, "%d", off / 60);
            bson_string_append(s, buf);
            break;
        case '%': bson_string_append_c(s, '%'); break;
        default:
            bq_error_set(err, 18536, "Invalid format character '%%%c' in format string", f[i]);
            ok = false;
        }
    }
    if (ok)
        agg__set_string(out, s->str, s->len);
    bson_string_free(s, true);
    return ok;
}

/* ---------------------------------------------------------------- $dateToString */

enum { TS_DATE, TS_FORMAT, TS_TZ, TS_ON_NULL };

static bool compile_to_string(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                              bq_error_t *err)
{
    static const char *const names[] = {"date", "format", "timezone", "onNull"};
    if (!agg__compile_named(e, arg, scope, names, 4, 0, NULL, 18629, 18534, err))
        return false;
    if (!e->args[TS_DATE]) {
        bq_error_set(err, 18628, "Missing 'date' parameter to $dateToString");
        return false;
    }
    if (!precompile_tz(e, TS_TZ, err))
        return false;
    const bson_value_t *f = e->args[TS_FORMAT] ? agg_expr_constant(e->args[TS_FORMAT]) : NULL;
    if (f && !agg__nullish(f)) {
        if (f->value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, 18533, "$dateToString requires that 'format' be a string, found: "
                                     "%s",
                         agg__type_name(f));
            return false;
        }
        return format_check(f->value.v_utf8.str, f->value.v_utf8.len, TO_STRING_SPECS, err);
    }
    return true;
}

static bool eval_to_string(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                           bq_error_t *err)
{
    bson_value_t f, d;
    d.value_type = BSON_TYPE_EOD;
    if (!agg__eval_arg(e, TS_FORMAT, env, &f, err))
        return false;
    agg__tz_t tz;
    bool tz_null, ok = true;
    int64_t ms;
    if (!(ok = agg__eval_arg(e, TS_DATE, env, &d, err)))
        goto done;
    if (!(ok = eval_tz(e, TS_TZ, env, &tz, &tz_null, err)))
        goto done;
    if (agg__nullish(&d)) {
        if (present(e, TS_ON_NULL))
            ok = agg__eval_arg(e, TS_ON_NULL, env, out, err);
        else
            agg__set_null(out);
        goto done;
    }
    if (tz_null) {
        agg__set_null(out);
        goto done;
    }
    if (present(e, TS_FORMAT)) {
        if (agg__nullish(&f)) {
            agg__set_null(out);
            goto done;
        }
        if (f.value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, 18533, "$dateToString requires that 'format' be a string, found: "
                                     "%s",
                         agg__type_name(&f));
            ok = false;
            goto done;
        }
        if (!(ok = format_check(f.value.v_utf8.str, f.value.v_utf8.len, TO_STRING_SPECS, err)))
            goto done;
    }
    if (!(ok = date_arg(&d, &ms, err)))
        goto done;
    if (present(e, TS_FORMAT))
        ok = format_date(f.value.v_utf8.str, f.value.v_utf8.len, ms, &tz, out, err);
    else {
        const char *def = tz.utc ? "%Y-%m-%dT%H:%M:%S.%LZ" : "%Y-%m-%dT%H:%M:%S.%L";
        ok = format_date(def, strlen(def), ms, &tz, out, err);
    }
done:
    agg_value_cleanup(&f);
    agg_value_cleanup(&d);
    return ok;
}

/* ---------------------------------------------------------------- parsing date strings */

/* What a date string gave. Fields left at -1 were not present. */
typedef struct scan {
    int64_t year;
    int month, day, hour, minute, second, millis;
    int64_t iso_year;
    int iso_week, iso_dow, doy;
    bool has_tz;
    agg__tz_t tz;
} scan_t;

static void scan_init(scan_t *s)
{
    s->year = -1;
    s->month = s->day = s->hour = s->minute = s->second = s->millis = -1;
    s->iso_year = -1;
    s->iso_week = s->iso_dow = s->doy = -1;
    s->has_tz = false;
    agg__tz_utc(&s->tz);
}

/* Reads between min and max digits. */
static bool scan_digits(const char *s, size_t n, size_t *i, int min, int max, int64_t *out)
{
    int64_t v = 0;
    int k = 0;
    while (*i < n && k < max && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
        k++;
    }
    *out = v;
    return k >= min;
}

static bool scan_int(const char *s, size_t n, size_t *i, int min, int max, int *out)
{
    int64_t v;
    if (!scan_digits(s, n, i, min, max, &v))
        return false;
    *out = (int)v;
    return true;
}

/* Month name (3 letters or full, any case). */
static bool scan_month_name(const char *s, size_t n, size_t *i, int *month)
{
    for (int m = 0; m < 12; m++) {
        size_t full = strlen(month_names[m]);
        if (*i + full <= n && strncasecmp(s + *i, month_names[m], full) == 0) {
            *i += full;
            *month = m + 1;
            return true;
        }
    }
    for (int m = 0; m < 12; m++)
        if (*i + 3 <= n && strncasecmp(s + *i, month_names[m], 3) == 0) {
            *i += 3;
            *month = m + 1;
            return true;
        }
    return false;
}

/* A zone at s[*i]: Z, +hh[[:]mm], or a name (UTC, GMT, Olson). */
static bool scan_zone(const char *s, size_t n, size_t *i, scan_t *sc)
{
    bq_error_t ignore;
    if (s[*i] == 'Z' && (*i + 1 == n || s[*i + 1] == ' ')) {
        (*i)++;
        sc->has_tz = true;
        agg__tz_utc(&sc->tz);
        return true;
    }
    if (s[*i] == '+' || s[*i] == '-') {
        size_t j = *i + 1;
        int h, m = 0;
        if (!scan_int(s, n, &j, 2, 2, &h))
            return false;
        if (j < n && s[j] == ':')
            j++;
        if (j < n && s[j] >= '0' && s[j] <= '9' && !scan_int(s, n, &j, 2, 2, &m))
            return false;
        if (h > 99 || m > 59)
            return false;
        sc->has_tz = true;
        sc->tz.zone = NULL;
        sc->tz.fixed = (s[*i] == '-' ? -1 : 1) * (h * 3600 + m * 60);
        sc->tz.utc = sc->tz.fixed == 0;
        *i = j;
        return true;
    }
    size_t j = *i;
    while (j < n && s[j] != ' ')
        j++;
    if (j == *i)
        return false;
    char *name = bson_strndup(s + *i, j - *i);
    bool ok = agg__tz_parse(name, j - *i, &sc->tz, &ignore);
    bson_free(name);
    if (!ok)
        return false;
    sc->has_tz = true;
    *i = j;
    return true;
}

/* hh:mm[:ss[.fff]] */
static bool scan_time(const char *s, size_t n, size_t *i, scan_t *sc)
{
    if (!scan_int(s, n, i, 1, 2, &sc->hour) || *i >= n || s[*i] != ':' )
        return false;
    (*i)++;
    if (!scan_int(s, n, i, 2, 2, &sc->minute))
        return false;
    sc->second = 0;
    sc->millis = 0;
    if (*i < n && s[*i] == ':') {
        (*i)++;
        if (!scan_int(s, n, i, 2, 2, &sc->second))
            return false;
        if (*i < n && (s[*i] == '.' || s[*i] == ',')) {
            (*i)++;
            int64_t frac = 0;
            int k = 0;
            while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
                if (k < 3)
                    frac = frac * 10 + (s[*i] - '0');
                k++;
                (*i)++;
            }
            if (k == 0)
                return false;
            for (int z = k; z < 3; z++)
                frac *= 10;
            sc->millis = (int)frac;
        }
    }
    return true;
}

/* The formats mongod reads without a format string: ISO-8601 dates and date-times
 * ("2017-02-08", "2017-02-08T12:10:40.787", with Z / +hh:mm / +hhmm / +hh or a zone name
 * after a space), "2017/02/08", "02/08/2017" (month first), and month names ("Feb 8,
 * 2017", "8 February 2017"), each optionally followed by a time. */
static bool scan_free(const char *s, size_t n, scan_t *sc)
{
    size_t i = 0;
    int64_t a;
    while (i < n && s[i] == ' ')
        i++;
    size_t start = i;
    if (i < n && s[i] >= '0' && s[i] <= '9') {
        scan_digits(s, n, &i, 1, 4, &a);
        size_t nd = i - start;
        if (nd == 4 && i < n && (s[i] == '-' || s[i] == '/')) {
            char sep = s[i++];
            sc->year = a;
            if (!scan_int(s, n, &i, 1, 2, &sc->month) || i >= n || s[i++] != sep ||
                !scan_int(s, n, &i, 1, 2, &sc->day))
                return false;
        } else if (nd <= 2 && i < n && s[i] == '/') {
            sc->month = (int)a;
            i++;
            if (!scan_int(s, n, &i, 1, 2, &sc->day) || i >= n || s[i++] != '/' ||
                !scan_digits(s, n, &i, 4, 4, &sc->year))
                return false;
        } else if (nd <= 2 && i < n && s[i] == ' ') {
            sc->day = (int)a;
            i++;
            if (!scan_month_name(s, n, &i, &sc->month) || i >= n || s[i++] != ' ' ||
                !scan_digits(s, n, &i, 4, 4, &sc->year))
                return false;
        } else {
            return false;
        }
    } else {
        if (!scan_month_name(s, n, &i, &sc->month))
            return false;
        while (i < n && s[i] == ' ')
            i++;
        if (!scan_int(s, n, &i, 1, 2, &sc->day))
            return false;
        if (i < n && s[i] == ',')
            i++;
        while (i < n && s[i] == ' ')
            i++;
        if (!scan_digits(s, n, &i, 4, 4, &sc->year))
            return false;
    }
    if (i < n && (s[i] == 'T' || s[i] == ' ')) {
        size_t save = i++;
        while (s[save] == ' ' && i < n && s[i] == ' ')
            i++;
        if (i < n && s[i] >= '0' && s[i] <= '9') {
            if (!scan_time(s, n, &i, sc))
                return false;
        } else {
            i = save;
        }
    }
    if (i < n && s[i] == ' ')
        i++;
    if (i < n && !scan_zone(s, n, &i, sc))
        return false;
    while (i < n && s[i] == ' ')
        i++;
    return i == n;
}

/* Reads s against a %-format. */
static bool scan_format(const char *s, size_t n, const char *f, size_t fn, scan_t *sc)
{
    size_t i = 0;
    for (size_t k = 0; k < fn; k++) {
        if (f[k] != '%') {
            if (i >= n || s[i] != f[k])
                return false;
            i++;
            continue;
        }
        char c = f[++k];
        if (c == '%') {
            if (i >= n || s[i] != '%')
                return false;
            i++;
            continue;
        }
        if (i >= n)
            return false;
        bool ok = true;
        int64_t v;
        switch (c) {
        case 'Y': ok = scan_digits(s, n, &i, 4, 4, &sc->year); break;
        case 'G': ok = scan_digits(s, n, &i, 4, 4, &sc->iso_year); break;
        case 'm': ok = scan_int(s, n, &i, 1, 2, &sc->month); break;
        case 'd': ok = scan_int(s, n, &i, 1, 2, &sc->day); break;
        case 'H': ok = scan_int(s, n, &i, 1, 2, &sc->hour); break;
        case 'M': ok = scan_int(s, n, &i, 1, 2, &sc->minute); break;
        case 'S': ok = scan_int(s, n, &i, 1, 2, &sc->second); break;
        case 'L':
            ok = scan_digits(s, n, &i, 1, 3, &v);
            sc->millis = (int)v;
            break;
        case 'j': ok = scan_int(s, n, &i, 1, 3, &sc->doy); break;
        case 'u': ok = scan_int(s, n, &i, 1, 1, &sc->iso_dow); break;
        case 'V': ok = scan_int(s, n, &i, 1, 2, &sc->iso_week); break;
        case 'b':
        case 'B': ok = scan_month_name(s, n, &i, &sc->month); break;
        case 'z':
            ok = (s[i] == '+' || s[i] == '-') && scan_zone(s, n, &i, sc);
            break;
        case 'Z': {
            size_t j = i;
            if (s[i] != '+' && s[i] != '-') {
                while (j < n && s[j] != ' ' && s[j] != f[k + 1 < fn ? k + 1 : k])
                    j++;
                char *name = bson_strndup(s + i, j - i);
                bq_error_t ignore;
                ok = agg__tz_parse(name, j - i, &sc->tz, &ignore);
                bson_free(name);
                if (ok) {
                    sc->has_tz = true;
                    i = j;
                }
            } else {
                ok = scan_zone(s, n, &i, sc);
            }
            break;
        }
        default:
            ok = false;
        }
        if (!ok)
            return false;
    }
    return i == n;
}

/* Local milliseconds of what was scanned; false when the parts make no valid date. */
static bool scan_to_local(const scan_t *sc, int64_t *local)
{
    int64_t days;
    if (sc->iso_year >= 0 || sc->iso_week >= 0 || sc->iso_dow >= 0) {
        int64_t y = sc->iso_year >= 0 ? sc->iso_year : 1970;
        int w = sc->iso_week >= 0 ? sc->iso_week : 1, d = sc->iso_dow >= 0 ? sc->iso_dow : 1;
        if (w < 1 || w > weeks_in_iso_year(y) || d < 1 || d > 7)
            return false;
        int64_t jan4 = agg__days_from_civil(y, 1, 4);
        int jan4_iso = (int)(((jan4 + 3) % 7 + 7) % 7) + 1;
        days = jan4 - (jan4_iso - 1) + (w - 1) * 7 + (d - 1);
    } else {
        int64_t y = sc->year >= 0 ? sc->year : 1970;
        if (sc->doy >= 0 && sc->month < 0 && sc->day < 0) {
            if (sc->doy < 1 || sc->doy > (agg__is_leap(y) ? 366 : 365))
                return false;
            days = agg__days_from_civil(y, 1, 1) + sc->doy - 1;
        } else {
            int m = sc->month >= 0 ? sc->month : 1, d = sc->day >= 0 ? sc->day : 1;
            if (m < 1 || m > 12 || d < 1 || d > agg__days_in_month(y, m))
                return false;
            days = agg__days_from_civil(y, m, d);
        }
    }
    int h = sc->hour >= 0 ? sc->hour : 0, mi = sc->minute >= 0 ? sc->minute : 0,
        se = sc->second >= 0 ? sc->second : 0, ms = sc->millis >= 0 ? sc->millis : 0;
    if (h > 23 || mi > 59 || se > 59)
        return false;
    *local = days * MS_PER_DAY + h * 3600000LL + mi * 60000LL + se * 1000LL + ms;
    return true;
}

/* ---------------------------------------------------------------- $dateFromString */

enum { FS_STRING, FS_FORMAT, FS_TZ, FS_ON_ERROR, FS_ON_NULL };

static bool compile_from_string(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                                bq_error_t *err)
{
    static const char *const names[] = {"dateString", "format", "timezone", "onError",
                                        "onNull"};
    if (!agg__compile_named(e, arg, scope, names, 5, 0, NULL, 40540, 40541, err))
        return false;
    if (!e->args[FS_STRING]) {
        bq_error_set(err, 40542, "Missing 'dateString' parameter to $dateFromString");
        return false;
    }
    if (!precompile_tz(e, FS_TZ, err))
        return false;
    const bson_value_t *f = e->args[FS_FORMAT] ? agg_expr_constant(e->args[FS_FORMAT]) : NULL;
    if (f && !agg__nullish(f)) {
        if (f->value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, 40684, "$dateFromString requires that 'format' be a string, "
                                     "found: %s",
                         agg__type_name(f));
            return false;
        }
        return format_check(f->value.v_utf8.str, f->value.v_utf8.len, FROM_STRING_SPECS, err);
    }
    return true;
}

static bool from_string_fail(bq_error_t *err, const char *s, const char *why)
{
    bq_error_set(err, BQ_ERR_ConversionFailure, "Error parsing date string '%s'; %s", s, why);
    return false;
}

static bool parse_date_string(const bson_value_t *ds, const bson_value_t *f, bool has_format,
                              const agg__tz_t *tz, bool tz_given, int64_t *ms,
                              bq_error_t *err)
{
    if (ds->value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, BQ_ERR_ConversionFailure,
                     "$dateFromString requires that 'dateString' be a string, found: %s",
                     agg__type_name(ds));
        return false;
    }
    const char *s = ds->value.v_utf8.str;
    size_t n = ds->value.v_utf8.len;
    scan_t sc;
    scan_init(&sc);
    bool ok = has_format ? scan_format(s, n, f->value.v_utf8.str, f->value.v_utf8.len, &sc)
                         : scan_free(s, n, &sc);
    if (!ok)
        return from_string_fail(err, s, "the string does not match the expected format");
    int64_t local;
    if (!scan_to_local(&sc, &local))
        return from_string_fail(err, s, "the parsed date was invalid");
    if (sc.has_tz && tz_given) {
        bq_error_set(err, BQ_ERR_ConversionFailure,
                     "you cannot pass in a date/time string with time zone information ('%s') "
                     "together with a timezone argument",
                     s);
        return false;
    }
    *ms = agg__tz_to_utc(sc.has_tz ? &sc.tz : tz, local);
    return true;
}

static bool eval_from_string(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                             bq_error_t *err)
{
    bson_value_t ds, f;
    f.value_type = BSON_TYPE_EOD;
    if (!agg__eval_arg(e, FS_STRING, env, &ds, err))
        return false;
    agg__tz_t tz;
    bool tz_null, ok = true;
    int64_t ms;
    if (!(ok = agg__eval_arg(e, FS_FORMAT, env, &f, err)))
        goto done;
    if (present(e, FS_FORMAT) && !agg__nullish(&f)) {
        if (f.value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, 40684, "$dateFromString requires that 'format' be a string, "
                                     "found: %s",
                         agg__type_name(&f));
            ok = false;
            goto done;
        }
        if (!(ok = format_check(f.value.v_utf8.str, f.value.v_utf8.len, FROM_STRING_SPECS,
                                err)))
            goto done;
    }
    if (!(ok = eval_tz(e, FS_TZ, env, &tz, &tz_null, err)))
        goto done;
    if (agg__nullish(&ds)) {
        if (present(e, FS_ON_NULL))
            ok = agg__eval_arg(e, FS_ON_NULL, env, out, err);
        else
            agg__set_null(out);
        goto done;
    }
    if (tz_null || (present(e, FS_FORMAT) && agg__nullish(&f))) {
        agg__set_null(out);
        goto done;
    }
    bq_error_t perr;
    bq_error_clear(&perr);
    if (parse_date_string(&ds, &f, present(e, FS_FORMAT), &tz, present(e, FS_TZ), &ms,
                          &perr)) {
        agg__set_date(out, ms);
    } else if (present(e, FS_ON_ERROR)) {
        ok = agg__eval_arg(e, FS_ON_ERROR, env, out, err);
    } else {
        if (err)
            *err = perr;
        ok = false;
    }
done:
    agg_value_cleanup(&ds);
    agg_value_cleanup(&f);
    return ok;
}

/* ---------------------------------------------------------------- units, days of week */

enum unit { U_YEAR, U_QUARTER, U_MONTH, U_WEEK, U_DAY, U_HOUR, U_MINUTE, U_SECOND, U_MS };
static const char *const unit_names[] = {"year", "quarter", "month",  "week",       "day",
                                         "hour", "minute",  "second", "millisecond"};
static const int64_t unit_ms[] = {0, 0, 0, 7 * MS_PER_DAY, MS_PER_DAY, 3600000, 60000, 1000, 1};

static bool parse_unit(const bson_value_t *v, const char *op, int code_type, int code_value,
                       enum unit *u, bq_error_t *err)
{
    if (v->value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, code_type, "%s requires 'unit' to be a string, but got %s", op,
                     agg__type_name(v));
        return false;
    }
    for (int i = 0; i < 9; i++)
        if (strcmp(v->value.v_utf8.str, unit_names[i]) == 0) {
            *u = (enum unit)i;
            return true;
        }
    bq_error_set(err, code_value,
                 "%s parameter 'unit' value cannot be recognized as a time unit: %s", op,
                 v->value.v_utf8.str);
    return false;
}

/* Day of week as 0 = Sunday .. 6 = Saturday, from "monday", "Mon", "SUNDAY", ... */
static bool parse_dow(const bson_value_t *v, const char *op, int *dow, bq_error_t *err)
{
    static const char *const days[] = {"sunday",   "monday", "tuesday", "wednesday",
                                       "thursday", "friday", "saturday"};
    if (v->value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, 5439015, "%s requires 'startOfWeek' to be a string, but got %s", op,
                     agg__type_name(v));
        return false;
    }
    for (int i = 0; i < 7; i++)
        if (strcasecmp(v->value.v_utf8.str, days[i]) == 0 ||
            (v->value.v_utf8.len == 3 && strncasecmp(v->value.v_utf8.str, days[i], 3) == 0)) {
            *dow = i;
            return true;
        }
    bq_error_set(err, 5439016,
                 "%s parameter 'startOfWeek' value cannot be recognized as a day of a week: %s",
                 op, v->value.v_utf8.str);
    return false;
}

/* Whether |amount| units roughly fit the range of a date, as mongod checks before adding
 * (5976500); the exact overflow check comes after the addition. */
static bool amount_valid(int64_t amount, enum unit u)
{
    const int64_t max_days = (int64_t)(UINT64_MAX / (uint64_t)MS_PER_DAY) + 1;
    const int64_t max_years = max_days / 365 + 1;
    int64_t max;
    switch (u) {
    case U_YEAR: max = max_years; break;
    case U_QUARTER: max = max_years * 4; break;
    case U_MONTH: max = max_years * 12; break;
    case U_WEEK: max = max_days / 7; break;
    case U_DAY: max = max_days; break;
    case U_HOUR: max = max_days * 24; break;
    case U_MINUTE: max = max_days * 1440; break;
    case U_SECOND: max = max_days * 86400; break;
    default: return true;
    }
    return -max < amount && amount < max;
}

/* $dateAdd's arithmetic. Units of a day or more work on the wall clock of the zone: months
 * keep the day of month unless the target month is shorter (then its last day), days keep
 * the time of day across DST changes, and the local result goes back to an instant (a time
 * in a DST gap moves forward). Smaller units add a duration. The amount must have passed
 * amount_valid(). False when the result is not a date. */
static bool date_add(int64_t start, enum unit u, int64_t amount, const agg__tz_t *tz,
                     int64_t *res)
{
    int64_t delta, local;
    if (u >= U_HOUR)
        return !__builtin_mul_overflow(amount, unit_ms[u], &delta) &&
               !__builtin_add_overflow(start, delta, res);
    parts_t p;
    split_local(agg__tz_to_local(tz, start), &p);
    if (u <= U_MONTH) {
        int64_t mi = p.year * 12 + (p.month - 1) + amount * (u == U_YEAR ? 12 : u == U_QUARTER ? 3 : 1);
        int64_t ty = agg__floor_div(mi, 12);
        int tm = (int)(mi - ty * 12) + 1, dim = agg__days_in_month(ty, tm);
        if (!days_to_ms(agg__days_from_civil(ty, tm, p.day < dim ? p.day : dim), &local))
            return false;
    } else if (!days_to_ms(p.days + amount * (u == U_WEEK ? 7 : 1), &local)) {
        return false;
    }
    if (__builtin_add_overflow(local, p.tod, &local))
        return false;
    *res = agg__tz_to_utc(tz, local);
    return *res != INT64_MIN && *res != INT64_MAX;
}

/* ---------------------------------------------------------------- $dateAdd $dateSubtract */

enum { DA_START, DA_UNIT, DA_AMOUNT, DA_TZ };

static bool compile_date_add(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                             bq_error_t *err)
{
    static const char *const names[] = {"startDate", "unit", "amount", "timezone"};
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 5166400, "%s expects an object as its argument", e->op->name);
        return false;
    }
    if (!agg__compile_named(e, arg, scope, names, 4, 0, NULL, 5166400, 5166401, err))
        return false;
    for (int i = 0; i < 3; i++)
        if (!e->args[i]) {
            bq_error_set(err, 5166402, "%s requires '%s' to be present", e->op->name,
                         names[i]);
            return false;
        }
    return precompile_tz(e, DA_TZ, err);
}

static bool eval_date_add_sign(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err, int sign)
{
    const char *op = e->op->name;
    bson_value_t v[3];
    for (int i = 0; i < 3; i++)
        v[i].value_type = BSON_TYPE_EOD;
    bool ok = true, tz_null = false;
    agg__tz_t tz;
    for (int i = 0; i < 3 && ok; i++)
        ok = agg__eval_arg(e, i, env, &v[i], err);
    if (!ok)
        goto done;
    if (!(ok = eval_tz(e, DA_TZ, env, &tz, &tz_null, err)))
        goto done;
    if (agg__nullish(&v[0]) || agg__nullish(&v[1]) || agg__nullish(&v[2]) || tz_null) {
        agg__set_null(out);
        goto done;
    }
    int64_t start, amount, res;
    enum unit u;
    if (!value_to_ms(&v[0], &start)) {
        bq_error_set(err, 5166403, "%s requires startDate to be convertible to a date", op);
        ok = false;
        goto done;
    }
    if (!(ok = parse_unit(&v[1], op, 5166404, BQ_ERR_FailedToParse, &u, err)))
        goto done;
    if (!agg__as_int64_exact(&v[2], &amount)) {
        bq_error_set(err, 5166405, "%s expects integer amount of time units", op);
        ok = false;
        goto done;
    }
    if (sign < 0) {
        if (amount == INT64_MIN) {
            bq_error_set(err, 6045000, "invalid %s 'amount' parameter value: %lld", op,
                         (long long)amount);
            ok = false;
            goto done;
        }
        amount = -amount;
    }
    if (!amount_valid(amount, u)) {
        bq_error_set(err, 5976500, "invalid %s 'amount' parameter value: %lld %s", op,
                     (long long)amount, unit_names[u]);
        ok = false;
        goto done;
    }
    bool over = !date_add(start, u, amount, &tz, &res);
    if (over) {
        bq_error_set(err, 5166406, "%s overflowed", op);
        ok = false;
        goto done;
    }
    agg__set_date(out, res);
done:
    agg__values_cleanup(v, 3);
    return ok;
}

static bool eval_date_add(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    return eval_date_add_sign(e, env, out, err, 1);
}

static bool eval_date_subtract(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err)
{
    return eval_date_add_sign(e, env, out, err, -1);
}

/* ---------------------------------------------------------------- $dateDiff */

enum { DD_START, DD_END, DD_UNIT, DD_TZ, DD_SOW };

static bool compile_date_diff(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                              bq_error_t *err)
{
    static const char *const names[] = {"startDate", "endDate", "unit", "timezone",
                                        "startOfWeek"};
    if (!agg__compile_named(e, arg, scope, names, 5, 0, NULL, 5166301, 5166302, err))
        return false;
    static const int codes[] = {5166303, 5166304, 5166305};
    for (int i = 0; i < 3; i++)
        if (!e->args[i]) {
            bq_error_set(err, codes[i], "Missing '%s' parameter to $dateDiff", names[i]);
            return false;
        }
    return precompile_tz(e, DD_TZ, err);
}

/* Local day number of the first day of the week containing local day d. */
static int64_t week_start(int64_t d, int sow)
{
    int dow = (int)(((d + 4) % 7 + 7) % 7);
    return d - ((dow - sow + 7) % 7);
}

/* floor((t + shift) / unit) without overflowing near the ends of int64; |shift| < unit. */
static int64_t shifted_floor(int64_t t, int64_t shift, int64_t unit)
{
    int64_t m = t % unit;
    if (m < 0)
        m += unit;
    return agg__floor_div(t, unit) + agg__floor_div(m + shift, unit);
}

/* Number of unit boundaries between s and t in zone tz. False when it overflows. */
static bool diff_units(int64_t s, int64_t t, enum unit u, const agg__tz_t *tz, int sow,
                       int64_t *out)
{
    int32_t os = agg__tz_offset(tz, s), ot = agg__tz_offset(tz, t);
    parts_t a, b;
    split_local(agg__tz_to_local(tz, s), &a);
    split_local(agg__tz_to_local(tz, t), &b);
    switch (u) {
    case U_YEAR:
        *out = b.year - a.year;
        return true;
    case U_QUARTER:
        *out = (b.year * 4 + (b.month - 1) / 3) - (a.year * 4 + (a.month - 1) / 3);
        return true;
    case U_MONTH:
        *out = (b.year * 12 + b.month) - (a.year * 12 + a.month);
        return true;
    case U_WEEK:
        *out = (week_start(b.days, sow) - week_start(a.days, sow)) / 7;
        return true;
    case U_DAY:
        *out = b.days - a.days;
        return true;
    case U_HOUR:  /* hour boundaries follow the zone's sub-hour offset part */
        *out = shifted_floor(t, (ot % 3600) * 1000LL, 3600000) -
               shifted_floor(s, (os % 3600) * 1000LL, 3600000);
        return true;
    case U_MINUTE:
        *out = shifted_floor(t, (ot % 60) * 1000LL, 60000) -
               shifted_floor(s, (os % 60) * 1000LL, 60000);
        return true;
    case U_SECOND:
        *out = agg__floor_div(t, 1000) - agg__floor_div(s, 1000);
        return true;
    case U_MS:
    default:
        return !__builtin_sub_overflow(t, s, out);
    }
}

static bool eval_date_diff(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                           bq_error_t *err)
{
    bson_value_t v[3], sowv;
    sowv.value_type = BSON_TYPE_EOD;
    for (int i = 0; i < 3; i++)
        v[i].value_type = BSON_TYPE_EOD;
    bson_value_t tzv = {.value_type = BSON_TYPE_EOD};
    bool ok = true;
    for (int i = 0; i < 3 && ok; i++)
        ok = agg__eval_arg(e, i, env, &v[i], err);
    if (ok)
        ok = agg__eval_arg(e, DD_TZ, env, &tzv, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0]) || agg__nullish(&v[1]) || agg__nullish(&v[2]) ||
        (present(e, DD_TZ) && agg__nullish(&tzv))) {
        agg__set_null(out);
        goto done;
    }
    enum unit u;
    if (!(ok = parse_unit(&v[2], "$dateDiff", 5439013, 5439014, &u, err)))
        goto done;
    if (u == U_WEEK && present(e, DD_SOW)) {
        if (!(ok = agg__eval_arg(e, DD_SOW, env, &sowv, err)))
            goto done;
        if (agg__nullish(&sowv)) {
            agg__set_null(out);
            goto done;
        }
    }
    int64_t s, t;
    for (int i = 0; i < 2; i++)
        if (!value_to_ms(&v[i], i == 0 ? &s : &t)) {
            bq_error_set(err, 5166307, "$dateDiff requires '%s' to be a date, but got %s",
                         i == 0 ? "startDate" : "endDate", agg__type_name(&v[i]));
            ok = false;
            goto done;
        }
    agg__tz_t tz;
    bool tz_null;
    if (!(ok = eval_tz(e, DD_TZ, env, &tz, &tz_null, err)))
        goto done;
    int sow = 0;
    if (u == U_WEEK && present(e, DD_SOW) && !(ok = parse_dow(&sowv, "$dateDiff", &sow, err)))
        goto done;
    int64_t n;
    if (!diff_units(s, t, u, &tz, sow, &n)) {
        bq_error_set(err, 5166308, "dateDiff overflowed");
        ok = false;
        goto done;
    }
    agg__set_int64(out, n);
done:
    agg__values_cleanup(v, 3);
    agg_value_cleanup(&sowv);
    agg_value_cleanup(&tzv);
    return ok;
}

/* ---------------------------------------------------------------- $dateTrunc */

enum { DT_DATE, DT_UNIT, DT_BIN, DT_TZ, DT_SOW };

static bool compile_date_trunc(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                               bq_error_t *err)
{
    static const char *const names[] = {"date", "unit", "binSize", "timezone", "startOfWeek"};
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 5439007, "$dateTrunc only supports an object as its argument");
        return false;
    }
    bson_iter_t it;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        bool known = false;
        for (int i = 0; i < 5; i++)
            known |= strcmp(bson_iter_key(&it), names[i]) == 0;
        if (!known) {
            bq_error_set(err, 5439008,
                         "Unrecognized argument to $dateTrunc: %s. Expected arguments are "
                         "date, unit, and optionally, binSize, timezone, startOfWeek",
                         bson_iter_key(&it));
            return false;
        }
    }
    if (!agg__compile_named(e, arg, scope, names, 5, 0, NULL, 5439007, 5439008, err))
        return false;
    if (!e->args[DT_DATE]) {
        bq_error_set(err, 5439009, "Missing 'date' parameter to $dateTrunc");
        return false;
    }
    if (!e->args[DT_UNIT]) {
        bq_error_set(err, 5439010, "Missing 'unit' parameter to $dateTrunc");
        return false;
    }
    return precompile_tz(e, DT_TZ, err);
}

static bool eval_date_trunc(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                            bq_error_t *err)
{
    bson_value_t v[4], sowv;
    sowv.value_type = BSON_TYPE_EOD;
    for (int i = 0; i < 4; i++)
        v[i].value_type = BSON_TYPE_EOD;
    bool ok = true;
    for (int i = 0; i < 4 && ok; i++)
        ok = agg__eval_arg(e, i, env, &v[i], err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[DT_DATE]) || agg__nullish(&v[DT_UNIT]) ||
        (present(e, DT_BIN) && agg__nullish(&v[DT_BIN])) ||
        (present(e, DT_TZ) && agg__nullish(&v[DT_TZ]))) {
        agg__set_null(out);
        goto done;
    }
    enum unit u;
    if (!(ok = parse_unit(&v[DT_UNIT], "$dateTrunc", 5439013, 5439014, &u, err)))
        goto done;
    if (u == U_WEEK && present(e, DT_SOW)) {
        if (!(ok = agg__eval_arg(e, DT_SOW, env, &sowv, err)))
            goto done;
        if (agg__nullish(&sowv)) {
            agg__set_null(out);
            goto done;
        }
    }
    int64_t ms, bin = 1;
    if (!value_to_ms(&v[DT_DATE], &ms)) {
        bq_error_set(err, 5439012, "$dateTrunc requires 'date' to be a date, but got %s",
                     agg__type_name(&v[DT_DATE]));
        ok = false;
        goto done;
    }
    if (present(e, DT_BIN)) {
        if (!agg__as_int64_exact(&v[DT_BIN], &bin)) {
            bq_error_set(err, 5439017,
                         "$dateTrunc requires 'binSize' to be a 64-bit integer, but got value "
                         "of type %s",
                         agg__type_name(&v[DT_BIN]));
            ok = false;
            goto done;
        }
        if (bin <= 0) {
            bq_error_set(err, 5439018,
                         "$dateTrunc requires 'binSize' to be greater than 0, but got value "
                         "%lld",
                         (long long)bin);
            ok = false;
            goto done;
        }
    }
    agg__tz_t tz;
    bool tz_null;
    if (!(ok = eval_tz(e, DT_TZ, env, &tz, &tz_null, err)))
        goto done;
    int sow = 0;
    if (u == U_WEEK && present(e, DT_SOW) && !(ok = parse_dow(&sowv, "$dateTrunc", &sow, err)))
        goto done;
    /* The reference point: 2000-01-01T00:00 in the zone (for weeks, the first startOfWeek
     * day on or after it; 2000-01-01 was a Saturday). Sub-day bins are uniform in time
     * from it; larger bins count calendar units from it, as $dateDiff does. */
    int64_t ref = MS_2000 - agg__tz_offset(&tz, MS_2000) * 1000LL, res = 0, rem;
    int64_t ref_day = MS_2000 / MS_PER_DAY;
    if (u == U_WEEK) {
        ref += (int64_t)((sow - 6 + 7) % 7) * MS_PER_DAY;
        ref_day += (sow - 6 + 7) % 7;
    }
    int code = 0;
    if (u >= U_HOUR) {
        int64_t size, shifted;
        if (__builtin_mul_overflow(bin, unit_ms[u], &size)) {
            code = 5439002;
        } else if (__builtin_sub_overflow(ms, ref, &shifted)) {
            code = 5439000;
        } else {
            rem = shifted % size;
            if (rem < 0)
                rem += size;
            if (__builtin_sub_overflow(ms, rem, &res))
                code = 5439001;
        }
    } else if (bin > 100000000000LL) {
        bq_error_set(err, 5439006, "dateTrunc unsupported binSize value");
        ok = false;
        goto done;
    } else {
        parts_t p;
        split_local(agg__tz_to_local(&tz, ms), &p);
        int64_t dist;
        switch (u) {
        case U_DAY: dist = p.days - ref_day; break;
        case U_WEEK: dist = (week_start(p.days, sow) - ref_day) / 7; break;
        case U_MONTH: dist = (p.year - 2000) * 12 + (p.month - 1); break;
        case U_QUARTER: dist = (p.year - 2000) * 4 + (p.month - 1) / 3; break;
        default: dist = p.year - 2000; break;
        }
        rem = dist % bin;
        if (rem < 0)
            rem += bin;
        if (!amount_valid(dist - rem, u)) {
            bq_error_set(err, 5976500, "invalid dateAdd 'amount' parameter value: %lld %s",
                         (long long)(dist - rem), unit_names[u]);
            ok = false;
            goto done;
        }
        if (!date_add(ref, u, dist - rem, &tz, &res))
            code = 5166406;
    }
    if (code) {
        bq_error_set(err, code, code == 5166406 ? "dateAdd overflowed" : "dateTrunc overflowed");
        ok = false;
        goto done;
    }
    agg__set_date(out, res);
done:
    agg__values_cleanup(v, 4);
    agg_value_cleanup(&sowv);
    return ok;
}

/* ---------------------------------------------------------------- table */

const agg__op_t agg__ops_date[] = {
    {"$year", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$month", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$dayOfMonth", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$dayOfWeek", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$dayOfYear", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$hour", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$minute", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$second", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$millisecond", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$week", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$isoWeek", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$isoWeekYear", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$isoDayOfWeek", compile_part, eval_part, 0, 0, AGG__FOLD},
    {"$dateToParts", compile_to_parts, eval_to_parts, 0, 0, AGG__FOLD},
    {"$dateFromParts", compile_from_parts, eval_from_parts, 0, 0, AGG__FOLD},
    {"$dateToString", compile_to_string, eval_to_string, 0, 0, AGG__FOLD},
    {"$dateFromString", compile_from_string, eval_from_string, 0, 0, AGG__FOLD},
    {"$dateAdd", compile_date_add, eval_date_add, 0, 0, AGG__FOLD},
    {"$dateSubtract", compile_date_add, eval_date_subtract, 0, 0, AGG__FOLD},
    {"$dateDiff", compile_date_diff, eval_date_diff, 0, 0, AGG__FOLD},
    {"$dateTrunc", compile_date_trunc, eval_date_trunc, 0, 0, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
