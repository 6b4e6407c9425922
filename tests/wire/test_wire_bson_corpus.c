/*
 * test_wire_bson_corpus.c: runs the BSON corpus (the drivers' bson-corpus spec tests, found
 * under $NEDB_SPECS/bson-corpus/tests) through wire_frame_parse(). Every "decodeErrors" case
 * is a byte string a BSON decoder must reject; wrapped as an OP_MSG body, as a document of
 * an OP_MSG kind-1 sequence and as an OP_QUERY query, the parser must reject it (an error
 * reply with code InvalidBSON, or closing the connection) and never accept or crash on it.
 * Every "valid" case's canonical_bson must parse as a body and as a sequence document and
 * come back byte for byte. The JSON files are read with libbson's own JSON parser. Each
 * test counts its cases and fails when it saw none, so a missing corpus cannot pass.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "wire_frame.h"

/* ---- corpus access ---- */

typedef void (*case_fn)(const char *file, const char *desc, const uint8_t *bson, size_t len);

static bool hex_decode(const char *hex, uint8_t **out, size_t *len)
{
    size_t n = strlen(hex);
    if (n % 2)
        return false;
    uint8_t *b = malloc(n / 2 + 1);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(b);
            return false;
        }
        b[i] = (uint8_t)v;
    }
    *out = b;
    *len = n / 2;
    return true;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot open %s", path);
    cr_assert_eq(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    cr_assert_geq(n, 0);
    rewind(fp);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, fp), (size_t)n);
    s[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return s;
}

/* Calls fn for every case of array `array` ("valid" or "decodeErrors") in every corpus file,
 * with the hex field `field` decoded. Returns the number of cases. */
static size_t corpus_each(const char *array, const char *field, case_fn fn)
{
    const char *specs = getenv("NEDB_SPECS");
    cr_assert_not_null(specs, "NEDB_SPECS is not set (the test runner sets it)");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bson-corpus/tests", specs);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);

    size_t cases = 0, files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".json") != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t len;
        char *json = read_file(path, &len);
        bson_t doc;
        bson_error_t berr;
        cr_assert(bson_init_from_json(&doc, json, (ssize_t)len, &berr), "%s: %s", path,
                  berr.message);
        free(json);
        files++;

        bson_iter_t it, arr;
        if (bson_iter_init_find(&it, &doc, array) && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &arr)) {
            while (bson_iter_next(&arr)) {
                bson_iter_t c;
                cr_assert(BSON_ITER_HOLDS_DOCUMENT(&arr));
                cr_assert(bson_iter_recurse(&arr, &c));
                const char *desc = "?", *hex = NULL;
                while (bson_iter_next(&c)) {
                    if (strcmp(bson_iter_key(&c), "description") == 0)
                        desc = bson_iter_utf8(&c, NULL);
                    else if (strcmp(bson_iter_key(&c), field) == 0)
                        hex = bson_iter_utf8(&c, NULL);
                }
                if (!hex)
                    continue;
                uint8_t *bytes;
                size_t blen;
                cr_assert(hex_decode(hex, &bytes, &blen), "%s: %s: bad hex", de->d_name, desc);
                fn(de->d_name, desc, bytes, blen);
                free(bytes);
                cases++;
            }
        }
        bson_destroy(&doc);
    }
    closedir(d);
    cr_assert_gt(files, 10, "only %zu corpus files in %s", files, dir);
    return cases;
}

/* ---- frames ---- */

typedef struct fbuf {
    uint8_t *b;
    size_t n, cap;
} fbuf_t;

static void put(fbuf_t *f, const void *p, size_t n)
{
    if (f->n + n > f->cap) {
        f->cap = (f->n + n) * 2 + 64;
        f->b = realloc(f->b, f->cap);
        cr_assert_not_null(f->b);
    }
    if (n)
        memcpy(f->b + f->n, p, n);
    f->n += n;
}

static void put_i32(fbuf_t *f, int32_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    put(f, le, 4);
}

static void set_i32(fbuf_t *f, size_t at, int32_t v)
{
    uint32_t u = (uint32_t)v;
    f->b[at] = (uint8_t)u;
    f->b[at + 1] = (uint8_t)(u >> 8);
    f->b[at + 2] = (uint8_t)(u >> 16);
    f->b[at + 3] = (uint8_t)(u >> 24);
}

static fbuf_t frame_begin(int32_t opcode)
{
    fbuf_t f = {0};
    put_i32(&f, 0);
    put_i32(&f, 1);
    put_i32(&f, 0);
    put_i32(&f, opcode);
    return f;
}

static void frame_end(fbuf_t *f)
{
    set_i32(f, 0, (int32_t)f->n);
}

/* OP_MSG: {body} */
static fbuf_t as_body(const uint8_t *bson, size_t len)
{
    fbuf_t f = frame_begin(WIRE_OP_MSG);
    put_i32(&f, 0);
    put(&f, "\0", 1);
    put(&f, bson, len);
    frame_end(&f);
    return f;
}

/* OP_MSG: {insert: "c", $db: "db"} plus a "documents" sequence holding `bson`. */
static fbuf_t as_sequence(const uint8_t *bson, size_t len)
{
    bson_t *body = BCON_NEW("insert", BCON_UTF8("c"), "$db", BCON_UTF8("db"));
    fbuf_t f = frame_begin(WIRE_OP_MSG);
    put_i32(&f, 0);
    put(&f, "\0", 1);
    put(&f, bson_get_data(body), body->len);
    put(&f, "\1", 1);
    size_t at = f.n;
    put_i32(&f, 0);
    put(&f, "documents", 10);
    put(&f, bson, len);
    set_i32(&f, at, (int32_t)(f.n - at));
    frame_end(&f);
    bson_destroy(body);
    return f;
}

/* OP_QUERY on admin.$cmd with `bson` as the query. */
static fbuf_t as_query(const uint8_t *bson, size_t len)
{
    fbuf_t f = frame_begin(WIRE_OP_QUERY);
    put_i32(&f, 0);
    put(&f, "admin.$cmd", 11);
    put_i32(&f, 0);
    put_i32(&f, -1);
    put(&f, bson, len);
    frame_end(&f);
    return f;
}

/* Parses f from an exactly-sized heap copy (so ASan sees any overread). */
static wire_parse_result_t parse(fbuf_t *f, wire_msg_t *msg, bq_error_t *err)
{
    uint8_t *copy = malloc(f->n);
    cr_assert_not_null(copy);
    memcpy(copy, f->b, f->n);
    bq_error_clear(err);
    wire_parse_result_t r = wire_frame_parse(copy, f->n, msg, err);
    free(copy);
    free(f->b);
    f->b = NULL;
    return r;
}

/* ---- decodeErrors ---- */

static size_t rejected_closed, rejected_22;

static void expect_rejected(const char *how, const char *file, const char *desc, fbuf_t f)
{
    wire_msg_t msg;
    bq_error_t err;
    wire_parse_result_t r = parse(&f, &msg, &err);
    cr_expect_neq(r, WIRE_PARSE_OK, "%s %s: '%s' was accepted", how, file, desc);
    if (r == WIRE_PARSE_ERROR_REPLY) {
        cr_expect_eq(err.code, BQ_ERR_InvalidBSON, "%s %s: '%s': code %d (%s)", how, file,
                     desc, err.code, err.message);
        rejected_22++;
    } else if (r == WIRE_PARSE_CLOSE) {
        cr_expect_eq(err.code, BQ_ERR_ProtocolError);
        rejected_closed++;
    }
    cr_expect_eq(msg.body.len, 5u);
    wire_msg_cleanup(&msg);
}

static void decode_error_as_body(const char *file, const char *desc, const uint8_t *b, size_t n)
{
    expect_rejected("body", file, desc, as_body(b, n));
}

static void decode_error_as_sequence(const char *file, const char *desc, const uint8_t *b,
                                     size_t n)
{
    expect_rejected("sequence", file, desc, as_sequence(b, n));
}

static void decode_error_as_query(const char *file, const char *desc, const uint8_t *b,
                                  size_t n)
{
    expect_rejected("query", file, desc, as_query(b, n));
}

Test(wire_bson_corpus, decode_errors_rejected_as_op_msg_body)
{
    size_t n = corpus_each("decodeErrors", "bson", decode_error_as_body);
    cr_log_info("bson corpus: %zu decodeErrors rejected as OP_MSG body (%zu InvalidBSON, "
                "%zu close)",
                n, rejected_22, rejected_closed);
    cr_assert_gt(n, 50, "only %zu decodeErrors cases", n);
    cr_expect_gt(rejected_22, 0, "some cases are well delimited and must be InvalidBSON");
}

Test(wire_bson_corpus, decode_errors_rejected_as_sequence_document)
{
    size_t n = corpus_each("decodeErrors", "bson", decode_error_as_sequence);
    cr_log_info("bson corpus: %zu decodeErrors rejected as kind-1 documents", n);
    cr_assert_gt(n, 50, "only %zu decodeErrors cases", n);
}

Test(wire_bson_corpus, decode_errors_rejected_as_op_query)
{
    size_t n = corpus_each("decodeErrors", "bson", decode_error_as_query);
    cr_log_info("bson corpus: %zu decodeErrors rejected as OP_QUERY queries", n);
    cr_assert_gt(n, 50, "only %zu decodeErrors cases", n);
}

/* ---- valid ---- */

static void valid_parses(const char *file, const char *desc, const uint8_t *b, size_t n)
{
    wire_msg_t msg;
    bq_error_t err;
    fbuf_t f = as_body(b, n);
    wire_parse_result_t r = parse(&f, &msg, &err);
    cr_expect_eq(r, WIRE_PARSE_OK, "body %s: '%s': %s", file, desc, err.message);
    if (r == WIRE_PARSE_OK) {
        cr_expect_eq(msg.body.len, n, "body %s: '%s'", file, desc);
        if (msg.body.len == n)
            cr_expect_arr_eq(bson_get_data(&msg.body), b, n, "body %s: '%s'", file, desc);
    }
    wire_msg_cleanup(&msg);

    f = as_sequence(b, n);
    r = parse(&f, &msg, &err);
    cr_expect_eq(r, WIRE_PARSE_OK, "sequence %s: '%s': %s", file, desc, err.message);
    if (r == WIRE_PARSE_OK) {
        bson_iter_t it, arr;
        uint32_t dlen = 0;
        const uint8_t *d = NULL;
        cr_assert(bson_iter_init_find(&it, &msg.body, "documents") &&
                  BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &arr) &&
                  bson_iter_next(&arr) && BSON_ITER_HOLDS_DOCUMENT(&arr));
        bson_iter_document(&arr, &dlen, &d);
        cr_expect_eq(dlen, n, "sequence %s: '%s'", file, desc);
        if (d && dlen == n)
            cr_expect_arr_eq(d, b, n, "sequence %s: '%s'", file, desc);
    }
    wire_msg_cleanup(&msg);
}

Test(wire_bson_corpus, valid_canonical_bson_parses)
{
    size_t n = corpus_each("valid", "canonical_bson", valid_parses);
    cr_log_info("bson corpus: %zu valid canonical_bson cases parsed", n);
    cr_assert_gt(n, 100, "only %zu valid cases", n);
}

Test(wire_bson_corpus, valid_degenerate_bson_parses)
{
    size_t n = corpus_each("valid", "degenerate_bson", valid_parses);
    cr_log_info("bson corpus: %zu valid degenerate_bson cases parsed", n);
    cr_assert_gt(n, 0, "no degenerate cases");
}
