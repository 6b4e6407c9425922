/*
 * wire_util.c: small helpers the handlers share.
 */
#include <sys/time.h>

#include "wire_int.h"

void wire_append_now(bson_t *doc, const char *key)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    bson_append_date_time(doc, key, -1, (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000);
}
