/*
 * bq_key.h: equality keys. bq_key_build() turns a BSON value into bytes that are equal
 * exactly when MongoDB considers the values equal (1 == 1.0 == NumberLong(1); "a" as
 * string or symbol; null and undefined; documents field by field), so hash tables (the _id
 * index, $group keys, $addToSet) can hash and compare raw bytes. The bytes are not ordered
 * like MongoDB's sort order: use bq_value_compare for that.
 */
#ifndef BQ_KEY_H
#define BQ_KEY_H

#include <bson/bson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bq_key {
    uint8_t *data;  /* owned (heap) unless it fits in inline_buf */
    size_t len, cap;
    uint8_t inline_buf[64];
} bq_key_t;

void bq_key_init(bq_key_t *key);
void bq_key_cleanup(bq_key_t *key);
/* Resets key and builds the key of value into it. */
void bq_key_build(bq_key_t *key, const bson_value_t *value);
/* bq_key_build where strings are equal when collation c says so (their ICU sort keys);
 * c NULL is bq_key_build. For distinct, $group and $addToSet under a collation; never for
 * the _id index. */
struct bq_collation;
void bq_key_build_collated(bq_key_t *key, const bson_value_t *value,
                           const struct bq_collation *c);
/* 64-bit hash of a key's bytes. */
uint64_t bq_key_hash(const uint8_t *data, size_t len);

#endif
