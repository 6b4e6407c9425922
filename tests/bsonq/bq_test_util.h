/*
 * bq_test_util.h: helpers shared by the bsonq unit tests: parse relaxed Extended JSON
 * into documents and values, print values for failure messages.
 */
#ifndef BQ_TEST_UTIL_H
#define BQ_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "bq.h"

/* Parses a JSON document; fails the test (naming it) if it does not parse. */
static inline bson_t *tu_doc(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    cr_assert_not_null(b, "bad test JSON %s: %s", json, e.message);
    return b;
}

/* Copies src into dst, renaming keys that start with '#' to start with '$'. libbson's JSON
 * reader takes {"$type": ...}, {"$regex": ...} and {"$options": ...} for legacy Extended
 * JSON, so tables write those operators as #type, #regex and #options. */
static inline void tu_rekey(bson_t *dst, const bson_t *src)
{
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, src));
    while (bson_iter_next(&it)) {
        char key[256];
        snprintf(key, sizeof key, "%s", bson_iter_key(&it));
        if (key[0] == '#')
            key[0] = '$';
        bson_type_t t = bson_iter_type(&it);
        if (t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY) {
            uint32_t len;
            const uint8_t *data;
            bson_t sub, child;
            if (t == BSON_TYPE_DOCUMENT) {
                bson_iter_document(&it, &len, &data);
                bson_append_document_begin(dst, key, -1, &child);
            } else {
                bson_iter_array(&it, &len, &data);
                bson_append_array_begin(dst, key, -1, &child);
            }
            cr_assert(bson_init_static(&sub, data, len));
            tu_rekey(&child, &sub);
            if (t == BSON_TYPE_DOCUMENT)
                bson_append_document_end(dst, &child);
            else
                bson_append_array_end(dst, &child);
        } else {
            bson_append_value(dst, key, -1, bson_iter_value(&it));
        }
    }
}

/* Parses JSON written with single quotes (tables stay readable): ' becomes ", and keys
 * written #op become $op (see tu_rekey). */
static inline bson_t *tu_docq(const char *json)
{
    size_t n = strlen(json);
    char *buf = malloc(n + 1);
    cr_assert_not_null(buf);
    for (size_t i = 0; i <= n; i++)
        buf[i] = json[i] == '\'' ? '"' : json[i];
    bson_t *raw = tu_doc(buf);
    free(buf);
    bson_t *b = bson_new();
    tu_rekey(b, raw);
    bson_destroy(raw);
    return b;
}

/* Parses {"v": <json>} and returns the value of v (borrowed from *holder). */
static inline bson_value_t tu_val(const char *json, bson_t **holder)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "{\"v\": %s}", json);
    *holder = tu_doc(buf);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, *holder, "v"), "no v in %s", buf);
    return *bson_iter_value(&it);
}

/* Canonical-ish text of a value for messages; caller frees with bson_free. */
static inline char *tu_str(const bson_value_t *v)
{
    bson_t b = BSON_INITIALIZER;
    bson_append_value(&b, "v", 1, v);
    char *s = bson_as_relaxed_extended_json(&b, NULL);
    bson_destroy(&b);
    return s;
}

#endif
