/*
 * wire_log.c: the server's log (DESIGN.md section 11). One line per event on stderr,
 * written with a single write(2) so lines from several threads never interleave.
 * Levels: 0 errors and startup, 1 connections and failed commands, 2 slow operations and
 * checkpoints, 3 every command.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wire_int.h"

int wire_log_level = 0;

/* The most recent lines, for getLog "global". */
#define RECENT_LINES 1024
#define RECENT_LINE_MAX 512
static struct {
    pthread_mutex_t lock;
    char lines[RECENT_LINES][RECENT_LINE_MAX];
    uint64_t total; /* lines ever written; the newest is at (total - 1) % RECENT_LINES */
} recent = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void recent_add(const char *line, size_t n)
{
    if (n >= RECENT_LINE_MAX)
        n = RECENT_LINE_MAX - 1;
    pthread_mutex_lock(&recent.lock);
    char *slot = recent.lines[recent.total % RECENT_LINES];
    memcpy(slot, line, n);
    slot[n] = '\0';
    recent.total++;
    pthread_mutex_unlock(&recent.lock);
}

void wire_log_append_recent(bson_t *reply)
{
    bson_t arr;
    pthread_mutex_lock(&recent.lock);
    uint64_t total = recent.total;
    uint64_t first = total > RECENT_LINES ? total - RECENT_LINES : 0;
    BSON_APPEND_INT64(reply, "totalLinesWritten", (int64_t)total);
    BSON_APPEND_ARRAY_BEGIN(reply, "log", &arr);
    for (uint64_t i = first; i < total; i++) {
        char key[24];
        snprintf(key, sizeof key, "%llu", (unsigned long long)(i - first));
        BSON_APPEND_UTF8(&arr, key, recent.lines[i % RECENT_LINES]);
    }
    bson_append_array_end(reply, &arr);
    pthread_mutex_unlock(&recent.lock);
}

void wire_log(int level, const char *fmt, ...)
{
    if (level > wire_log_level)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ [%d] ", ts.tv_nsec / 1000000L,
                          level);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    recent_add(line, n);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
