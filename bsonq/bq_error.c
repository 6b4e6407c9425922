/*
 * bq_error.c: setting errors and naming codes. The name table is bq_codes.def; nothing else
 * in NEDB spells a codeName.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bq_error.h"

static const struct {
    int32_t code;
    const char *name;
} code_names[] = {
#define BQ_CODE(name, num) {(num), #name},
#include "bq_codes.def"
#undef BQ_CODE
};

const char *bq_code_name(int32_t code)
{
    for (size_t i = 0; i < sizeof code_names / sizeof code_names[0]; i++)
        if (code_names[i].code == code)
            return code_names[i].name;
    return "Location";
}

char *bq_code_name_write(int32_t code, char *buf, size_t size)
{
    const char *name = bq_code_name(code);
    if (strcmp(name, "Location") == 0)
        snprintf(buf, size, "Location%d", code);
    else
        snprintf(buf, size, "%s", name);
    return buf;
}

void bq__error_set(bq_error_t *err, int32_t code, const char *file, int line,
                   const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->code = code;
    err->code_name = bq_code_name(code);
    err->file = file;
    err->line = line;
}

void bq_error_prefix(bq_error_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[BQ_ERROR_MSG_MAX], old[BQ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Truncation is intended: the message keeps at most BQ_ERROR_MSG_MAX - 1 bytes. */
    size_t n = strlen(prefix);
    if (n > sizeof err->message - 1)
        n = sizeof err->message - 1;
    memcpy(err->message, prefix, n);
    size_t room = sizeof err->message - 1 - n;
    size_t sep = room < 2 ? room : 2;
    memcpy(err->message + n, ": ", sep);
    n += sep;
    room -= sep;
    size_t m = strlen(old);
    if (m > room)
        m = room;
    memcpy(err->message + n, old, m);
    err->message[n + m] = '\0';
}
