/*
 * test_wire_frame.c: unit tests of wire/wire_frame.c and wire/wire_crc32c.c, the pure
 * wire-protocol frame parser and builders. Frames are assembled byte by byte here (never
 * with the builders under test, except in the round-trip tests) and always parsed from a
 * heap buffer of exactly the frame's size, so that an ASan build catches any read past the
 * end. The BSON corpus cases live in test_wire_bson_corpus.c.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "wire_frame.h"

/* ---- helpers: a growable byte buffer that frames are written into ---- */

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

static void put_u8(fbuf_t *f, uint8_t v)
{
    put(f, &v, 1);
}

static void put_i32(fbuf_t *f, int32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)((uint32_t)v >> 8), (uint8_t)((uint32_t)v >> 16),
                     (uint8_t)((uint32_t)v >> 24)};
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

static void put_doc(fbuf_t *f, const bson_t *d)
{
    put(f, bson_get_data(d), d->len);
}

/* Header (length patched by frame_end) with requestID 77, responseTo 0. */
static fbuf_t frame_begin(int32_t opcode)
{
    fbuf_t f = {0};
    put_i32(&f, 0);
    put_i32(&f, 77);
    put_i32(&f, 0);
    put_i32(&f, opcode);
    return f;
}

static fbuf_t msg_begin(uint32_t flags)
{
    fbuf_t f = frame_begin(WIRE_OP_MSG);
    put_i32(&f, (int32_t)flags);
    return f;
}

static void put_body(fbuf_t *f, const bson_t *d)
{
    put_u8(f, 0);
    put_doc(f, d);
}

static void put_seq(fbuf_t *f, const char *id, bson_t *const *docs, size_t n)
{
    put_u8(f, 1);
    size_t at = f->n;
    put_i32(f, 0);
    put(f, id, strlen(id) + 1);
    for (size_t i = 0; i < n; i++)
        put_doc(f, docs[i]);
    set_i32(f, at, (int32_t)(f->n - at));
}

/* Patches messageLength; with `checksum`, appends the CRC-32C of everything before it. */
static void frame_end(fbuf_t *f, bool checksum)
{
    set_i32(f, 0, (int32_t)(f->n + (checksum ? 4 : 0)));
    if (checksum) {
        uint32_t crc = wire_crc32c(0, f->b, f->n);
        put_i32(f, (int32_t)crc);
    }
}

/* Parses bytes[0..len) from an exactly-sized heap copy. */
static wire_parse_result_t parse_bytes(const uint8_t *bytes, size_t len, wire_msg_t *msg,
                                       bq_error_t *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    bq_error_clear(err);
    wire_parse_result_t r = wire_frame_parse(copy, len, msg, err);
    free(copy);
    return r;
}

static wire_parse_result_t parse_f(const fbuf_t *f, wire_msg_t *msg, bq_error_t *err)
{
    return parse_bytes(f->b, f->n, msg, err);
}

/* Documents from relaxed JSON with single quotes; freed by the suite's fini. */
static bson_t *docs_made[64];
static size_t ndocs_made;

static bson_t *J(const char *json)
{
    char *s = strdup(json);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    bson_error_t e;
    bson_t *d = bson_new_from_json((const uint8_t *)s, -1, &e);
    free(s);
    cr_assert_not_null(d, "bad test JSON %s: %s", json, e.message);
    cr_assert_lt(ndocs_made, sizeof docs_made / sizeof docs_made[0]);
    docs_made[ndocs_made++] = d;
    return d;
}

static void free_docs(void)
{
    for (size_t i = 0; i < ndocs_made; i++)
        bson_destroy(docs_made[i]);
    ndocs_made = 0;
}

TestSuite(wire_frame, .fini = free_docs);

static void expect_body(const wire_msg_t *msg, const char *json)
{
    bson_t *want = J(json);
    char *got = bson_as_canonical_extended_json(&msg->body, NULL);
    char *exp = bson_as_canonical_extended_json(want, NULL);
    cr_expect(bson_equal(&msg->body, want), "body %s, expected %s", got, exp);
    bson_free(got);
    bson_free(exp);
}

/* A document whose key "s" holds a string with an invalid UTF-8 byte: well delimited,
 * rejected by validation. */
static bson_t *bad_utf8_doc(void)
{
    bson_t *d = bson_new();
    bson_append_utf8(d, "s", 1, "ab\xff", 3);
    cr_assert_lt(ndocs_made, sizeof docs_made / sizeof docs_made[0]);
    docs_made[ndocs_made++] = d;
    return d;
}

/* ---- CRC-32C ---- */

static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

Test(wire_frame, crc32c_known_vectors)
{
    /* "123456789" is the catalogue check value; the rest are RFC 3720 B.4. */
    uint8_t zeros[32] = {0}, ones[32], inc[32], dec[32];
    memset(ones, 0xFF, sizeof ones);
    for (int i = 0; i < 32; i++) {
        inc[i] = (uint8_t)i;
        dec[i] = (uint8_t)(31 - i);
    }
    struct {
        const uint8_t *p;
        size_t n;
        uint32_t crc;
    } v[] = {
        {(const uint8_t *)"123456789", 9, 0xE3069283u},
        {(const uint8_t *)"", 0, 0x00000000u},
        {(const uint8_t *)"a", 1, 0xC1D04330u},
        {zeros, 32, 0x8A9136AAu},
        {ones, 32, 0x62A8AB43u},
        {inc, 32, 0x46DD794Eu},
        {dec, 32, 0x113FDB5Cu},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        cr_expect_eq(wire_crc32c(0, v[i].p, v[i].n), v[i].crc, "vector %zu: 0x%08X", i,
                     wire_crc32c(0, v[i].p, v[i].n));
}

Test(wire_frame, crc32c_matches_bitwise_reference_and_chains)
{
    uint8_t data[1000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof data; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    for (size_t n = 0; n <= sizeof data; n += 37) {
        uint32_t whole = wire_crc32c(0, data, n);
        cr_expect_eq(whole, crc32c_bitwise(data, n), "length %zu", n);
        size_t cut = n / 3;
        cr_expect_eq(wire_crc32c(wire_crc32c(0, data, cut), data + cut, n - cut), whole,
                     "chained at %zu of %zu", cut, n);
    }
}

/* ---- peek ---- */

Test(wire_frame, peek_reports_need_more_ready_and_invalid)
{
    fbuf_t f = msg_begin(0);
    put_body(&f, J("{'ping': 1}"));
    frame_end(&f, false);

    wire_header_t hdr;
    bq_error_t err;
    for (size_t n = 0; n < f.n; n++) {
        memset(&hdr, 0, sizeof hdr);
        cr_expect_eq(wire_frame_peek(f.b, n, &hdr, &err), WIRE_FRAME_NEED_MORE, "n=%zu", n);
        if (n >= WIRE_HEADER_SIZE)
            cr_expect_eq(hdr.length, (int32_t)f.n);
    }
    cr_expect_eq(wire_frame_peek(f.b, f.n, &hdr, &err), WIRE_FRAME_READY);
    cr_expect_eq(hdr.length, (int32_t)f.n);
    cr_expect_eq(hdr.request_id, 77);
    cr_expect_eq(hdr.response_to, 0);
    cr_expect_eq(hdr.opcode, WIRE_OP_MSG);
    /* More bytes than one frame (pipelining): still READY for the first. */
    put(&f, f.b, 8);
    cr_expect_eq(wire_frame_peek(f.b, f.n, &hdr, &err), WIRE_FRAME_READY);
    free(f.b);

    int32_t bad[] = {0, 1, 15, -1, INT32_MIN, WIRE_MAX_MESSAGE_SIZE + 1, INT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fbuf_t g = frame_begin(WIRE_OP_MSG);
        set_i32(&g, 0, bad[i]);
        bq_error_clear(&err);
        cr_expect_eq(wire_frame_peek(g.b, 4, &hdr, &err), WIRE_FRAME_INVALID, "len %d", bad[i]);
        cr_expect_eq(err.code, BQ_ERR_ProtocolError);
        cr_expect_eq(wire_frame_peek(g.b, g.n, NULL, NULL), WIRE_FRAME_INVALID);
        free(g.b);
    }
    fbuf_t g = frame_begin(WIRE_OP_MSG);
    set_i32(&g, 0, WIRE_MAX_MESSAGE_SIZE);
    cr_expect_eq(wire_frame_peek(g.b, g.n, &hdr, &err), WIRE_FRAME_NEED_MORE);
    set_i32(&g, 0, WIRE_HEADER_SIZE);
    cr_expect_eq(wire_frame_peek(g.b, g.n, &hdr, &err), WIRE_FRAME_READY);
    free(g.b);
}

/* ---- OP_MSG: valid ---- */

Test(wire_frame, op_msg_kind0_body)
{
    fbuf_t f = msg_begin(0);
    put_body(&f, J("{'hello': 1, '$db': 'admin'}"));
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_assert_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "%s", err.message);
    cr_expect_eq(msg.hdr.opcode, WIRE_OP_MSG);
    cr_expect_eq(msg.hdr.request_id, 77);
    cr_expect_eq(msg.hdr.length, (int32_t)f.n);
    cr_expect_eq(msg.flags, 0u);
    cr_expect_str_empty(msg.ns);
    expect_body(&msg, "{'hello': 1, '$db': 'admin'}");
    wire_msg_cleanup(&msg);
    wire_msg_cleanup(&msg); /* idempotent */
    free(f.b);
}

Test(wire_frame, op_msg_kind1_sequence_spliced_into_body)
{
    bson_t *docs[] = {J("{'_id': 1, 'x': 'a'}"), J("{'_id': 2}"), J("{'_id': 3, 'y': [1, 2]}")};
    fbuf_t f = msg_begin(0);
    put_body(&f, J("{'insert': 'c', '$db': 'test'}"));
    put_seq(&f, "documents", docs, 3);
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_assert_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "%s", err.message);
    expect_body(&msg, "{'insert': 'c', '$db': 'test', 'documents': [{'_id': 1, 'x': 'a'}, "
                      "{'_id': 2}, {'_id': 3, 'y': [1, 2]}]}");
    wire_msg_cleanup(&msg);
    free(f.b);
}

Test(wire_frame, op_msg_sequences_before_body_empty_and_several)
{
    bson_t *u[] = {J("{'q': {}, 'u': {'$set': {'a': 1}}}")};
    bson_t *l[] = {J("{'ns': 'x.y'}"), J("{'ns': 'x.z'}")};
    fbuf_t f = msg_begin(0);
    put_seq(&f, "updates", u, 1);
    put_seq(&f, "empty", NULL, 0);
    put_body(&f, J("{'update': 'c', '$db': 'test'}"));
    put_seq(&f, "nsInfo", l, 2);
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_assert_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "%s", err.message);
    expect_body(&msg, "{'update': 'c', '$db': 'test', "
                      "'updates': [{'q': {}, 'u': {'$set': {'a': 1}}}], 'empty': [], "
                      "'nsInfo': [{'ns': 'x.y'}, {'ns': 'x.z'}]}");
    wire_msg_cleanup(&msg);
    free(f.b);
}

Test(wire_frame, op_msg_string_with_embedded_nul_is_valid)
{
    bson_t *d = bson_new();
    bson_append_utf8(d, "s", 1, "a\0b", 3);
    fbuf_t f = msg_begin(0);
    put_body(&f, d);
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "%s", err.message);
    cr_expect(bson_equal(&msg.body, d));
    wire_msg_cleanup(&msg);
    bson_destroy(d);
    free(f.b);
}

/* ---- OP_MSG: flags and checksum ---- */

Test(wire_frame, op_msg_checksum_good_and_bad)
{
    bson_t *docs[] = {J("{'a': 1}")};
    fbuf_t f = msg_begin(WIRE_MSG_CHECKSUM_PRESENT);
    put_body(&f, J("{'insert': 'c', '$db': 'd'}"));
    put_seq(&f, "documents", docs, 1);
    frame_end(&f, true);
    wire_msg_t msg;
    bq_error_t err;
    cr_assert_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "%s", err.message);
    cr_expect_eq(msg.flags, WIRE_MSG_CHECKSUM_PRESENT);
    expect_body(&msg, "{'insert': 'c', '$db': 'd', 'documents': [{'a': 1}]}");
    wire_msg_cleanup(&msg);

    /* Flip each byte after the header in turn (the checksum included): never OK. */
    for (size_t i = WIRE_HEADER_SIZE + 4; i < f.n; i++) {
        f.b[i] ^= 0x20;
        cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE, "flipped byte %zu", i);
        cr_expect_eq(err.code, BQ_ERR_ProtocolError);
        wire_msg_cleanup(&msg);
        f.b[i] ^= 0x20;
    }
    /* The checksum covers the header too. */
    f.b[4] ^= 1;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE);
    cr_expect(strstr(err.message, "checksum") != NULL, "%s", err.message);
    wire_msg_cleanup(&msg);
    free(f.b);

    /* checksumPresent but the message ends right after the flags. */
    fbuf_t g = msg_begin(WIRE_MSG_CHECKSUM_PRESENT);
    frame_end(&g, false);
    cr_expect_eq(parse_f(&g, &msg, &err), WIRE_PARSE_CLOSE);
    wire_msg_cleanup(&msg);
    free(g.b);
}

Test(wire_frame, op_msg_more_to_come_and_exhaust_surface_in_flags)
{
    uint32_t cases[] = {WIRE_MSG_MORE_TO_COME, WIRE_MSG_EXHAUST_ALLOWED,
                        WIRE_MSG_MORE_TO_COME | WIRE_MSG_EXHAUST_ALLOWED | 1u << 20,
                        WIRE_MSG_MORE_TO_COME | WIRE_MSG_CHECKSUM_PRESENT, 0x80000000u};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fbuf_t f = msg_begin(cases[i]);
        put_body(&f, J("{'insert': 'c', '$db': 'd', 'writeConcern': {'w': 0}}"));
        frame_end(&f, (cases[i] & WIRE_MSG_CHECKSUM_PRESENT) != 0);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "flags 0x%X: %s", cases[i],
                     err.message);
        cr_expect_eq(msg.flags, cases[i]);
        wire_msg_cleanup(&msg);
        free(f.b);
    }
}

ParameterizedTestParameters(wire_frame, op_msg_unknown_required_bit_closes)
{
    static unsigned bits[] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return cr_make_param_array(unsigned, bits, sizeof bits / sizeof bits[0]);
}

ParameterizedTest(unsigned *bit, wire_frame, op_msg_unknown_required_bit_closes)
{
    fbuf_t f = msg_begin(1u << *bit);
    bson_t *d = bson_new();
    BSON_APPEND_INT32(d, "ping", 1);
    put_body(&f, d);
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE, "bit %u", *bit);
    cr_expect_eq(err.code, BQ_ERR_ProtocolError);
    cr_expect(strstr(err.message, "flag") != NULL, "%s", err.message);
    wire_msg_cleanup(&msg);
    bson_destroy(d);
    free(f.b);
}

/* ---- OP_MSG: broken structure ---- */

Test(wire_frame, op_msg_section_structure_errors_close)
{
    bson_t *body = J("{'ping': 1, '$db': 'admin'}");
    bson_t *docs[] = {J("{'a': 1}")};
    struct {
        const char *name;
        fbuf_t f;
    } c[8];
    size_t n = 0;

    c[n].name = "duplicate kind 0";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, body);
    put_body(&c[n].f, body);
    n++;

    c[n].name = "no kind 0, only a sequence";
    c[n].f = msg_begin(0);
    put_seq(&c[n].f, "documents", docs, 1);
    n++;

    c[n].name = "no sections at all";
    c[n].f = msg_begin(0);
    n++;

    c[n].name = "unknown section kind 2";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, body);
    put_u8(&c[n].f, 2);
    put_doc(&c[n].f, body);
    n++;

    c[n].name = "trailing garbage byte";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, body);
    put_u8(&c[n].f, 0x7F);
    n++;

    c[n].name = "trailing zero byte (a kind-0 with no document)";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, body);
    put_u8(&c[n].f, 0);
    n++;

    c[n].name = "too many sequences";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, body);
    for (unsigned i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "s%u", i);
        put_seq(&c[n].f, id, NULL, 0);
    }
    n++;

    c[n].name = "sequence identifier without NUL";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, body);
    put_u8(&c[n].f, 1);
    put_i32(&c[n].f, 4 + 3);
    put(&c[n].f, "abc", 3);
    n++;

    for (size_t i = 0; i < n; i++) {
        frame_end(&c[i].f, false);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&c[i].f, &msg, &err), WIRE_PARSE_CLOSE, "%s: %s", c[i].name,
                     err.message);
        cr_expect_eq(err.code, BQ_ERR_ProtocolError, "%s", c[i].name);
        cr_expect_eq(msg.body.len, 5u, "%s: body stays empty", c[i].name);
        wire_msg_cleanup(&msg);
        free(c[i].f.b);
    }
}

/* A valid frame (body + two sequences), cut short at every byte with messageLength patched
 * to match: CLOSE, except where the cut falls exactly on a section boundary, which leaves a
 * shorter but valid message. Also cut without patching (length mismatch): always CLOSE. */
Test(wire_frame, op_msg_truncated_at_every_cut_point)
{
    bson_t *docs[] = {J("{'_id': 1, 's': 'hello'}"), J("{'_id': 2, 'n': {'x': [1, 2, 3]}}")};
    fbuf_t f = msg_begin(0);
    put_body(&f, J("{'insert': 'c', '$db': 'test', 'ordered': true}"));
    size_t boundary1 = f.n;
    put_seq(&f, "documents", docs, 2);
    size_t boundary2 = f.n;
    put_seq(&f, "more", docs, 1);
    frame_end(&f, false);

    size_t closes = 0;
    for (size_t cut = 0; cut < f.n; cut++) {
        fbuf_t g = {0};
        put(&g, f.b, cut);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&g, &msg, &err), WIRE_PARSE_CLOSE, "unpatched cut %zu", cut);
        wire_msg_cleanup(&msg);
        if (cut >= 4) {
            set_i32(&g, 0, (int32_t)cut);
            wire_parse_result_t r = parse_f(&g, &msg, &err);
            if (cut == boundary1 || cut == boundary2)
                cr_expect_eq(r, WIRE_PARSE_OK, "cut at section boundary %zu", cut);
            else
                cr_expect_eq(r, WIRE_PARSE_CLOSE, "cut %zu: %d", cut, r);
            closes += r == WIRE_PARSE_CLOSE;
            wire_msg_cleanup(&msg);
        }
        free(g.b);
    }
    cr_expect_gt(closes, 100u);
    free(f.b);
}

struct bad_len {
    const char *name;
    int where;     /* 0: body document length, 1: sequence size, 2: sequence document length */
    int32_t value; /* written in place of the real length */
};

ParameterizedTestParameters(wire_frame, op_msg_bad_lengths_close)
{
    static struct bad_len cases[] = {
        {"body length 0", 0, 0},
        {"body length 4", 0, 4},
        {"body length -1", 0, -1},
        {"body length INT32_MIN", 0, INT32_MIN},
        {"body length one past the frame", 0, 1000 /* patched below */},
        {"body length INT32_MAX", 0, INT32_MAX},
        {"sequence size 0", 1, 0},
        {"sequence size 4", 1, 4},
        {"sequence size -7", 1, -7},
        {"sequence size past the frame", 1, 1000},
        {"sequence size INT32_MAX", 1, INT32_MAX},
        {"sequence document length 0", 2, 0},
        {"sequence document length 4", 2, 4},
        {"sequence document length -5", 2, -5},
        {"sequence document length past its section", 2, 1000},
    };
    return cr_make_param_array(struct bad_len, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct bad_len *c, wire_frame, op_msg_bad_lengths_close)
{
    bson_t *body = bson_new(), *doc = bson_new();
    BSON_APPEND_UTF8(body, "insert", "c");
    BSON_APPEND_UTF8(body, "$db", "d");
    BSON_APPEND_INT32(doc, "a", 1);
    fbuf_t f = msg_begin(0);
    size_t body_at = f.n + 1;
    put_body(&f, body);
    size_t seq_at = f.n + 1;
    put_seq(&f, "documents", &doc, 1);
    size_t doc_at = seq_at + 4 + strlen("documents") + 1;
    frame_end(&f, false);
    size_t at = c->where == 0 ? body_at : c->where == 1 ? seq_at : doc_at;
    int32_t v = c->value;
    if (v == 1000) /* "one past": whatever is left from there, plus one */
        v = (int32_t)(f.n - at + 1);
    set_i32(&f, at, v);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE, "%s: %s", c->name, err.message);
    cr_expect_eq(err.code, BQ_ERR_ProtocolError, "%s", c->name);
    wire_msg_cleanup(&msg);
    bson_destroy(body);
    bson_destroy(doc);
    free(f.b);
}

Test(wire_frame, header_length_mismatch_and_short_frames_close)
{
    fbuf_t f = msg_begin(0);
    put_body(&f, J("{'ping': 1}"));
    frame_end(&f, false);
    int32_t lens[] = {(int32_t)f.n - 1, (int32_t)f.n + 1, 0, -1, 15, WIRE_MAX_MESSAGE_SIZE + 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        set_i32(&f, 0, lens[i]);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE, "length field %d", lens[i]);
        wire_msg_cleanup(&msg);
    }
    wire_msg_t msg;
    cr_expect_eq(wire_frame_parse(NULL, 0, &msg, NULL), WIRE_PARSE_CLOSE);
    wire_msg_cleanup(&msg);
    free(f.b);
}

/* ---- OP_MSG: bad content in a well-delimited frame ---- */

Test(wire_frame, op_msg_invalid_bson_is_error_reply_22)
{
    bson_t *good = J("{'insert': 'c', '$db': 'd'}");
    bson_t *bad = bad_utf8_doc();
    bson_t *docs_bad[] = {J("{'a': 1}"), bad};

    struct {
        const char *name;
        fbuf_t f;
    } c[4];
    size_t n = 0;

    c[n].name = "bad UTF-8 in the body";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, bad);
    n++;

    c[n].name = "bad UTF-8 in a sequence document";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, good);
    put_seq(&c[n].f, "documents", docs_bad, 2);
    n++;

    c[n].name = "body not ending in NUL";
    c[n].f = msg_begin(0);
    size_t at = c[n].f.n + 1;
    put_body(&c[n].f, good);
    c[n].f.b[at + good->len - 1] = 1;
    n++;

    c[n].name = "bad UTF-8 in a sequence identifier";
    c[n].f = msg_begin(0);
    put_body(&c[n].f, good);
    put_seq(&c[n].f, "doc\xC3", NULL, 0);
    n++;

    for (size_t i = 0; i < n; i++) {
        frame_end(&c[i].f, false);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&c[i].f, &msg, &err), WIRE_PARSE_ERROR_REPLY, "%s: %s",
                     c[i].name, err.message);
        cr_expect_eq(err.code, BQ_ERR_InvalidBSON, "%s: code %d", c[i].name, err.code);
        cr_expect_str_eq(err.code_name, "InvalidBSON");
        cr_expect_eq(msg.hdr.request_id, 77, "the reply needs responseTo");
        cr_expect_eq(msg.body.len, 5u);
        wire_msg_cleanup(&msg);
        free(c[i].f.b);
    }
}

/* libbson 1.23's bson_validate() stops at a code-with-scope and accepts whatever follows
 * it; the parser's own walk still finds an element it cannot read after one. */
Test(wire_frame, op_msg_corrupt_element_after_code_with_scope_is_22)
{
    static const uint8_t doc[] = {
        0x20, 0, 0, 0,                            /* 32 bytes */
        0x0f, 'c', 0, 0x0f, 0, 0, 0,              /* c: code with scope, 15 bytes: */
        0x02, 0, 0, 0, 'f', 0, 0x05, 0, 0, 0, 0,  /*    code "f", scope {} */
        0x02, 'z', 0, 0xff, 0xff, 0xff, 0x7f,     /* z: a string longer than the document */
        'y', 0, 0};
    fbuf_t f = msg_begin(0);
    put_u8(&f, 0);
    put(&f, doc, sizeof doc);
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_ERROR_REPLY, "%s", err.message);
    cr_expect_eq(err.code, BQ_ERR_InvalidBSON, "code %d", err.code);
    wire_msg_cleanup(&msg);
    free(f.b);
}

Test(wire_frame, op_msg_structure_error_outranks_earlier_bad_bson)
{
    fbuf_t f = msg_begin(0);
    put_body(&f, bad_utf8_doc());
    put_u8(&f, 9); /* unknown section kind after it */
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE);
    wire_msg_cleanup(&msg);
    free(f.b);
}

Test(wire_frame, op_msg_identifier_conflicts_are_bad_value)
{
    bson_t *d[] = {J("{'a': 1}")};
    struct {
        const char *name;
        fbuf_t f;
    } c[3];

    c[0].name = "sequence named like a body field";
    c[0].f = msg_begin(0);
    put_body(&c[0].f, J("{'insert': 'c', 'documents': [], '$db': 'd'}"));
    put_seq(&c[0].f, "documents", d, 1);

    c[1].name = "two sequences with one name";
    c[1].f = msg_begin(0);
    put_body(&c[1].f, J("{'insert': 'c', '$db': 'd'}"));
    put_seq(&c[1].f, "documents", d, 1);
    put_seq(&c[1].f, "documents", d, 1);

    c[2].name = "empty identifier";
    c[2].f = msg_begin(0);
    put_body(&c[2].f, J("{'insert': 'c', '$db': 'd'}"));
    put_seq(&c[2].f, "", d, 1);

    for (size_t i = 0; i < 3; i++) {
        frame_end(&c[i].f, false);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&c[i].f, &msg, &err), WIRE_PARSE_ERROR_REPLY, "%s", c[i].name);
        cr_expect_eq(err.code, BQ_ERR_BadValue, "%s: %s", c[i].name, err.message);
        wire_msg_cleanup(&msg);
        free(c[i].f.b);
    }
    /* A dotted identifier is only a name: no dotted-path lookup into the body. */
    fbuf_t g = msg_begin(0);
    put_body(&g, J("{'a': {'b': 1}, '$db': 'd'}"));
    put_seq(&g, "a.b", d, 1);
    frame_end(&g, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&g, &msg, &err), WIRE_PARSE_OK, "%s", err.message);
    wire_msg_cleanup(&msg);
    free(g.b);
}

Test(wire_frame, error_messages_quoting_identifiers_stay_utf8)
{
    /* 81 two-byte characters: any byte cut at an even count of 40 or 100 would split one
     * unless the cut backs off. */
    char id[200] = "x";
    for (int i = 0; i < 81; i++)
        strcat(id, "\xC3\xA9");
    bson_t *d[] = {J("{'a': 1}"), bad_utf8_doc()};
    fbuf_t f[2] = {msg_begin(0), msg_begin(0)};
    put_body(&f[0], J("{'insert': 'c', '$db': 'd'}"));
    put_seq(&f[0], id, d, 1);
    put_seq(&f[0], id, d, 1);
    put_body(&f[1], J("{'insert': 'c', '$db': 'd'}"));
    put_seq(&f[1], id, d, 2);
    for (int i = 0; i < 2; i++) {
        frame_end(&f[i], false);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&f[i], &msg, &err), WIRE_PARSE_ERROR_REPLY);
        cr_expect_eq(err.code, i == 0 ? BQ_ERR_BadValue : BQ_ERR_InvalidBSON);
        cr_expect(bson_utf8_validate(err.message, strlen(err.message), false), "%s",
                  err.message);
        wire_msg_cleanup(&msg);
        free(f[i].b);
    }
}

/* A document nested `depth` levels: {a: {a: ... {} ...}}. */
static bson_t *nested_doc(size_t depth)
{
    /* Built as bytes from the inside out: each level wraps the previous in
     * <len> 0x03 'a' 0x00 <inner> 0x00. */
    size_t total = 5 + depth * 8;
    uint8_t *b = malloc(total);
    cr_assert_not_null(b);
    size_t lo = depth * 7, hi = total - depth; /* inner document occupies [lo, hi) */
    set_i32(&(fbuf_t){.b = b, .n = total, .cap = total}, lo, 5);
    b[lo + 4] = 0;
    for (size_t i = 0; i < depth; i++) {
        lo -= 7;
        b[lo + 4] = 0x03;
        b[lo + 5] = 'a';
        b[lo + 6] = 0;
        b[hi] = 0;
        hi++;
        set_i32(&(fbuf_t){.b = b, .n = total, .cap = total}, lo, (int32_t)(hi - lo));
    }
    cr_assert_eq(lo, 0u);
    cr_assert_eq(hi, total);
    bson_t *d = bson_new_from_data(b, total);
    free(b);
    cr_assert_not_null(d);
    return d;
}

Test(wire_frame, op_msg_nesting_depth_limited_without_recursion)
{
    size_t depths[] = {1, 100, 199, 250, 2000000};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        bson_t *d = nested_doc(depths[i]);
        fbuf_t f = msg_begin(0);
        put_body(&f, d);
        frame_end(&f, false);
        wire_msg_t msg;
        bq_error_t err;
        wire_parse_result_t r = parse_f(&f, &msg, &err);
        if (depths[i] < 200) {
            cr_expect_eq(r, WIRE_PARSE_OK, "depth %zu: %s", depths[i], err.message);
        } else {
            cr_expect_eq(r, WIRE_PARSE_ERROR_REPLY, "depth %zu", depths[i]);
            cr_expect_eq(err.code, BQ_ERR_Overflow, "depth %zu: %s", depths[i], err.message);
        }
        wire_msg_cleanup(&msg);
        bson_destroy(d);
        free(f.b);
    }
}

Test(wire_frame, op_msg_document_size_limit)
{
    /* A body holding a maximum-size user document parses (16 MiB + 16 KiB internal limit);
     * a body beyond that is BSONObjectTooLarge. */
    size_t sizes[] = {WIRE_MAX_BSON_SIZE, WIRE_MAX_BSON_INTERNAL_SIZE,
                      WIRE_MAX_BSON_INTERNAL_SIZE + 1};
    for (size_t i = 0; i < 3; i++) {
        bson_t *d = bson_new();
        size_t slen = sizes[i] - 5 - 1 - 2 - 4 - 1; /* type, "s\0", len, NUL */
        char *s = malloc(slen);
        memset(s, 'x', slen);
        bson_append_utf8(d, "s", 1, s, (int)slen);
        free(s);
        cr_assert_eq(d->len, sizes[i]);
        fbuf_t f = msg_begin(0);
        put_body(&f, d);
        frame_end(&f, false);
        wire_msg_t msg;
        bq_error_t err;
        wire_parse_result_t r = parse_f(&f, &msg, &err);
        if (i < 2) {
            cr_expect_eq(r, WIRE_PARSE_OK, "%s", err.message);
            cr_expect_eq(msg.body.len, d->len);
        } else {
            cr_expect_eq(r, WIRE_PARSE_ERROR_REPLY);
            cr_expect_eq(err.code, BQ_ERR_BSONObjectTooLarge, "%s", err.message);
        }
        wire_msg_cleanup(&msg);
        bson_destroy(d);
        free(f.b);
    }
}

/* ---- OP_QUERY ---- */

static fbuf_t query_frame(int32_t flags, const char *ns, int32_t to_return, const bson_t *q,
                          const bson_t *fields)
{
    fbuf_t f = frame_begin(WIRE_OP_QUERY);
    put_i32(&f, flags);
    put(&f, ns, strlen(ns) + 1);
    put_i32(&f, 0);
    put_i32(&f, to_return);
    put_doc(&f, q);
    if (fields)
        put_doc(&f, fields);
    frame_end(&f, false);
    return f;
}

Test(wire_frame, op_query_hello_plain_and_wrapped)
{
    struct {
        const char *query;
        const char *fields;
        const char *body;
    } c[] = {
        {"{'hello': 1, 'client': {'driver': {'name': 'x'}}}", NULL,
         "{'hello': 1, 'client': {'driver': {'name': 'x'}}}"},
        {"{'isMaster': 1}", "{'ok': 1}", "{'isMaster': 1}"},
        {"{'$query': {'ismaster': 1}, '$readPreference': {'mode': 'primaryPreferred'}}", NULL,
         "{'ismaster': 1}"},
        {"{'$readPreference': {'mode': 'primary'}, '$query': {'hello': 1}}", NULL,
         "{'hello': 1}"},
        {"{'query': {'isMaster': 1}, '$readPreference': {'mode': 'primary'}}", NULL,
         "{'isMaster': 1}"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        fbuf_t f = query_frame(4, "admin.$cmd", -1, J(c[i].query),
                               c[i].fields ? J(c[i].fields) : NULL);
        wire_msg_t msg;
        bq_error_t err;
        cr_assert_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "case %zu: %s", i, err.message);
        cr_expect_eq(msg.hdr.opcode, WIRE_OP_QUERY);
        cr_expect_str_eq(msg.ns, "admin.$cmd");
        cr_expect_eq(msg.query_flags, 4);
        cr_expect_eq(msg.number_to_return, -1);
        cr_expect_eq(msg.flags, 0u);
        expect_body(&msg, c[i].body);
        wire_msg_cleanup(&msg);
        free(f.b);
    }
}

Test(wire_frame, op_query_errors)
{
    char long_ns[300];
    memset(long_ns, 'd', sizeof long_ns - 1);
    long_ns[sizeof long_ns - 1] = '\0';
    long_ns[5] = '.';
    bson_t *hello = J("{'hello': 1}");
    struct {
        const char *name;
        fbuf_t f;
        wire_parse_result_t want;
        int32_t code;
    } c[] = {
        {"ns without a dot", query_frame(0, "admin", 1, hello, NULL), WIRE_PARSE_ERROR_REPLY,
         BQ_ERR_InvalidNamespace},
        {"empty ns", query_frame(0, "", 1, hello, NULL), WIRE_PARSE_ERROR_REPLY,
         BQ_ERR_InvalidNamespace},
        {"ns too long", query_frame(0, long_ns, 1, hello, NULL), WIRE_PARSE_ERROR_REPLY,
         BQ_ERR_InvalidNamespace},
        {"ns bad UTF-8", query_frame(0, "adm\xFF.$cmd", 1, hello, NULL),
         WIRE_PARSE_ERROR_REPLY, BQ_ERR_InvalidNamespace},
        {"bad BSON query", query_frame(0, "admin.$cmd", 1, bad_utf8_doc(), NULL),
         WIRE_PARSE_ERROR_REPLY, BQ_ERR_InvalidBSON},
        {"bad BSON selector", query_frame(0, "admin.$cmd", 1, hello, bad_utf8_doc()),
         WIRE_PARSE_ERROR_REPLY, BQ_ERR_InvalidBSON},
        {"$query not a document", query_frame(0, "admin.$cmd", 1, J("{'$query': 1}"), NULL),
         WIRE_PARSE_ERROR_REPLY, BQ_ERR_BadValue},
    };
    size_t n = sizeof c / sizeof c[0];
    for (size_t i = 0; i < n; i++) {
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&c[i].f, &msg, &err), c[i].want, "%s: %s", c[i].name,
                     err.message);
        cr_expect_eq(err.code, c[i].code, "%s: code %d", c[i].name, err.code);
        wire_msg_cleanup(&msg);
        free(c[i].f.b);
    }

    /* Structure: trailing garbage, and every truncation. */
    fbuf_t f = query_frame(0, "admin.$cmd", 1, hello, J("{'x': 1}"));
    put_u8(&f, 0);
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE);
    wire_msg_cleanup(&msg);
    f.n--;
    size_t boundary = f.n - J("{'x': 1}")->len;
    for (size_t cut = WIRE_HEADER_SIZE; cut < f.n; cut++) {
        fbuf_t g = {0};
        put(&g, f.b, cut);
        set_i32(&g, 0, (int32_t)cut);
        wire_parse_result_t r = parse_f(&g, &msg, &err);
        cr_expect_eq(r, cut == boundary ? WIRE_PARSE_OK : WIRE_PARSE_CLOSE, "cut %zu", cut);
        wire_msg_cleanup(&msg);
        free(g.b);
    }
    free(f.b);
}

/* ---- other opcodes ---- */

ParameterizedTestParameters(wire_frame, unsupported_opcodes_close)
{
    static int32_t ops[] = {WIRE_OP_REPLY,    WIRE_OP_UPDATE,       WIRE_OP_INSERT,
                            WIRE_OP_GET_MORE, WIRE_OP_DELETE,       WIRE_OP_KILL_CURSORS,
                            WIRE_OP_COMPRESSED, 0,                  -1,
                            2010,             2011,                 9999};
    return cr_make_param_array(int32_t, ops, sizeof ops / sizeof ops[0]);
}

ParameterizedTest(int32_t *op, wire_frame, unsupported_opcodes_close)
{
    bson_t *d = bson_new();
    BSON_APPEND_INT32(d, "ping", 1);
    fbuf_t f = frame_begin(*op);
    put_i32(&f, 0);
    put_u8(&f, 0);
    put_doc(&f, d);
    frame_end(&f, false);
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_CLOSE, "opcode %d", *op);
    cr_expect_eq(err.code, BQ_ERR_ProtocolError);
    cr_expect_gt(strlen(err.message), 10u);
    if (*op == WIRE_OP_COMPRESSED)
        cr_expect(strstr(err.message, "OP_COMPRESSED") != NULL, "%s", err.message);
    wire_msg_cleanup(&msg);
    bson_destroy(d);
    free(f.b);
}

/* ---- builders ---- */

Test(wire_frame, build_msg_round_trip)
{
    bson_t *body = J("{'ok': 1.0, 'cursor': {'id': {'$numberLong': '0'}, 'ns': 'd.c', "
                     "'firstBatch': [{'_id': 1}]}}");
    size_t need = wire_frame_build_msg(NULL, 0, 5, 77, 0, body);
    cr_assert_eq(need, 16 + 4 + 1 + body->len);

    uint8_t small[32];
    memset(small, 0xAB, sizeof small);
    cr_expect_eq(wire_frame_build_msg(small, sizeof small, 5, 77, 0, body), need);
    for (size_t i = 0; i < sizeof small; i++)
        cr_expect_eq(small[i], 0xAB, "nothing written when it does not fit");

    uint32_t flags[] = {0, WIRE_MSG_MORE_TO_COME,
                        WIRE_MSG_CHECKSUM_PRESENT | WIRE_MSG_EXHAUST_ALLOWED};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *buf = malloc(need);
        cr_assert_eq(wire_frame_build_msg(buf, need, 5, 77, flags[i], body), need);
        wire_header_t hdr;
        cr_expect_eq(wire_frame_peek(buf, need, &hdr, NULL), WIRE_FRAME_READY);
        wire_msg_t msg;
        bq_error_t err;
        cr_assert_eq(parse_bytes(buf, need, &msg, &err), WIRE_PARSE_OK, "%s", err.message);
        cr_expect_eq(msg.hdr.length, (int32_t)need);
        cr_expect_eq(msg.hdr.request_id, 5);
        cr_expect_eq(msg.hdr.response_to, 77);
        cr_expect_eq(msg.hdr.opcode, WIRE_OP_MSG);
        cr_expect_eq(msg.flags, flags[i] & ~WIRE_MSG_CHECKSUM_PRESENT, "never a checksum");
        cr_expect(bson_equal(&msg.body, body));
        wire_msg_cleanup(&msg);
        free(buf);
    }
}

Test(wire_frame, build_reply_layout)
{
    bson_t *doc = J("{'ismaster': true, 'maxWireVersion': 21, 'minWireVersion': 0, 'ok': 1.0}");
    size_t need = wire_frame_build_reply(NULL, 0, 9, 77, WIRE_REPLY_AWAIT_CAPABLE, doc);
    cr_assert_eq(need, 36 + doc->len);
    uint8_t small[36];
    memset(small, 0xCD, sizeof small);
    cr_expect_eq(wire_frame_build_reply(small, sizeof small, 9, 77, 0, doc), need);
    for (size_t i = 0; i < sizeof small; i++)
        cr_expect_eq(small[i], 0xCD);

    uint8_t *buf = malloc(need);
    cr_assert_eq(wire_frame_build_reply(buf, need, 9, 77, WIRE_REPLY_AWAIT_CAPABLE, doc), need);
    wire_header_t hdr;
    cr_expect_eq(wire_frame_peek(buf, need, &hdr, NULL), WIRE_FRAME_READY);
    cr_expect_eq(hdr.length, (int32_t)need);
    cr_expect_eq(hdr.request_id, 9);
    cr_expect_eq(hdr.response_to, 77);
    cr_expect_eq(hdr.opcode, WIRE_OP_REPLY);
    const uint8_t want_fixed[20] = {WIRE_REPLY_AWAIT_CAPABLE, 0, 0, 0, /* responseFlags */
                                    0, 0, 0, 0, 0, 0, 0, 0,           /* cursorID */
                                    0, 0, 0, 0,                       /* startingFrom */
                                    1, 0, 0, 0};                      /* numberReturned */
    cr_expect_arr_eq(buf + 16, want_fixed, 20);
    bson_t got;
    cr_assert(bson_init_static(&got, buf + 36, need - 36));
    cr_expect(bson_equal(&got, doc));

    /* A server never accepts OP_REPLY as a request. */
    wire_msg_t msg;
    bq_error_t err;
    cr_expect_eq(parse_bytes(buf, need, &msg, &err), WIRE_PARSE_CLOSE);
    wire_msg_cleanup(&msg);
    free(buf);
}

/* ---- the fuzzer's seed corpus ---- */

/* Every seed in tests/fuzz/corpus/fuzz_wire_frame is a whole, valid frame, so the fuzzer
 * starts from frames that reach the deep paths. Found beside this source file. */
Test(wire_frame, fuzz_seed_corpus_frames_parse)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    cr_assert_not_null(slash);
    snprintf(slash, sizeof dir - (size_t)(slash - dir), "/../fuzz/corpus/fuzz_wire_frame");
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    size_t seeds = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *fp = fopen(path, "rb");
        cr_assert_not_null(fp, "%s", path);
        fbuf_t f = {0};
        uint8_t chunk[4096];
        size_t k;
        while ((k = fread(chunk, 1, sizeof chunk, fp)) > 0)
            put(&f, chunk, k);
        fclose(fp);
        wire_header_t hdr;
        cr_expect_eq(wire_frame_peek(f.b, f.n, &hdr, NULL), WIRE_FRAME_READY, "%s", de->d_name);
        wire_msg_t msg;
        bq_error_t err;
        cr_expect_eq(parse_f(&f, &msg, &err), WIRE_PARSE_OK, "%s: %s", de->d_name, err.message);
        wire_msg_cleanup(&msg);
        free(f.b);
        seeds++;
    }
    closedir(d);
    cr_expect_geq(seeds, 5u, "only %zu seeds in %s", seeds, dir);
}
