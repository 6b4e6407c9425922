/*
 * bq_key.c: equality keys (see bq_key.h). Each value is written as a type-class tag and a
 * normalized payload:
 *   numbers   integral values that fit int64: tag 'N' + 8 bytes; other doubles: 'D' + the
 *             double's bits (with -0.0 folded into the integral form); NaN: 'n';
 *             non-integral Decimal128: 'M' + its canonical string
 *   strings and symbols: 'S' + bytes + NUL     null and undefined: '0'
 *   documents 'O' + (name NUL key)* + 'e'      arrays 'A' + (key)* + 'e'
 *   others    the BSON type byte + the raw value bytes
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"
#include "bq_key.h"

void bq_key_init(bq_key_t *key)
{
    key->data = key->inline_buf;
    key->len = 0;
    key->cap = sizeof key->inline_buf;
}

void bq_key_cleanup(bq_key_t *key)
{
    if (key->data != key->inline_buf)
        free(key->data);
    bq_key_init(key);
}

static void put(bq_key_t *key, const void *p, size_t n)
{
    if (key->len + n > key->cap) {
        size_t cap = key->cap * 2;
        while (cap < key->len + n)
            cap *= 2;
        uint8_t *d = key->data == key->inline_buf ? malloc(cap) : realloc(key->data, cap);
        if (!d)
            abort(); /* out of memory: as libbson does */
        if (key->data == key->inline_buf)
            memcpy(d, key->inline_buf, key->len);
        key->data = d;
        key->cap = cap;
    }
    memcpy(key->data + key->len, p, n);
    key->len += n;
}

static void put_tag(bq_key_t *key, char tag)
{
    put(key, &tag, 1);
}

static void put_double(bq_key_t *key, double d)
{
    if (isnan(d)) {
        put_tag(key, 'n');
    } else if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        int64_t i = (int64_t)d;
        put_tag(key, 'N');
        put(key, &i, sizeof i);
    } else {
        put_tag(key, 'D');
        put(key, &d, sizeof d);
    }
}

static void put_value(bq_key_t *key, const bson_value_t *v);

/* The collation string keys are built with (bq_key_build_collated), NULL for bytes. Set
 * only for the duration of one build on this thread. */
static __thread const bq_collation_t *key_collation;

static void put_string(bq_key_t *key, const char *s, size_t len)
{
    put_tag(key, 'S');
    if (key_collation) {
        size_t klen;
        uint8_t *k = bq__collation_key(key_collation, s, len, &klen);
        put(key, k, klen);
        free(k);
    } else {
        put(key, s, len);
    }
    put_tag(key, '\0');
}

static void put_doc(bq_key_t *key, const uint8_t *data, uint32_t len, bool array)
{
    bson_t doc;
    bson_iter_t it;
    put_tag(key, array ? 'A' : 'O');
    if (bson_init_static(&doc, data, len) && bson_iter_init(&it, &doc)) {
        while (bson_iter_next(&it)) {
            if (!array)
                put(key, bson_iter_key(&it), bson_iter_key_len(&it) + 1);
            put_value(key, bson_iter_value(&it));
        }
    }
    put_tag(key, 'e');
}

static void put_value(bq_key_t *key, const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        put_double(key, (double)v->value.v_int32);
        break;
    case BSON_TYPE_INT64: {
        int64_t i = v->value.v_int64;
        put_tag(key, 'N');
        put(key, &i, sizeof i);
        break;
    }
    case BSON_TYPE_DOUBLE:
        put_double(key, v->value.v_double);
        break;
    case BSON_TYPE_DECIMAL128: {
        char s[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, s);
        char *end;
        double d = strtod(s, &end);
        /* Integral decimals equal to a double key alike; others keep their text. */
        if (*end == '\0' && d == floor(d) && fabs(d) < 9007199254740992.0)
            put_double(key, d);
        else if (strcmp(s, "NaN") == 0 || strcmp(s, "-NaN") == 0)
            put_tag(key, 'n');
        else {
            put_tag(key, 'M');
            put(key, s, strlen(s) + 1);
        }
        break;
    }
    case BSON_TYPE_UTF8:
        put_string(key, v->value.v_utf8.str, v->value.v_utf8.len);
        break;
    case BSON_TYPE_SYMBOL:
        put_string(key, v->value.v_symbol.symbol, v->value.v_symbol.len);
        break;
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        put_tag(key, '0');
        break;
    case BSON_TYPE_DOCUMENT:
        put_doc(key, v->value.v_doc.data, v->value.v_doc.data_len, false);
        break;
    case BSON_TYPE_ARRAY:
        put_doc(key, v->value.v_doc.data, v->value.v_doc.data_len, true);
        break;
    default: {
        /* Everything else compares by its exact bytes: wrap it in a one-field document
         * and take the value part. */
        bson_t tmp = BSON_INITIALIZER;
        bson_append_value(&tmp, "", 0, v);
        const uint8_t *d = bson_get_data(&tmp);
        /* header 4 bytes, type 1, empty name 1, value..., trailing NUL 1 */
        put(key, d + 4, tmp.len - 4 - 1);
        bson_destroy(&tmp);
        break;
    }
    }
}

void bq_key_build(bq_key_t *key, const bson_value_t *value)
{
    key->len = 0;
    put_value(key, value);
}

void bq_key_build_collated(bq_key_t *key, const bson_value_t *value,
                           const struct bq_collation *c)
{
    key_collation = c;
    bq_key_build(key, value);
    key_collation = NULL;
}

uint64_t bq_key_hash(const uint8_t *data, size_t len)
{
    /* FNV-1a, then a final mix: keys are short and this is not exposed to attackers'
     * collision games beyond their own collections. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}
