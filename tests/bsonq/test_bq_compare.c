/*
 * test_bq_compare.c: bsonq/bq_compare.c, MongoDB's order over BSON values. Each row
 * is a pair of values in relaxed Extended JSON and the expected sign of compare(a, b);
 * the reverse order is checked too.
 */
#include "bq_test_util.h"

typedef struct {
    const char *a, *b;
    int want;
} cmp_row_t;

static const cmp_row_t rows[] = {
    /* type order */
    {"{\"$minKey\": 1}", "null", -1},
    {"{\"$undefined\": true}", "null", -1},
    {"null", "0", -1},
    {"{\"$numberDouble\": \"-Infinity\"}", "\"\"", -1},
    {"\"zzz\"", "{}", -1},
    {"{\"z\": 1}", "[]", -1},
    {"[]", "{\"$binary\": {\"base64\": \"\", \"subType\": \"00\"}}", -1},
    {"{\"$binary\": {\"base64\": \"AQID\", \"subType\": \"00\"}}",
     "{\"$oid\": \"000000000000000000000000\"}", -1},
    {"{\"$oid\": \"ffffffffffffffffffffffff\"}", "false", -1},
    {"true", "{\"$date\": {\"$numberLong\": \"-5\"}}", -1},
    {"{\"$date\": {\"$numberLong\": \"9999999999\"}}", "{\"$timestamp\": {\"t\": 0, \"i\": 0}}", -1},
    {"{\"$timestamp\": {\"t\": 9, \"i\": 9}}", "{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}", -1},
    {"{\"$regularExpression\": {\"pattern\": \"z\", \"options\": \"\"}}", "{\"$code\": \"x\"}", -1},
    {"{\"$code\": \"x\"}", "{\"$maxKey\": 1}", -1},
    {"{\"$minKey\": 1}", "{\"$minKey\": 1}", 0},
    {"{\"$maxKey\": 1}", "{\"$maxKey\": 1}", 0},
    {"null", "null", 0},
    /* numbers across types */
    {"1", "1.0", 0},
    {"1", "{\"$numberLong\": \"1\"}", 0},
    {"{\"$numberDecimal\": \"1.0\"}", "1", 0},
    {"{\"$numberDecimal\": \"1.00\"}", "{\"$numberDecimal\": \"1\"}", 0},
    {"{\"$numberDecimal\": \"0.1\"}", "0.1", -1},
    {"{\"$numberDecimal\": \"0.1000000000000000055511151231257827\"}", "0.1", 0},
    {"{\"$numberDecimal\": \"1.000000000000000000000000000000001\"}", "1", 1},
    {"{\"$numberDecimal\": \"1E-6176\"}", "0", 1},
    {"{\"$numberDecimal\": \"-0\"}", "0", 0},
    {"{\"$numberDecimal\": \"1E+6111\"}", "{\"$numberDouble\": \"Infinity\"}", -1},
    {"{\"$numberDecimal\": \"-Infinity\"}", "{\"$numberDouble\": \"-Infinity\"}", 0},
    {"{\"$numberDecimal\": \"-9223372036854775808\"}", "{\"$numberLong\": \"-9223372036854775808\"}", 0},
    {"{\"$numberDecimal\": \"NaN\"}", "{\"$numberDouble\": \"NaN\"}", 0},
    {"{\"$numberDecimal\": \"NaN\"}", "{\"$numberDecimal\": \"-Infinity\"}", -1},
    {"{\"$numberDouble\": \"NaN\"}", "{\"$numberDouble\": \"NaN\"}", 0},
    {"{\"$numberDouble\": \"NaN\"}", "{\"$numberDouble\": \"-Infinity\"}", -1},
    {"{\"$numberDouble\": \"NaN\"}", "{\"$numberLong\": \"-9223372036854775808\"}", -1},
    {"-0.0", "0", 0},
    {"{\"$numberLong\": \"9223372036854775807\"}", "9223372036854775808.0", -1},
    {"{\"$numberLong\": \"9007199254740993\"}", "9007199254740992.0", 1},
    {"{\"$numberLong\": \"-9223372036854775808\"}", "-9223372036854775808.0", 0},
    {"2", "2.5", -1},
    {"-2", "-2.5", 1},
    {"{\"$numberDouble\": \"Infinity\"}", "{\"$numberLong\": \"9223372036854775807\"}", 1},
    /* strings by bytes, symbols like strings */
    {"\"ab\"", "\"abc\"", -1},
    {"\"abc\"", "\"b\"", -1},
    {"\"B\"", "\"a\"", -1},
    {"\"a\"", "{\"$symbol\": \"a\"}", 0},
    {"\"\"", "\"\"", 0},
    /* objects: type rank, then name, then value; shorter is smaller */
    {"{\"x\": 1}", "{\"x\": 1, \"y\": 1}", -1},
    {"{\"x\": 1}", "{\"y\": 0}", -1},
    {"{\"x\": \"a\"}", "{\"x\": 1}", 1},
    {"{\"x\": null}", "{\"a\": 1}", -1},
    {"{\"x\": 1, \"y\": 2}", "{\"x\": 1.0, \"y\": {\"$numberLong\": \"2\"}}", 0},
    {"{\"x\": {\"y\": [1, 2]}}", "{\"x\": {\"y\": [1, 3]}}", -1},
    {"{}", "{}", 0},
    /* arrays element-wise */
    {"[1, 2]", "[1, 3]", -1},
    {"[2]", "[1, 5]", 1},
    {"[1]", "[1, 0]", -1},
    {"[[1, 2], 3]", "[[1, 2], 3]", 0},
    {"[null]", "[]", 1},
    /* BinData: length, then subtype, then bytes */
    {"{\"$binary\": {\"base64\": \"AAA=\", \"subType\": \"00\"}}",
     "{\"$binary\": {\"base64\": \"AQ==\", \"subType\": \"05\"}}", 1},
    {"{\"$binary\": {\"base64\": \"AQ==\", \"subType\": \"00\"}}",
     "{\"$binary\": {\"base64\": \"AA==\", \"subType\": \"05\"}}", -1},
    {"{\"$binary\": {\"base64\": \"AQ==\", \"subType\": \"00\"}}",
     "{\"$binary\": {\"base64\": \"Ag==\", \"subType\": \"00\"}}", -1},
    /* the rest */
    {"{\"$oid\": \"000000000000000000000001\"}", "{\"$oid\": \"000000000000000000000002\"}", -1},
    {"false", "true", -1},
    {"{\"$date\": {\"$numberLong\": \"-1\"}}", "{\"$date\": {\"$numberLong\": \"0\"}}", -1},
    {"{\"$timestamp\": {\"t\": 1, \"i\": 2}}", "{\"$timestamp\": {\"t\": 2, \"i\": 1}}", -1},
    {"{\"$timestamp\": {\"t\": 4294967295, \"i\": 1}}", "{\"$timestamp\": {\"t\": 1, \"i\": 1}}", 1},
    {"{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"i\"}}",
     "{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"m\"}}", -1},
    {"{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}",
     "{\"$regularExpression\": {\"pattern\": \"b\", \"options\": \"\"}}", -1},
};

static int sgn(int c)
{
    return c < 0 ? -1 : c > 0 ? 1 : 0;
}

Test(bq_compare, table_of_pairs)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        bson_t *ha, *hb;
        bson_value_t a = tu_val(rows[i].a, &ha), b = tu_val(rows[i].b, &hb);
        int got = sgn(bq_value_compare(&a, &b));
        int rev = sgn(bq_value_compare(&b, &a));
        cr_expect_eq(got, rows[i].want, "row %zu: compare(%s, %s) = %d, want %d", i,
                     rows[i].a, rows[i].b, got, rows[i].want);
        cr_expect_eq(rev, -rows[i].want, "row %zu reversed: compare(%s, %s) = %d", i,
                     rows[i].b, rows[i].a, rev);
        cr_expect_eq(bq_value_equal(&a, &b), rows[i].want == 0, "row %zu: equal", i);
        bson_destroy(ha);
        bson_destroy(hb);
    }
}

Test(bq_compare, type_rank_groups_numbers_and_strings)
{
    cr_expect_eq(bq_type_rank(BSON_TYPE_INT32), bq_type_rank(BSON_TYPE_DECIMAL128));
    cr_expect_eq(bq_type_rank(BSON_TYPE_DOUBLE), bq_type_rank(BSON_TYPE_INT64));
    cr_expect_eq(bq_type_rank(BSON_TYPE_UTF8), bq_type_rank(BSON_TYPE_SYMBOL));
    cr_expect_lt(bq_type_rank(BSON_TYPE_MINKEY), bq_type_rank(BSON_TYPE_NULL));
    cr_expect_lt(bq_type_rank(BSON_TYPE_DATE_TIME), bq_type_rank(BSON_TYPE_TIMESTAMP));
    cr_expect_lt(bq_type_rank(BSON_TYPE_CODEWSCOPE), bq_type_rank(BSON_TYPE_MAXKEY));
}

Test(bq_compare, doc_compare)
{
    bson_t *a = tu_doc("{\"a\": 1, \"b\": [1, {\"c\": 2}]}");
    bson_t *b = tu_doc("{\"a\": 1.0, \"b\": [1, {\"c\": {\"$numberLong\": \"2\"}}]}");
    bson_t *c = tu_doc("{\"a\": 1, \"b\": [1, {\"c\": 3}]}");
    cr_expect_eq(bq_doc_compare(a, b), 0);
    cr_expect_lt(bq_doc_compare(a, c), 0);
    cr_expect_gt(bq_doc_compare(c, b), 0);
    bson_destroy(a);
    bson_destroy(b);
    bson_destroy(c);
}

/* Sorting a mixed array by bq_value_compare gives MongoDB's documented order. */
static int qcmp(const void *x, const void *y)
{
    return bq_value_compare(x, y);
}

Test(bq_compare, sort_mixed_types)
{
    bson_t *h = tu_doc("{\"v\": [{\"$maxKey\": 1}, true, \"s\", 2, null, [1], {\"a\": 1},"
                       " {\"$oid\": \"000000000000000000000000\"}, {\"$minKey\": 1},"
                       " {\"$date\": {\"$numberLong\": \"0\"}}, 1.5,"
                       " {\"$numberDecimal\": \"1.25\"}, {\"$numberLong\": \"-3\"}]}");
    bson_iter_t it, ch;
    cr_assert(bson_iter_init_find(&it, h, "v") && bson_iter_recurse(&it, &ch));
    bson_value_t vals[16];
    size_t n = 0;
    while (bson_iter_next(&ch))
        vals[n++] = *bson_iter_value(&ch);
    qsort(vals, n, sizeof vals[0], qcmp);
    static const bson_type_t want[] = {
        BSON_TYPE_MINKEY, BSON_TYPE_NULL, BSON_TYPE_INT64, BSON_TYPE_DECIMAL128,
        BSON_TYPE_DOUBLE, BSON_TYPE_INT32, BSON_TYPE_UTF8, BSON_TYPE_DOCUMENT,
        BSON_TYPE_ARRAY, BSON_TYPE_OID, BSON_TYPE_BOOL, BSON_TYPE_DATE_TIME,
        BSON_TYPE_MAXKEY};
    cr_assert_eq(n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(vals[i].value_type, want[i], "position %zu: type %d", i,
                     (int)vals[i].value_type);
    bson_destroy(h);
}
