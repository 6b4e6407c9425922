/*
 * test_agg_tz.c: the time-zone layer of the date expressions (aggregation/agg_tz.c): our
 * TZif reader against hand-built zone files (version 1 transitions, a version 2 POSIX
 * footer), UTC offsets parsing, names that must not resolve, local-time conversion across
 * DST gaps and overlaps, and the per-name cache used from several threads at once.
 *
 * Expected offsets are facts of the tz database (New York is UTC-5 in winter and UTC-4 in
 * summer since 2007 from the second Sunday of March to the first Sunday of November) or of
 * the POSIX TZ rule written into the hand-built file.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agg_expr_int.h"

static int64_t utc_ms(int y, int m, int d, int h, int mi)
{
    return (agg__days_from_civil(y, m, d) * 24 + h) * 3600000LL + mi * 60000LL;
}

static agg__tz_t zone(const char *name)
{
    agg__tz_t tz;
    bq_error_t err;
    cr_assert(agg__tz_parse(name, strlen(name), &tz, &err), "%s: %s", name, err.message);
    return tz;
}

/* ---------------------------------------------------------------- hand-built TZif files */

static void put32(FILE *f, int64_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t b[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
    fwrite(b, 1, 4, f);
}

static void put64(FILE *f, int64_t v)
{
    put32(f, (int64_t)((uint64_t)v >> 32));
    put32(f, v);
}

/* Header with version `ver`, then counts: isut, isstd, leap, time, type, char. */
static void header(FILE *f, char ver, uint32_t timecnt, uint32_t typecnt, uint32_t charcnt)
{
    fwrite("TZif", 1, 4, f);
    fputc(ver, f);
    for (int i = 0; i < 15; i++)
        fputc(0, f);
    put32(f, 0);
    put32(f, 0);
    put32(f, 0);
    put32(f, timecnt);
    put32(f, typecnt);
    put32(f, charcnt);
}

static char tzdir[256];

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tzdir, sizeof tzdir, "%s/nedb_tz_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert(mkdtemp(tzdir), "mkdtemp %s", tzdir);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/Test", tzdir);
    mkdir(sub, 0700);
    setenv("TZDIR", tzdir, 1);  /* before any zone is loaded; single-threaded here */
}

static FILE *open_zone(const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", tzdir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    return f;
}

/* Version 1: two transitions, UTC+1 until 1000000000 s, UTC+2 until 1500000000 s, then
 * UTC+1 again. */
static void write_v1(void)
{
    FILE *f = open_zone("Test/One");
    header(f, 0, 2, 2, 8);
    put32(f, 1000000000);
    put32(f, 1500000000);
    fputc(1, f);
    fputc(0, f);
    put32(f, 3600); fputc(0, f); fputc(0, f);
    put32(f, 7200); fputc(1, f); fputc(4, f);
    fwrite("AAA\0BBB\0", 1, 8, f);
    fclose(f);
}

/* Version 2. The 32-bit block (which must be ignored) says UTC+0 forever. The 64-bit
 * block has one transition at -3000000000 s (in 1874, outside 32 bits) from UTC+1 to UTC+3,
 * and the footer: UTC+3 standard, UTC+4 from the last Sunday of March 02:00 to the last
 * Sunday of October 03:00 (local times). */
static void write_v2_footer(void)
{
    FILE *f = open_zone("Test/Footer");
    header(f, '2', 0, 1, 4);
    put32(f, 0); fputc(0, f); fputc(0, f);
    fwrite("UTC\0", 1, 4, f);
    header(f, '2', 1, 2, 8);
    put64(f, -3000000000LL);
    fputc(1, f);
    put32(f, 3600); fputc(0, f); fputc(0, f);
    put32(f, 10800); fputc(0, f); fputc(4, f);
    fwrite("LMT\0XST\0", 1, 8, f);
    fputs("\nXST-3XDT,M3.5.0,M10.5.0/3\n", f);
    fclose(f);
    f = open_zone("Test/Broken");
    fwrite("TZif2 not really", 1, 16, f);
    fclose(f);
}

Test(agg_tz, reads_version1_transitions)
{
    make_dir();
    write_v1();
    agg__tz_t tz = zone("Test/One");
    cr_assert_eq(agg__tz_offset(&tz, 999999999000LL), 3600);
    cr_assert_eq(agg__tz_offset(&tz, 1000000000000LL), 7200);
    cr_assert_eq(agg__tz_offset(&tz, 1499999999999LL), 7200);
    cr_assert_eq(agg__tz_offset(&tz, 1500000000000LL), 3600);
    cr_assert_eq(agg__tz_offset(&tz, -5000000000000LL), 3600, "before the first transition");
}

Test(agg_tz, follows_the_posix_footer)
{
    make_dir();
    write_v2_footer();
    agg__tz_t tz = zone("Test/Footer");
    cr_assert_eq(agg__tz_offset(&tz, -3000000001000LL), 3600, "before the 64-bit transition");
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(1950, 1, 1, 0, 0)), 10800);
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(1950, 7, 1, 0, 0)), 14400);
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(2030, 1, 1, 0, 0)), 10800);
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(2030, 7, 1, 0, 0)), 14400);
    /* 2030-03-31 is the last Sunday of March: 02:00 at UTC+3 is 2030-03-30T23:00Z. */
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(2030, 3, 30, 22, 59)), 10800);
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(2030, 3, 30, 23, 0)), 14400);
    /* 2030-10-27 is the last Sunday of October: 03:00 at UTC+4 is 2030-10-26T23:00Z. */
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(2030, 10, 26, 22, 59)), 14400);
    cr_assert_eq(agg__tz_offset(&tz, utc_ms(2030, 10, 26, 23, 0)), 10800);
    bq_error_t err;
    cr_assert_not(agg__tz_parse("Test/Broken", 11, &tz, &err));
    cr_assert_eq(err.code, 40485);
}

/* ---------------------------------------------------------------- names and offsets */

Test(agg_tz, parses_offsets_and_rejects_bad_names)
{
    agg__tz_t tz = zone("+04:45");
    cr_assert_eq(agg__tz_offset(&tz, 0), 4 * 3600 + 45 * 60);
    tz = zone("-0530");
    cr_assert_eq(agg__tz_offset(&tz, 0), -(5 * 3600 + 30 * 60));
    tz = zone("+03");
    cr_assert_eq(agg__tz_offset(&tz, 0), 3 * 3600);
    tz = zone("+00:00");
    cr_assert(tz.utc);
    tz = zone("Z");
    cr_assert(tz.utc);
    static const char *const bad[] = {"+3", "+0300x", "03:00", "../zoneinfo/UTC", "/etc/passwd",
                                      "America/../UTC", "Nowhere/Land", "", "America/New York",
                                      "+12:3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bq_error_t err;
        bq_error_clear(&err);
        cr_assert_not(agg__tz_parse(bad[i], strlen(bad[i]), &tz, &err), "%s", bad[i]);
        cr_assert_eq(err.code, 40485, "%s", bad[i]);
    }
    bq_error_t err;
    cr_assert_not(agg__tz_parse("UTC\0x", 5, &tz, &err), "embedded NUL");
}

Test(agg_tz, new_york_offsets_and_local_times)
{
    agg__tz_t ny = zone("America/New_York");
    cr_assert_eq(agg__tz_offset(&ny, utc_ms(2021, 1, 15, 12, 0)), -5 * 3600);
    cr_assert_eq(agg__tz_offset(&ny, utc_ms(2021, 7, 15, 12, 0)), -4 * 3600);
    cr_assert_eq(agg__tz_offset(&ny, utc_ms(2021, 3, 14, 6, 59)), -5 * 3600);
    cr_assert_eq(agg__tz_offset(&ny, utc_ms(2021, 3, 14, 7, 0)), -4 * 3600);
    cr_assert_eq(agg__tz_offset(&ny, utc_ms(2061, 7, 15, 12, 0)), -4 * 3600, "beyond 2037");
    /* local -> UTC: plain, gap (02:30 does not exist on 2021-03-14), overlap (01:30 twice
     * on 2021-11-07: the first, EDT, is taken). */
    cr_assert_eq(agg__tz_to_utc(&ny, utc_ms(2021, 1, 15, 7, 0)), utc_ms(2021, 1, 15, 12, 0));
    cr_assert_eq(agg__tz_to_utc(&ny, utc_ms(2021, 3, 14, 2, 30)), utc_ms(2021, 3, 14, 7, 30));
    cr_assert_eq(agg__tz_to_utc(&ny, utc_ms(2021, 11, 7, 1, 30)), utc_ms(2021, 11, 7, 5, 30));
    /* round trips away from transitions */
    for (int64_t t = utc_ms(1980, 1, 1, 0, 0); t < utc_ms(2040, 1, 1, 0, 0);
         t += 86400000LL * 7 + 3600000LL * 5) {
        int32_t off = agg__tz_offset(&ny, t);
        if (agg__tz_offset(&ny, t - 7200000) != off || agg__tz_offset(&ny, t + 7200000) != off)
            continue;  /* within two hours of a transition */
        cr_assert_eq(agg__tz_to_utc(&ny, agg__tz_to_local(&ny, t)), t);
    }
}

/* ---------------------------------------------------------------- threads */

static const char *const names[] = {"America/New_York", "Europe/London", "Asia/Tokyo",
                                    "Australia/Sydney", "America/Los_Angeles", "Europe/Paris",
                                    "Asia/Kolkata", "UTC"};
static const int32_t jan_offsets[] = {-18000, 0, 32400, 39600, -28800, 3600, 19800, 0};

static void *worker(void *arg)
{
    intptr_t bad = 0;
    int64_t jan = utc_ms(2022, 1, 10, 12, 0);
    for (int round = 0; round < 2000; round++) {
        int i = (int)(((intptr_t)arg + round) % 8);
        agg__tz_t tz, again;
        bq_error_t err;
        if (!agg__tz_parse(names[i], strlen(names[i]), &tz, &err) ||
            !agg__tz_parse(names[i], strlen(names[i]), &again, &err) || tz.zone != again.zone ||
            agg__tz_offset(&tz, jan) != jan_offsets[i])
            bad++;
    }
    return (void *)bad;
}

Test(agg_tz, cache_is_shared_between_threads)
{
    pthread_t th[8];
    for (intptr_t i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_eq((intptr_t)r, 0, "thread %d saw %ld wrong answers", i, (long)(intptr_t)r);
    }
}
