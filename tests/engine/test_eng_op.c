/*
 * test_eng_op.c: tests of engine/eng_op.c, the op document: field order, round trips,
 * per-kind rules, prov validation, and what eng_op_parse refuses.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "eng_test_util.h"

static const char *keys_of(const bson_t *doc, char *buf, size_t size)
{
    bson_iter_t it;
    buf[0] = '\0';
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        strncat(buf, bson_iter_key(&it), size - strlen(buf) - 2);
        strncat(buf, ",", size - strlen(buf) - 1);
    }
    return buf;
}

static bson_t *json(const char *s)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)s, -1, &e);
    cr_assert(b, "bad test JSON %s: %s", s, e.message);
    return b;
}

Test(eng_op, build_puts_fields_in_order_and_omits_absent)
{
    bson_t *o = json("{\"_id\": 7, \"a\": 1}");
    bson_t *prov = json("{\"caused_by\": [{\"$numberLong\": \"3\"}], \"evidence\": "
                        "\"inference\", \"confidence\": 0.5}");
    eng_op_t op = {
        .seq = 9, .ts = T_TS0, .ct_t = (uint32_t)(T_TS0 / 1000), .ct_i = 2,
        .op = ENG_OP_UPDATE, .ns = "db.c", .ns_len = 4, .has_id = true,
        .id = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 7},
        .o = bson_get_data(o), .o_len = o->len,
        .prov = bson_get_data(prov), .prov_len = prov->len,
    };
    bson_t out;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_op_build(&op, &out, &err), "%s", err.message);
    char keys[128];
    cr_assert_str_eq(keys_of(&out, keys, sizeof keys), "seq,ts,ct,op,ns,id,o,prov,");
    bson_destroy(&out);

    eng_op_t del = {.seq = 10, .ts = T_TS0, .ct_t = (uint32_t)(T_TS0 / 1000), .ct_i = 3,
                    .op = ENG_OP_DELETE, .ns = "db.c", .ns_len = 4, .has_id = true,
                    .id = op.id};
    cr_assert(eng_op_build(&del, &out, &err), "%s", err.message);
    cr_assert_str_eq(keys_of(&out, keys, sizeof keys), "seq,ts,ct,op,ns,id,");
    bson_destroy(&out);
    bson_destroy(o);
    bson_destroy(prov);
}

Test(eng_op, build_then_parse_round_trips)
{
    bson_t b;
    t_op(42, 10, &b);
    eng_op_t op;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_op_parse(bson_get_data(&b), b.len, &op, &err), "%s", err.message);
    cr_assert_eq(op.seq, 42);
    cr_assert_eq(op.ts, T_TS0 + 42);
    cr_assert_eq(op.ct_t, (uint32_t)((T_TS0 + 42) / 1000));
    cr_assert_eq(op.ct_i, 43);
    cr_assert_eq(op.op, ENG_OP_INSERT);
    cr_assert_eq(op.ns_len, 6);
    cr_assert(memcmp(op.ns, "test.c", 6) == 0);
    cr_assert(op.has_id);
    cr_assert_eq(op.id.value_type, BSON_TYPE_INT64);
    cr_assert_eq(op.id.value.v_int64, 42);
    cr_assert_not_null(op.o);
    cr_assert_null(op.prov);
    cr_assert_null(op.txn);

    /* and building the parsed struct gives the same bytes (the hash depends on it) */
    bson_t again;
    cr_assert(eng_op_build(&op, &again, &err), "%s", err.message);
    cr_assert_eq(again.len, b.len);
    cr_assert(memcmp(bson_get_data(&again), bson_get_data(&b), b.len) == 0);
    int64_t seq;
    cr_assert(eng_op_peek_seq(bson_get_data(&b), b.len, &seq));
    cr_assert_eq(seq, 42);
    bson_destroy(&again);
    bson_destroy(&b);
}

/* Inline arrays, not pointers: Criterion may run each case in a fresh process image. */
typedef struct {
    char json[400];
    char why[40];  /* words the error must contain */
} bad_case_t;

ParameterizedTestParameters(eng_op, parse_refuses)
{
    static bad_case_t cases[] = {
        {"{\"ts\": {\"$date\": 0}, \"seq\": {\"$numberLong\": \"0\"}}", "out of order"},
        {"{\"seq\": 0}", "int64"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}}",
         "lacks field 'op'"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"x\"}",
         "op"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"n\", \"zz\": 1}",
         "unknown field"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"i\", \"ns\": \"a.b\", "
         "\"id\": 1}",
         "needs o"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"d\", \"ns\": \"a.b\", "
         "\"id\": 1, \"o\": {}}",
         "must not have o"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"c\", \"ns\": \"a.$cmd\", "
         "\"id\": 1, \"o\": {}}",
         "must not have id"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 5000}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"n\"}",
         "seconds of ts"},
        {"{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 0}}, \"op\": \"n\"}",
         "ct.i"},
        {"{\"seq\": {\"$numberLong\": \"1\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"i\", \"ns\": \"a.b\", "
         "\"id\": 1, \"o\": {}, \"prov\": {\"caused_by\": [{\"$numberLong\": \"1\"}]}}",
         "earlier seq"},
        {"{\"seq\": {\"$numberLong\": \"1\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"i\", \"ns\": \"a.b\", "
         "\"id\": 1, \"o\": {}, \"prov\": {\"evidence\": \"rumour\"}}",
         "evidence"},
        {"{\"seq\": {\"$numberLong\": \"1\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"i\", \"ns\": \"a.b\", "
         "\"id\": 1, \"o\": {}, \"prov\": {\"confidence\": 1.5}}",
         "confidence"},
        {"{\"seq\": {\"$numberLong\": \"1\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"d\", \"ns\": \"a.b\", "
         "\"id\": 1, \"prov\": {\"confidence\": 0.5}}",
         "must not have prov"},
        {"{\"seq\": {\"$numberLong\": \"1\"}, \"ts\": {\"$date\": 0}, \"ct\": "
         "{\"$timestamp\": {\"t\": 0, \"i\": 1}}, \"op\": \"n\", \"ns\": \"a.b\", "
         "\"ns\": \"a.b\"}",
         "out of order or repeated"},
    };
    return cr_make_param_array(bad_case_t, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(bad_case_t *c, eng_op, parse_refuses)
{
    bson_t *b = json(c->json);
    eng_op_t op;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_op_parse(bson_get_data(b), b->len, &op, &err), "accepted %s",
                  c->json);
    cr_assert_eq(err.code, BQ_ERR_FailedToParse, "code %d for %s", err.code, c->json);
    cr_assert(strstr(err.message, c->why), "message '%s' lacks '%s'", err.message, c->why);
    bson_destroy(b);
}

Test(eng_op, parse_accepts_marker_and_catalog_and_prov)
{
    const char *ok[] = {
        "{\"seq\": {\"$numberLong\": \"0\"}, \"ts\": {\"$date\": 1000}, \"ct\": "
        "{\"$timestamp\": {\"t\": 1, \"i\": 1}}, \"op\": \"n\"}",
        "{\"seq\": {\"$numberLong\": \"3\"}, \"ts\": {\"$date\": 1000}, \"ct\": "
        "{\"$timestamp\": {\"t\": 1, \"i\": 4}}, \"op\": \"c\", \"ns\": \"db.$cmd\", "
        "\"o\": {\"create\": \"c\"}}",
        "{\"seq\": {\"$numberLong\": \"3\"}, \"ts\": {\"$date\": 1000}, \"ct\": "
        "{\"$timestamp\": {\"t\": 1, \"i\": 4}}, \"op\": \"i\", \"ns\": \"db.c\", "
        "\"id\": {\"$oid\": \"0123456789abcdef01234567\"}, \"o\": {\"a\": 1}, \"prov\": "
        "{\"caused_by\": [{\"$numberLong\": \"0\"}, {\"$numberLong\": \"2\"}], "
        "\"evidence\": \"tool_result\", \"confidence\": 1.0}, \"txn\": {\"n\": 0}}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bson_t *b = json(ok[i]);
        eng_op_t op;
        bq_error_t err;
        bq_error_clear(&err);
        cr_assert(eng_op_parse(bson_get_data(b), b->len, &op, &err), "%s: %s", ok[i],
                  err.message);
        bson_destroy(b);
    }
}

Test(eng_op, parse_refuses_bytes_that_are_not_bson)
{
    uint8_t junk[] = {9, 0, 0, 0, 0x12, 's', 'e', 'q', 1};
    eng_op_t op;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_op_parse(junk, sizeof junk, &op, &err));
    cr_assert_eq(err.code, BQ_ERR_InvalidBSON);
    cr_assert_not(eng_op_peek_seq(junk, sizeof junk, &(int64_t){0}));
}

Test(eng_op, build_refuses_rule_breaks_and_leaves_out_empty)
{
    eng_op_t op = {.seq = 1, .ts = T_TS0, .ct_t = (uint32_t)(T_TS0 / 1000), .ct_i = 1,
                   .op = ENG_OP_INSERT, .ns = "a.b", .ns_len = 3};
    bson_t out;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_op_build(&op, &out, &err));
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    cr_assert(strstr(err.message, "needs id"), "%s", err.message);
    cr_assert_eq(out.len, 5);
    bson_destroy(&out);
}
