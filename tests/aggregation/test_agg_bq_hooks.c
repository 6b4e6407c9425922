/*
 * test_agg_bq_hooks.c: $expr in query filters, through the hooks this layer installs in
 * bsonq's matcher (aggregation/agg_bq_hooks.c). Expected results follow MongoDB's $expr
 * documentation: the expression is evaluated against the whole document and matches when
 * its result is truthy (not false, null, 0 or missing).
 */
#include <criterion/criterion.h>

#include "agg_hooks.h"
#include "bq.h"

static bool matches(const char *filter_json, const char *doc_json)
{
    bson_error_t jerr;
    bson_t *filter = bson_new_from_json((const uint8_t *)filter_json, -1, &jerr);
    bson_t *doc = bson_new_from_json((const uint8_t *)doc_json, -1, &jerr);
    cr_assert(filter && doc, "bad JSON in the test: %s", jerr.message);
    bq_error_t err;
    bq_match_t *m = bq_match_compile(filter, &err);
    cr_assert(m, "%s: %s", filter_json, err.message);
    bool r = bq_match_eval(m, doc);
    bq_match_destroy(m);
    bson_destroy(filter);
    bson_destroy(doc);
    return r;
}

static const struct {
    const char *filter, *doc;
    bool match;
} cases[] = {
    /* the $expr documentation's budget example: spent > budget */
    {"{\"$expr\": {\"$gt\": [\"$spent\", \"$budget\"]}}", "{\"budget\": 400, \"spent\": 450}", true},
    {"{\"$expr\": {\"$gt\": [\"$spent\", \"$budget\"]}}", "{\"budget\": 100, \"spent\": 65}", false},
    /* truthiness of the result */
    {"{\"$expr\": \"$flag\"}", "{\"flag\": 1}", true},
    {"{\"$expr\": \"$flag\"}", "{\"flag\": 0}", false},
    {"{\"$expr\": \"$flag\"}", "{\"flag\": null}", false},
    {"{\"$expr\": \"$flag\"}", "{}", false},
    {"{\"$expr\": \"$flag\"}", "{\"flag\": []}", true},
    /* combined with ordinary conditions, and inside $or */
    {"{\"a\": 1, \"$expr\": {\"$eq\": [\"$b\", 2]}}", "{\"a\": 1, \"b\": 2}", true},
    {"{\"a\": 1, \"$expr\": {\"$eq\": [\"$b\", 2]}}", "{\"a\": 2, \"b\": 2}", false},
    {"{\"$or\": [{\"x\": 9}, {\"$expr\": {\"$lt\": [\"$a\", \"$b\"]}}]}", "{\"a\": 1, \"b\": 2}", true},
    /* an evaluation error makes the document not match */
    {"{\"$expr\": {\"$divide\": [1, \"$zero\"]}}", "{\"zero\": 0}", false},
};

Test(agg_bq_hooks, expr_in_filters_follows_the_documentation)
{
    agg_install_bq_hooks();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        cr_expect_eq(matches(cases[i].filter, cases[i].doc), cases[i].match, "%s on %s",
                     cases[i].filter, cases[i].doc);
}

Test(agg_bq_hooks, bad_expressions_fail_to_compile_with_mongods_codes)
{
    agg_install_bq_hooks();
    bson_t *f = bson_new_from_json((const uint8_t *)"{\"$expr\": {\"$nope\": 1}}", -1, NULL);
    bq_error_t err;
    cr_assert_null(bq_match_compile(f, &err));
    cr_assert_eq(err.code, 168, "InvalidPipelineOperator, got %d %s", err.code, err.message);
    bson_destroy(f);
    f = bson_new_from_json((const uint8_t *)"{\"$expr\": \"$$undefinedVar\"}", -1, NULL);
    cr_assert_null(bq_match_compile(f, &err));
    cr_assert_eq(err.code, 17276, "undefined variable, got %d %s", err.code, err.message);
    bson_destroy(f);
}
