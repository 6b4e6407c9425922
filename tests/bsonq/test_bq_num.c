/*
 * test_bq_num.c: bsonq/bq_num.c and bsonq/bq_dec.c: MongoDB's arithmetic result types
 * (int32 -> int64 -> double on overflow, double and Decimal128 contagion), correctly
 * rounded Decimal128 arithmetic, division and modulo by zero, conversions.
 */
#include <math.h>

#include "bq_test_util.h"

typedef bool (*num_fn)(const bson_value_t *, const bson_value_t *, bson_value_t *,
                       bq_error_t *);

typedef struct {
    const char *op;
    const char *a, *b;
    const char *want; /* relaxed JSON of the expected value (type and value), or NULL */
    int32_t code;     /* expected error code when want is NULL */
} num_row_t;

static const num_row_t rows[] = {
    {"+", "1", "2", "3", 0},
    {"+", "2147483647", "1", "{\"$numberLong\": \"2147483648\"}", 0},
    {"+", "-2147483648", "-1", "{\"$numberLong\": \"-2147483649\"}", 0},
    {"+", "1", "{\"$numberLong\": \"1\"}", "{\"$numberLong\": \"2\"}", 0},
    {"+", "{\"$numberLong\": \"9223372036854775807\"}", "1", "9223372036854775808.0", 0},
    {"+", "1", "1.5", "2.5", 0},
    {"+", "{\"$numberDecimal\": \"1.0\"}", "2", "{\"$numberDecimal\": \"3.0\"}", 0},
    {"+", "{\"$numberDecimal\": \"0.1\"}", "0.1", "{\"$numberDecimal\": \"0.200000000000000\"}", 0},
    {"+", "{\"$numberDecimal\": \"9999999999999999999999999999999999\"}", "1",
     "{\"$numberDecimal\": \"1.000000000000000000000000000000000E+34\"}", 0},
    {"+", "{\"$numberDecimal\": \"1\"}", "{\"$numberDecimal\": \"1E-40\"}",
     "{\"$numberDecimal\": \"1.000000000000000000000000000000000\"}", 0},
    {"+", "{\"$numberDecimal\": \"1000000000000000000000000000000000\"}",
     "{\"$numberDecimal\": \"0.5\"}", "{\"$numberDecimal\": \"1000000000000000000000000000000000\"}", 0},
    {"+", "{\"$numberDecimal\": \"1000000000000000000000000000000001\"}",
     "{\"$numberDecimal\": \"0.5\"}", "{\"$numberDecimal\": \"1000000000000000000000000000000002\"}", 0},
    {"+", "{\"$numberDecimal\": \"1E+100\"}", "{\"$numberDecimal\": \"-1\"}",
     "{\"$numberDecimal\": \"1.000000000000000000000000000000000E+100\"}", 0},
    {"+", "{\"$numberDecimal\": \"0.00\"}", "{\"$numberDecimal\": \"5\"}", "{\"$numberDecimal\": \"5.00\"}", 0},
    {"+", "{\"$numberDecimal\": \"Infinity\"}", "{\"$numberDecimal\": \"-Infinity\"}",
     "{\"$numberDecimal\": \"NaN\"}", 0},
    {"+", "\"a\"", "1", NULL, 14},
    {"+", "1", "null", NULL, 14},
    {"-", "5", "7", "-2", 0},
    {"-", "-2147483648", "1", "{\"$numberLong\": \"-2147483649\"}", 0},
    {"-", "{\"$numberLong\": \"-9223372036854775808\"}", "1", "-9223372036854775808.0", 0},
    {"-", "{\"$numberDecimal\": \"1\"}", "{\"$numberDecimal\": \"1E-40\"}",
     "{\"$numberDecimal\": \"1.000000000000000000000000000000000\"}", 0},
    {"-", "{\"$numberDecimal\": \"1.5\"}", "{\"$numberDecimal\": \"1.5\"}", "{\"$numberDecimal\": \"0.0\"}", 0},
    {"-", "{\"$numberDecimal\": \"10\"}", "{\"$numberDecimal\": \"0.001\"}", "{\"$numberDecimal\": \"9.999\"}", 0},
    {"*", "65536", "65536", "{\"$numberLong\": \"4294967296\"}", 0},
    {"*", "{\"$numberLong\": \"4611686018427387904\"}", "4", "1.8446744073709552E19", 0},
    {"*", "3", "0.5", "1.5", 0},
    {"*", "{\"$numberDecimal\": \"1.5\"}", "2", "{\"$numberDecimal\": \"3.0\"}", 0},
    {"*", "{\"$numberDecimal\": \"0.1\"}", "{\"$numberDecimal\": \"0.1\"}", "{\"$numberDecimal\": \"0.01\"}", 0},
    {"*", "{\"$numberDecimal\": \"1234567890123456789012345678901234\"}", "{\"$numberDecimal\": \"10\"}",
     "{\"$numberDecimal\": \"1.234567890123456789012345678901234E+34\"}", 0},
    {"*", "{\"$numberDecimal\": \"1111111111111111111111111111111111\"}",
     "{\"$numberDecimal\": \"1111111111111111111111111111111111\"}",
     "{\"$numberDecimal\": \"1.234567901234567901234567901234568E+66\"}", 0},
    {"*", "{\"$numberDecimal\": \"1E+6000\"}", "{\"$numberDecimal\": \"1E+6000\"}",
     "{\"$numberDecimal\": \"Infinity\"}", 0},
    {"*", "{\"$numberDecimal\": \"-2\"}", "{\"$numberDecimal\": \"0\"}", "{\"$numberDecimal\": \"-0\"}", 0},
    {"/", "1", "2", "0.5", 0},
    {"/", "6", "3", "2.0", 0},
    {"/", "{\"$numberLong\": \"7\"}", "2", "3.5", 0},
    {"/", "{\"$numberDecimal\": \"1\"}", "{\"$numberDecimal\": \"3\"}",
     "{\"$numberDecimal\": \"0.3333333333333333333333333333333333\"}", 0},
    {"/", "{\"$numberDecimal\": \"2\"}", "{\"$numberDecimal\": \"3\"}",
     "{\"$numberDecimal\": \"0.6666666666666666666666666666666667\"}", 0},
    {"/", "{\"$numberDecimal\": \"1\"}", "4", "{\"$numberDecimal\": \"0.25\"}", 0},
    {"/", "{\"$numberDecimal\": \"100\"}", "4", "{\"$numberDecimal\": \"25\"}", 0},
    {"/", "{\"$numberDecimal\": \"1.00\"}", "2", "{\"$numberDecimal\": \"0.50\"}", 0},
    {"/", "{\"$numberDecimal\": \"1E+3\"}", "{\"$numberDecimal\": \"1E+1\"}", "{\"$numberDecimal\": \"1E+2\"}", 0},
    {"/", "1", "0", NULL, 16608},
    {"/", "1", "0.0", NULL, 16608},
    {"/", "{\"$numberDecimal\": \"1\"}", "{\"$numberDecimal\": \"-0\"}", NULL, 16608},
    {"%", "7", "3", "1", 0},
    {"%", "-7", "3", "-1", 0},
    {"%", "7", "-3", "1", 0},
    {"%", "-2147483648", "-1", "0", 0},
    {"%", "{\"$numberLong\": \"-9223372036854775808\"}", "-1", "{\"$numberLong\": \"0\"}", 0},
    {"%", "7.5", "2", "1.5", 0},
    {"%", "{\"$numberDecimal\": \"7.5\"}", "2", "{\"$numberDecimal\": \"1.5\"}", 0},
    {"%", "{\"$numberDecimal\": \"-7.5\"}", "{\"$numberDecimal\": \"0.7\"}", "{\"$numberDecimal\": \"-0.5\"}", 0},
    {"%", "{\"$numberDecimal\": \"1E+10\"}", "{\"$numberDecimal\": \"7\"}", "{\"$numberDecimal\": \"4\"}", 0},
    {"%", "1", "0", NULL, 16610},
};

static num_fn fn_of(const char *op)
{
    switch (op[0]) {
    case '+':
        return bq_num_add;
    case '-':
        return bq_num_sub;
    case '*':
        return bq_num_mul;
    case '/':
        return bq_num_div;
    default:
        return bq_num_mod;
    }
}

/* Same type and same value; Decimal128 also the same digits and exponent. */
static bool same(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type != b->value_type)
        return false;
    if (a->value_type == BSON_TYPE_DECIMAL128)
        return a->value.v_decimal128.high == b->value.v_decimal128.high &&
               a->value.v_decimal128.low == b->value.v_decimal128.low;
    if (a->value_type == BSON_TYPE_DOUBLE && isnan(a->value.v_double))
        return isnan(b->value.v_double);
    return bq_value_equal(a, b);
}

Test(bq_num, arithmetic_table)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const num_row_t *r = &rows[i];
        bson_t *ha, *hb, *hw = NULL;
        bson_value_t a = tu_val(r->a, &ha), b = tu_val(r->b, &hb), out;
        bq_error_t err;
        bq_error_clear(&err);
        bool ok = fn_of(r->op)(&a, &b, &out, &err);
        if (r->want) {
            bson_value_t want = tu_val(r->want, &hw);
            cr_expect(ok, "row %zu: %s %s %s failed: %s", i, r->a, r->op, r->b, err.message);
            if (ok) {
                char *got = tu_str(&out);
                cr_expect(same(&out, &want), "row %zu: %s %s %s = %s, want %s", i, r->a,
                          r->op, r->b, got, r->want);
                bson_free(got);
            }
        } else {
            cr_expect(!ok, "row %zu: %s %s %s should fail", i, r->a, r->op, r->b);
            cr_expect_eq(err.code, r->code, "row %zu: code %d, want %d", i, err.code,
                         r->code);
        }
        bson_destroy(ha);
        bson_destroy(hb);
        if (hw)
            bson_destroy(hw);
    }
}

typedef struct {
    const char *v;
    bool ok;
    int64_t want;
    bool exact;
} i64_row_t;

static const i64_row_t i64_rows[] = {
    {"5", true, 5, true},
    {"{\"$numberLong\": \"-9223372036854775808\"}", true, INT64_MIN, true},
    {"2.5", true, 2, false},
    {"-2.5", true, -2, false},
    {"1e19", false, 0, false},
    {"-9223372036854775808.0", true, INT64_MIN, true},
    {"9223372036854775808.0", false, 0, false},
    {"{\"$numberDouble\": \"NaN\"}", false, 0, false},
    {"{\"$numberDouble\": \"Infinity\"}", false, 0, false},
    {"{\"$numberDecimal\": \"123.000\"}", true, 123, true},
    {"{\"$numberDecimal\": \"-123.5\"}", true, -123, false},
    {"{\"$numberDecimal\": \"1E+3\"}", true, 1000, true},
    {"{\"$numberDecimal\": \"-9223372036854775808\"}", true, INT64_MIN, true},
    {"{\"$numberDecimal\": \"9223372036854775808\"}", false, 0, false},
    {"{\"$numberDecimal\": \"1E-50\"}", true, 0, false},
    {"{\"$numberDecimal\": \"NaN\"}", false, 0, false},
    {"\"5\"", false, 0, false},
};

Test(bq_num, to_int64_table)
{
    for (size_t i = 0; i < sizeof i64_rows / sizeof i64_rows[0]; i++) {
        bson_t *h;
        bson_value_t v = tu_val(i64_rows[i].v, &h);
        int64_t got = 42;
        bool exact = !i64_rows[i].exact;
        bool ok = bq_num_to_int64(&v, &got, &exact);
        cr_expect_eq(ok, i64_rows[i].ok, "row %zu (%s): ok", i, i64_rows[i].v);
        if (ok && i64_rows[i].ok) {
            cr_expect_eq(got, i64_rows[i].want, "row %zu (%s): %lld", i, i64_rows[i].v,
                         (long long)got);
            cr_expect_eq(exact, i64_rows[i].exact, "row %zu (%s): exact", i, i64_rows[i].v);
        }
        bson_destroy(h);
    }
}

Test(bq_num, to_double)
{
    bson_t *h;
    bson_value_t v = tu_val("{\"$numberDecimal\": \"0.1\"}", &h);
    double d = 0;
    cr_expect(bq_num_to_double(&v, &d));
    cr_expect_eq(d, 0.1);
    bson_destroy(h);
    v = tu_val("{\"$numberLong\": \"9007199254740993\"}", &h);
    cr_expect(bq_num_to_double(&v, &d));
    cr_expect_eq(d, 9007199254740992.0);
    bson_destroy(h);
    v = tu_val("\"x\"", &h);
    cr_expect(!bq_num_to_double(&v, &d));
    bson_destroy(h);
}

static void expect_dec_str(bson_decimal128_t d, const char *want)
{
    char buf[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&d, buf);
    cr_expect_str_eq(buf, want);
}

Test(bq_num, decimal_from_double_digits)
{
    expect_dec_str(bq_dec_from_double(0.1, 34), "0.1000000000000000055511151231257827");
    expect_dec_str(bq_dec_from_double(0.1, 15), "0.100000000000000");
    expect_dec_str(bq_dec_from_double(2.5, 15), "2.50000000000000");
    expect_dec_str(bq_dec_from_double(-1e300, 15), "-1.00000000000000E+300");
    expect_dec_str(bq_dec_from_double(NAN, 15), "NaN");
    expect_dec_str(bq_dec_from_double(-INFINITY, 15), "-Infinity");
    expect_dec_str(bq_dec_from_int64(INT64_MIN), "-9223372036854775808");
}

Test(bq_num, decimal_compare_and_predicates)
{
    bson_decimal128_t one, onepoint0, two, nan, tiny;
    bson_decimal128_from_string("1", &one);
    bson_decimal128_from_string("1.0", &onepoint0);
    bson_decimal128_from_string("2", &two);
    bson_decimal128_from_string("NaN", &nan);
    bson_decimal128_from_string("1E-6176", &tiny);
    cr_expect_eq(bq_dec_compare(one, onepoint0), 0);
    cr_expect_lt(bq_dec_compare(one, two), 0);
    cr_expect_gt(bq_dec_compare(two, one), 0);
    cr_expect_lt(bq_dec_compare(nan, one), 0);
    cr_expect_eq(bq_dec_compare(nan, nan), 0);
    cr_expect(bq_dec_is_nan(nan));
    cr_expect(!bq_dec_is_nan(one));
    cr_expect(!bq_dec_is_zero(tiny));
    cr_expect(bq_dec_is_zero(bq_dec_sub(one, onepoint0)));
    expect_dec_str(bq_dec_div(tiny, two), "0E-6176");
    expect_dec_str(bq_dec_mul(tiny, onepoint0), "1E-6176");
}

/* mongod's appendNumber: an int32 when the value fits, an int64 otherwise. */
Test(bq_num, append_number_picks_int32_when_it_fits)
{
    static const struct {
        int64_t v;
        bson_type_t type;
    } cases[] = {
        {0, BSON_TYPE_INT32},
        {INT32_MAX, BSON_TYPE_INT32},
        {INT32_MIN, BSON_TYPE_INT32},
        {(int64_t)INT32_MAX + 1, BSON_TYPE_INT64},
        {(int64_t)INT32_MIN - 1, BSON_TYPE_INT64},
        {INT64_MAX, BSON_TYPE_INT64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t doc = BSON_INITIALIZER;
        bson_iter_t it;
        bq_num_append(&doc, "n", cases[i].v);
        cr_assert(bson_iter_init_find(&it, &doc, "n"));
        cr_assert_eq(bson_iter_type(&it), cases[i].type, "row %zu", i);
        cr_assert_eq(bson_iter_as_int64(&it), cases[i].v, "row %zu", i);
        bson_destroy(&doc);
    }
}
