/*
 * wire_log.c: the server's log (DESIGN.md section 11). One line per event on stderr,
 * written with a single write(2) so lines from several threads never interleave.
 * Levels: 0 errors and startup, 1 connections and failed commands, 2 slow operations and
 * checkpoints, 3 every command.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

int wire_log_level = 0;

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
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
