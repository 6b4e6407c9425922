/*
 * bq_test_util.h: helpers shared by the bsonq unit tests: parse relaxed Extended JSON
 * into documents and values, print values for failure messages.
 */
#ifndef BQ_TEST_UTIL_H
#define BQ_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdlib.h>

#include "bq.h"

/* Parses a JSON document; fails the test (naming it) if it does not parse. */
static inline bson_t *tu_doc(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    cr_assert_not_null(b, "bad test JSON %s: %s", json, e.message);
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
