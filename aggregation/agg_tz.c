/*
 * agg_tz.c: time zones for the date expressions (agg_expr_date.c). Owns turning a
 * `timezone` argument into a zone (an Olson name such as "America/New_York", or a fixed
 * UTC offset "+04:45", "-0530", "+03"), the UTC offset of a zone at an instant, and the
 * instant of a local wall-clock time in a zone. It also holds the proleptic Gregorian
 * calendar arithmetic the date operators share.
 *
 * Olson zones come from the system's compiled tz database (TZif files, RFC 8536) under
 * $TZDIR or /usr/share/zoneinfo, read by the small reader below. A zone is loaded once
 * per name and cached for the life of the process behind a mutex; a loaded zone is
 * immutable, so lookups need no lock. Unknown names are not cached (a client could
 * otherwise grow the cache without bound). This file never touches the C library's notion
 * of local time (TZ, localtime, tzset): those are process-global and not thread-safe.
 *
 * Instants past a file's last transition follow the POSIX TZ rule in the file's footer
 * ("EST5EDT,M3.2.0,M11.1.0"); instants before the first transition use the zone's first
 * local time type.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_expr_int.h"

/* ---------------------------------------------------------------- calendar */

int64_t agg__floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t agg__days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = agg__floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void agg__civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = agg__floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

bool agg__is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int agg__days_in_month(int64_t y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && agg__is_leap(y) ? 29 : dm[m - 1];
}

/* ---------------------------------------------------------------- POSIX TZ rules */

/* One transition rule of a POSIX TZ string: Jn, n or Mm.w.d, at `secs` local time. */
typedef struct tz_rule {
    char kind;        /* 'J', 'D' (zero-based day), 'M' */
    int n, m, w, d;
    int32_t secs;
} tz_rule_t;

typedef struct tz_posix {
    bool valid;
    int32_t std_off, dst_off;  /* seconds east of UTC */
    bool has_dst;
    tz_rule_t start, end;
} tz_posix_t;

struct agg__zone {
    char *name;
    int64_t *trans;    /* transition instants, seconds */
    uint8_t *idx;      /* type index per transition */
    int32_t *type_off; /* utoff per type */
    uint32_t ntrans, ntypes;
    tz_posix_t rule;
    struct agg__zone *next;
};

static const char *posix_name(const char *p)
{
    if (*p == '<') {
        while (*p && *p != '>')
            p++;
        return *p ? p + 1 : NULL;
    }
    const char *s = p;
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] into seconds; returns the end or NULL. */
static const char *posix_hms(const char *p, int32_t *out)
{
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    int32_t v[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (*p < '0' || *p > '9')
            return i == 0 ? NULL : p;
        int32_t x = 0;
        while (*p >= '0' && *p <= '9')
            x = x * 10 + (*p++ - '0');
        v[i] = x;
        if (i < 2 && *p == ':')
            p++;
        else
            break;
    }
    *out = sign * (v[0] * 3600 + v[1] * 60 + v[2]);
    return p;
}

static const char *posix_num(const char *p, int *out)
{
    if (*p < '0' || *p > '9')
        return NULL;
    int x = 0;
    while (*p >= '0' && *p <= '9')
        x = x * 10 + (*p++ - '0');
    *out = x;
    return p;
}

static const char *posix_rule(const char *p, tz_rule_t *r)
{
    if (*p == 'J') {
        r->kind = 'J';
        p = posix_num(p + 1, &r->n);
    } else if (*p == 'M') {
        r->kind = 'M';
        if (!(p = posix_num(p + 1, &r->m)) || *p++ != '.' || !(p = posix_num(p, &r->w)) ||
            *p++ != '.' || !(p = posix_num(p, &r->d)))
            return NULL;
        if (r->m < 1 || r->m > 12 || r->w < 1 || r->w > 5 || r->d > 6)
            return NULL;
    } else {
        r->kind = 'D';
        p = posix_num(p, &r->n);
    }
    if (!p)
        return NULL;
    r->secs = 7200;
    if (*p == '/')
        p = posix_hms(p + 1, &r->secs);
    return p;
}

static void posix_parse(const char *s, tz_posix_t *tz)
{
    memset(tz, 0, sizeof *tz);
    const char *p = posix_name(s);
    int32_t off;
    if (!p || !(p = posix_hms(p, &off)))
        return;
    tz->std_off = -off;
    if (*p == '\0') {
        tz->valid = true;
        return;
    }
    if (!(p = posix_name(p)))
        return;
    tz->dst_off = tz->std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = posix_hms(p, &off)))
            return;
        tz->dst_off = -off;
    }
    if (*p != ',' || !(p = posix_rule(p + 1, &tz->start)) || *p != ',' ||
        !(p = posix_rule(p + 1, &tz->end)) || *p != '\0')
        return;
    tz->has_dst = true;
    tz->valid = true;
}

/* Day (days since epoch) a rule selects in year y. */
static int64_t rule_day(const tz_rule_t *r, int64_t y)
{
    int64_t jan1 = agg__days_from_civil(y, 1, 1);
    switch (r->kind) {
    case 'J': {
        int64_t n = r->n;  /* 1..365, Feb 29 never counted */
        if (agg__is_leap(y) && n >= 60)
            n++;
        return jan1 + n - 1;
    }
    case 'D':
        return jan1 + r->n;
    default: {
        int64_t first = agg__days_from_civil(y, r->m, 1);
        int wd = (int)(((first + 4) % 7 + 7) % 7);  /* 0 = Sunday; 1970-01-01 was Thursday */
        int64_t day = first + ((r->d - wd) + 7) % 7 + (int64_t)(r->w - 1) * 7;
        int dim = agg__days_in_month(y, r->m);
        while (day >= first + dim)
            day -= 7;
        return day;
    }
    }
}

static int32_t posix_offset(const tz_posix_t *tz, int64_t t)
{
    if (!tz->has_dst)
        return tz->std_off;
    int64_t y;
    int m, d;
    agg__civil_from_days(agg__floor_div(t + tz->std_off, 86400), &y, &m, &d);
    int64_t start = rule_day(&tz->start, y) * 86400 + tz->start.secs - tz->std_off;
    int64_t end = rule_day(&tz->end, y) * 86400 + tz->end.secs - tz->dst_off;
    bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
    return dst ? tz->dst_off : tz->std_off;
}

/* ---------------------------------------------------------------- TZif reader */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p) { return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4)); }

/* Parses one TZif file image into z. Uses the 64-bit block of version 2+ files. */
static bool tzif_parse(const uint8_t *buf, size_t len, struct agg__zone *z)
{
    if (len < 44 || memcmp(buf, "TZif", 4) != 0)
        return false;
    size_t pos = 0;
    int tsize = 4;
    bool v2 = buf[4] >= '2';
    for (int pass = 0; pass < 2; pass++) {
        if (pos + 44 > len || memcmp(buf + pos, "TZif", 4) != 0)
            return false;
        uint32_t isutcnt = be32(buf + pos + 20), isstdcnt = be32(buf + pos + 24),
                 leapcnt = be32(buf + pos + 28), timecnt = be32(buf + pos + 32),
                 typecnt = be32(buf + pos + 36), charcnt = be32(buf + pos + 40);
        if (typecnt == 0 || typecnt > 256 || timecnt > 100000 || leapcnt > 10000 ||
            charcnt > 100000 || isutcnt > 256 || isstdcnt > 256)
            return false;
        size_t body = (size_t)timecnt * (size_t)tsize + timecnt + typecnt * 6u + charcnt +
                      (size_t)leapcnt * (size_t)(tsize + 4) + isstdcnt + isutcnt;
        pos += 44;
        if (pos + body > len)
            return false;
        if (v2 && pass == 0) {  /* skip the 32-bit block */
            pos += body;
            tsize = 8;
            continue;
        }
        const uint8_t *p = buf + pos;
        z->ntrans = timecnt;
        z->ntypes = typecnt;
        z->trans = bson_malloc0(sizeof *z->trans * (timecnt ? timecnt : 1));
        z->idx = bson_malloc0(timecnt ? timecnt : 1);
        z->type_off = bson_malloc0(sizeof *z->type_off * typecnt);
        for (uint32_t i = 0; i < timecnt; i++)
            z->trans[i] = tsize == 8 ? be64(p + i * 8u) : (int32_t)be32(p + i * 4u);
        p += (size_t)timecnt * (size_t)tsize;
        for (uint32_t i = 0; i < timecnt; i++) {
            if (p[i] >= typecnt)
                return false;
            z->idx[i] = p[i];
        }
        p += timecnt;
        for (uint32_t i = 0; i < typecnt; i++)
            z->type_off[i] = (int32_t)be32(p + i * 6u);
        pos += body;
        if (tsize == 8 && pos < len && buf[pos] == '\n') {
            const uint8_t *nl = memchr(buf + pos + 1, '\n', len - pos - 1);
            if (nl) {
                char *footer = bson_strndup((const char *)buf + pos + 1,
                                            (size_t)(nl - (buf + pos + 1)));
                posix_parse(footer, &z->rule);
                bson_free(footer);
            }
        }
        return true;
    }
    return true;
}

static void zone_free(struct agg__zone *z)
{
    if (!z)
        return;
    bson_free(z->name);
    bson_free(z->trans);
    bson_free(z->idx);
    bson_free(z->type_off);
    bson_free(z);
}

/* A name that can only resolve inside the zone directory. */
static bool olson_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128 || s[0] == '/' || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return false;
        if (c == '/' && i + 1 < n && s[i + 1] == '.')
            return false;
    }
    return true;
}

static struct agg__zone *zone_load(const char *name)
{
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir)
        dir = "/usr/share/zoneinfo";
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 8192, len = 0;
    uint8_t *buf = bson_malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            if (cap >= (1u << 20))
                break;
            cap *= 2;
            buf = bson_realloc(buf, cap);
        }
    }
    fclose(f);
    struct agg__zone *z = bson_malloc0(sizeof *z);
    bool ok = tzif_parse(buf, len, z);
    bson_free(buf);
    if (!ok) {
        zone_free(z);
        return NULL;
    }
    z->name = bson_strdup(name);
    return z;
}

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct agg__zone *cache;

static const struct agg__zone *zone_get(const char *name)
{
    pthread_mutex_lock(&cache_lock);
    for (struct agg__zone *z = cache; z; z = z->next)
        if (strcmp(z->name, name) == 0) {
            pthread_mutex_unlock(&cache_lock);
            return z;
        }
    struct agg__zone *z = zone_load(name);
    if (z) {
        z->next = cache;
        cache = z;
    }
    pthread_mutex_unlock(&cache_lock);
    return z;
}

/* ---------------------------------------------------------------- zones */

static bool two_digits(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return false;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

/* +hh, +hhmm, +hh:mm (and '-'). */
static bool parse_offset(const char *s, size_t n, int32_t *secs)
{
    if (n < 3 || (s[0] != '+' && s[0] != '-'))
        return false;
    int h, m = 0;
    if (!two_digits(s + 1, &h))
        return false;
    if (n == 5) {
        if (!two_digits(s + 3, &m))
            return false;
    } else if (n == 6) {
        if (s[3] != ':' || !two_digits(s + 4, &m))
            return false;
    } else if (n != 3) {
        return false;
    }
    *secs = (s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    return true;
}

void agg__tz_utc(agg__tz_t *tz)
{
    tz->zone = NULL;
    tz->fixed = 0;
    tz->utc = true;
}

bool agg__tz_parse(const char *s, size_t n, agg__tz_t *tz, bq_error_t *err)
{
    agg__tz_utc(tz);
    if (strlen(s) == n) {
        if (n == 1 && s[0] == 'Z')
            return true;
        if (parse_offset(s, n, &tz->fixed)) {
            tz->utc = tz->fixed == 0;
            return true;
        }
        if (olson_name_ok(s, n)) {
            const struct agg__zone *z = zone_get(s);
            if (z) {
                tz->zone = z;
                tz->utc = strcmp(s, "UTC") == 0 || strcmp(s, "Etc/UTC") == 0 ||
                          strcmp(s, "GMT") == 0 || strcmp(s, "Etc/GMT") == 0;
                return true;
            }
        }
    }
    bq_error_set(err, 40485, "unrecognized time zone identifier: \"%s\"", s);
    return false;
}

int32_t agg__tz_offset(const agg__tz_t *tz, int64_t utc_ms)
{
    const struct agg__zone *z = tz->zone;
    if (!z)
        return tz->fixed;
    int64_t t = agg__floor_div(utc_ms, 1000);
    if (z->ntrans == 0 || t < z->trans[0]) {
        if (z->ntrans == 0 && z->rule.valid)
            return posix_offset(&z->rule, t);
        return z->type_off[0];
    }
    if (t >= z->trans[z->ntrans - 1] && z->rule.valid)
        return posix_offset(&z->rule, t);
    uint32_t lo = 0, hi = z->ntrans;  /* last transition <= t */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->type_off[z->idx[lo]];
}

/* a + b, saturating at the ends of int64 (dates near the ends of the range stay defined). */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

int64_t agg__tz_to_local(const agg__tz_t *tz, int64_t utc_ms)
{
    return sat_add(utc_ms, (int64_t)agg__tz_offset(tz, utc_ms) * 1000);
}

/* A local time that happens twice (clocks going back) gives the instant whose offset is
 * the one in force at the local time read as UTC; a local time that never happens
 * (clocks going forward) moves forward by the size of the gap, as mongod does. */
int64_t agg__tz_to_utc(const agg__tz_t *tz, int64_t local_ms)
{
    if (!tz->zone)
        return sat_add(local_ms, -(int64_t)tz->fixed * 1000);
    int64_t c = agg__tz_offset(tz, local_ms) * 1000LL;
    int64_t a = agg__tz_offset(tz, sat_add(local_ms, -c)) * 1000LL;
    if (a == c || agg__tz_offset(tz, sat_add(local_ms, -a)) * 1000LL == a)
        return sat_add(local_ms, -a);
    int64_t x = sat_add(local_ms, -c), y = sat_add(local_ms, -a);
    return x > y ? x : y;
}
