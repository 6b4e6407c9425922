/*
 * test_bq_collation.c: bsonq/bq_collation.c, MongoDB collations on ICU: spec validation,
 * string comparison in matchers and sorts compiled with a collation, and collated
 * equality keys. Expected behaviour from MongoDB's Collation documentation: strength 1
 * compares base letters only, 2 adds diacritics, 3 (the default) adds case;
 * numericOrdering compares digit runs as numbers; {locale: "simple"} is binary.
 */
#include "bq_test_util.h"
#include "bq_key.h"
#include "bq_sort.h"

static bq_collation_t *coll(const char *json)
{
    bson_t *spec = tu_docq(json);
    bq_collation_t *c = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(bq_collation_new(spec, &c, &err), "%s: %s", json, err.message);
    bson_destroy(spec);
    return c;
}

static bool matches(const bq_collation_t *c, const char *filter, const char *doc)
{
    bson_t *f = tu_docq(filter), *d = tu_docq(doc);
    bq_error_t err;
    bq_match_opts_t opts = {.collation = c};
    bq_match_t *m = bq_match_compile_opts(f, &opts, &err);
    cr_assert(m, "%s: %s", filter, err.message);
    bool r = bq_match_eval(m, d);
    bq_match_destroy(m);
    bson_destroy(f);
    bson_destroy(d);
    return r;
}

Test(bq_collation, strength_two_ignores_case_not_accents)
{
    bq_collation_t *c = coll("{'locale': 'en_US', 'strength': 2}");
    cr_expect(matches(c, "{'a': 'ping'}", "{'a': 'PING'}"));
    cr_expect(matches(c, "{'a': {'$in': ['x', 'Ping']}}", "{'a': 'pInG'}"));
    cr_expect(!matches(c, "{'a': 'cafe'}", "{'a': 'café'}"));
    cr_expect(!matches(NULL, "{'a': 'ping'}", "{'a': 'PING'}"), "no collation is binary");
    bq_collation_destroy(c);
}

Test(bq_collation, strength_one_ignores_accents_and_case)
{
    bq_collation_t *c = coll("{'locale': 'fr', 'strength': 1}");
    cr_expect(matches(c, "{'a': 'cafe'}", "{'a': 'Café'}"));
    cr_expect(matches(c, "{'a': {'$gte': 'CAFE', '$lte': 'cafe'}}", "{'a': 'café'}"));
    cr_expect(!matches(c, "{'a': 'cafe'}", "{'a': 'cafes'}"));
    bq_collation_destroy(c);
}

Test(bq_collation, regex_is_not_collated)
{
    bq_collation_t *c = coll("{'locale': 'en', 'strength': 1}");
    cr_expect(!matches(c, "{'a': {'$regex': '^ping$'}}", "{'a': 'PING'}"));
    bq_collation_destroy(c);
}

Test(bq_collation, sort_numeric_ordering_and_case_first)
{
    bq_collation_t *num = coll("{'locale': 'en', 'numericOrdering': true}");
    bson_t *spec = tu_docq("{'a': 1}");
    bq_error_t err;
    bq_sort_t *s = bq_sort_compile(spec, &err);
    cr_assert(s);
    bson_t *x = tu_docq("{'a': '10'}"), *y = tu_docq("{'a': '9'}");
    cr_expect(bq_sort_compare(s, x, y) < 0, "binary: '10' < '9'");
    bq_sort_set_collation(s, num);
    bq_collation_destroy(num); /* the sort keeps its own reference */
    cr_expect(bq_sort_compare(s, x, y) > 0, "numericOrdering: '10' > '9'");
    bq_sort_destroy(s);

    bq_collation_t *upper = coll("{'locale': 'en', 'caseFirst': 'upper'}");
    s = bq_sort_compile(spec, &err);
    bq_sort_set_collation(s, upper);
    bson_t *lo = tu_docq("{'a': 'a'}"), *up = tu_docq("{'a': 'A'}");
    cr_expect(bq_sort_compare(s, up, lo) < 0, "caseFirst upper puts 'A' before 'a'");
    bq_sort_destroy(s);
    bq_collation_destroy(upper);
    bson_destroy(spec);
    bson_destroy(x);
    bson_destroy(y);
    bson_destroy(lo);
    bson_destroy(up);
}

Test(bq_collation, collated_keys_group_equal_strings)
{
    bq_collation_t *c = coll("{'locale': 'en', 'strength': 2}");
    bson_t *h1, *h2;
    bson_value_t a = tu_val("\"Hello\"", &h1), b = tu_val("\"hELLO\"", &h2);
    bq_key_t ka, kb;
    bq_key_init(&ka);
    bq_key_init(&kb);
    bq_key_build_collated(&ka, &a, c);
    bq_key_build_collated(&kb, &b, c);
    cr_expect(ka.len == kb.len && memcmp(ka.data, kb.data, ka.len) == 0);
    bq_key_build(&ka, &a);
    bq_key_build(&kb, &b);
    cr_expect(ka.len != kb.len || memcmp(ka.data, kb.data, ka.len) != 0, "binary keys differ");
    bq_key_cleanup(&ka);
    bq_key_cleanup(&kb);
    bson_destroy(h1);
    bson_destroy(h2);
    bq_collation_destroy(c);
}

Test(bq_collation, spec_errors)
{
    struct {
        const char *json;
        int code;
    } rows[] = {
        {"{}", 40414},
        {"{'strength': 2}", 40414},
        {"{'locale': 'en', 'bogus': 1}", 40415},
        {"{'locale': 1}", 14},
        {"{'locale': 'en', 'strength': 6}", 9},
        {"{'locale': 'en', 'strength': 'x'}", 14},
        {"{'locale': 'en', 'caseFirst': 'middle'}", 9},
        {"{'locale': 'en', 'alternate': 'x'}", 9},
        {"{'locale': 'en', 'caseLevel': 1}", 14},
        {"{'locale': 'xx_NOPE'}", 2},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        bson_t *spec = tu_docq(rows[i].json);
        bq_collation_t *c = NULL;
        bq_error_t err;
        bq_error_clear(&err);
        cr_expect(!bq_collation_new(spec, &c, &err) && err.code == rows[i].code,
                  "%s: expected %d, got %d (%s)", rows[i].json, rows[i].code, err.code,
                  err.message);
        bq_collation_destroy(c);
        bson_destroy(spec);
    }
    bson_t *simple = tu_docq("{'locale': 'simple'}");
    bq_collation_t *c = (bq_collation_t *)1;
    bq_error_t err;
    cr_expect(bq_collation_new(simple, &c, &err) && c == NULL, "simple is binary: no collator");
    bson_destroy(simple);
}
