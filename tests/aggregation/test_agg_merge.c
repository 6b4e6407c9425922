/*
 * test_agg_merge.c: the $merge write helpers (aggregation/agg_merge.c): for a parsed
 * $merge stage, the document and filter agg_merge_prepare() gives, and the action and
 * resulting document agg_merge_apply() decides for a matched target document or none.
 * Expected results follow MongoDB 7.0's $merge documentation.
 */
#include <criterion/criterion.h>

#include "agg.h"
#include "agg_case_util.h"
#include "agg_hooks.h"
#include "agg_merge.h"
#include "agg_pipeline.h"

typedef struct fixture {
    agg_pipeline_t *p;
    agg_run_t run;
    const agg_out_t *out;
} fixture_t;

static bson_t *J(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    cr_assert(b, "bad test JSON %s: %s", json, e.message);
    return b;
}

/* Parses {"p": [stages]} ending in $merge and opens a run. */
static void fixture_init(fixture_t *f, const char *pipeline_json)
{
    agg_install_bq_hooks();
    bson_t *doc = J(pipeline_json);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, doc, "p"));
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_t p;
    bson_init_static(&p, data, len);
    bq_error_t err;
    bq_error_clear(&err);
    agg_pipeline_opts_t opts = {.db = "test", .coll = "src"};
    f->p = agg_pipeline_parse(&p, &opts, &err);
    cr_assert(f->p, "parse failed: %d %s", err.code, err.message);
    f->out = agg_pipeline_out(f->p);
    cr_assert(f->out && f->out->merge);
    cr_assert(agg_run_init(&f->run, f->p, NULL, "test", 1577836800000LL, 1, 1, false, &err));
    bson_destroy(doc);
}

static void fixture_cleanup(fixture_t *f)
{
    agg_run_cleanup(&f->run);
    agg_pipeline_destroy(f->p);
}

static void expect_doc(const bson_t *got, const char *want_json)
{
    bson_t *want = J(want_json);
    char *g = bson_as_relaxed_extended_json(got, NULL);
    cr_expect(strict_doc_equal(got, want), "got %s, want %s", g, want_json);
    bson_free(g);
    bson_destroy(want);
}

/* Runs apply with existing (NULL allowed) and incoming; checks the action and result. */
static void check_apply(const char *pipeline, const char *existing, const char *incoming,
                        int want_action, const char *want_result, int want_code)
{
    fixture_t f;
    fixture_init(&f, pipeline);
    bson_t *ex = existing ? J(existing) : NULL;
    bson_t *in = J(incoming);
    bson_t result;
    bq_error_t err;
    bq_error_clear(&err);
    int act = agg_merge_apply(f.out, &f.run, ex, in, &result, &err);
    if (want_code) {
        cr_expect(act == -1 && err.code == want_code, "%s: want error %d, got action %d code %d (%s)",
                  pipeline, want_code, act, err.code, err.message);
    } else {
        cr_expect(act == want_action, "%s: want action %d, got %d (%d %s)", pipeline, want_action,
                  act, err.code, err.message);
        if (want_result)
            expect_doc(&result, want_result);
    }
    bson_destroy(&result);
    if (ex)
        bson_destroy(ex);
    bson_destroy(in);
    fixture_cleanup(&f);
}

#define MERGE(spec) "{\"p\": [{\"$merge\": " spec "}]}"

Test(agg_merge, parse_fills_the_target)
{
    fixture_t f;
    fixture_init(&f, MERGE("{\"into\": {\"db\": \"other\", \"coll\": \"t\"}, \"on\": [\"a\", \"b\"], "
                           "\"whenMatched\": \"replace\", \"whenNotMatched\": \"discard\"}"));
    cr_expect_str_eq(f.out->db, "other");
    cr_expect_str_eq(f.out->coll, "t");
    cr_expect(f.out->when_matched == AGG_MERGE_REPLACE);
    cr_expect(f.out->when_not_matched == AGG_MERGE_DISCARD);
    cr_expect(f.out->on && bson_count_keys(f.out->on) == 2);
    fixture_cleanup(&f);
    fixture_init(&f, MERGE("\"t\""));
    cr_expect_str_eq(f.out->db, "test");
    cr_expect(f.out->when_matched == AGG_MERGE_MERGE && f.out->when_not_matched == AGG_MERGE_INSERT);
    cr_expect(f.out->on == NULL);
    fixture_cleanup(&f);
}

Test(agg_merge, prepare_builds_the_id_filter)
{
    fixture_t f;
    fixture_init(&f, MERGE("\"t\""));
    bson_t *in = J("{\"_id\": 5, \"a\": 1}");
    bson_t doc, filter;
    bq_error_t err;
    cr_expect(agg_merge_prepare(f.out, in, &doc, &filter, &err));
    expect_doc(&doc, "{\"_id\": 5, \"a\": 1}");
    expect_doc(&filter, "{\"_id\": {\"$eq\": 5}}");
    bson_destroy(&doc);
    bson_destroy(&filter);
    bson_destroy(in);
    fixture_cleanup(&f);
}

Test(agg_merge, prepare_generates_a_missing_id_first)
{
    fixture_t f;
    fixture_init(&f, MERGE("\"t\""));
    bson_t *in = J("{\"a\": 1}");
    bson_t doc, filter;
    bq_error_t err;
    cr_expect(agg_merge_prepare(f.out, in, &doc, &filter, &err));
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, &doc) && bson_iter_next(&it));
    cr_expect_str_eq(bson_iter_key(&it), "_id");
    cr_expect(BSON_ITER_HOLDS_OID(&it));
    cr_expect(bson_iter_init_find(&it, &filter, "_id"));
    bson_destroy(&doc);
    bson_destroy(&filter);
    bson_destroy(in);
    fixture_cleanup(&f);
}

Test(agg_merge, prepare_with_on_fields)
{
    fixture_t f;
    fixture_init(&f, MERGE("{\"into\": \"t\", \"on\": [\"k\", \"x.y\"]}"));
    bson_t *in = J("{\"k\": \"a\", \"x\": {\"y\": 2}}");
    bson_t doc, filter;
    bq_error_t err;
    cr_expect(agg_merge_prepare(f.out, in, &doc, &filter, &err));
    expect_doc(&doc, "{\"k\": \"a\", \"x\": {\"y\": 2}}"); /* no _id added: on has no _id */
    expect_doc(&filter, "{\"k\": {\"$eq\": \"a\"}, \"x.y\": {\"$eq\": 2}}");
    bson_destroy(&doc);
    bson_destroy(&filter);
    bson_destroy(in);
    fixture_cleanup(&f);
}

Test(agg_merge, prepare_refuses_missing_null_and_array_on_values)
{
    const char *bad[] = {"{\"_id\": 1}", "{\"_id\": 1, \"k\": null}", "{\"_id\": 1, \"k\": [1]}",
                         "{\"_id\": 1, \"k\": {\"$undefined\": true}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fixture_t f;
        fixture_init(&f, MERGE("{\"into\": \"t\", \"on\": \"k\"}"));
        bson_t *in = J(bad[i]);
        bson_t doc, filter;
        bq_error_t err;
        bq_error_clear(&err);
        cr_expect(!agg_merge_prepare(f.out, in, &doc, &filter, &err));
        cr_expect(err.code == 51132, "%s: code %d", bad[i], err.code);
        bson_destroy(&doc);
        bson_destroy(&filter);
        bson_destroy(in);
        fixture_cleanup(&f);
    }
}

Test(agg_merge, not_matched_insert_discard_fail)
{
    check_apply(MERGE("\"t\""), NULL, "{\"_id\": 1, \"a\": 1}", AGG_MERGE_ACT_INSERT,
                "{\"_id\": 1, \"a\": 1}", 0);
    check_apply(MERGE("{\"into\": \"t\", \"whenNotMatched\": \"discard\"}"), NULL, "{\"_id\": 1}",
                AGG_MERGE_ACT_DISCARD, NULL, 0);
    check_apply(MERGE("{\"into\": \"t\", \"whenNotMatched\": \"fail\"}"), NULL, "{\"_id\": 1}", 0,
                NULL, 13113);
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": [{\"$set\": {\"x\": 1}}]}"), NULL,
                "{\"_id\": 1, \"a\": 1}", AGG_MERGE_ACT_INSERT, "{\"_id\": 1, \"a\": 1}", 0);
}

Test(agg_merge, matched_merge_is_a_top_level_field_merge)
{
    check_apply(MERGE("\"t\""), "{\"_id\": 1, \"a\": 0, \"b\": {\"x\": 1}, \"c\": 3}",
                "{\"_id\": 1, \"b\": {\"y\": 2}, \"a\": 5, \"d\": 4}", AGG_MERGE_ACT_REPLACE,
                "{\"_id\": 1, \"a\": 5, \"b\": {\"y\": 2}, \"c\": 3, \"d\": 4}", 0);
}

Test(agg_merge, matched_replace_keep_fail)
{
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": \"replace\"}"),
                "{\"_id\": 1, \"a\": 0, \"c\": 3}", "{\"_id\": 1, \"a\": 5}", AGG_MERGE_ACT_REPLACE,
                "{\"_id\": 1, \"a\": 5}", 0);
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": \"keepExisting\"}"),
                "{\"_id\": 1, \"a\": 0}", "{\"_id\": 1, \"a\": 5}", AGG_MERGE_ACT_KEEP, NULL, 0);
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": \"fail\"}"), "{\"_id\": 1, \"a\": 0}",
                "{\"_id\": 1, \"a\": 5}", 0, NULL, 11000);
}

Test(agg_merge, replace_on_other_fields_keeps_the_target_id)
{
    check_apply(MERGE("{\"into\": \"t\", \"on\": \"k\", \"whenMatched\": \"replace\"}"),
                "{\"_id\": 7, \"k\": 1, \"old\": true}", "{\"k\": 1, \"v\": 2}",
                AGG_MERGE_ACT_REPLACE, "{\"_id\": 7, \"k\": 1, \"v\": 2}", 0);
    check_apply(MERGE("{\"into\": \"t\", \"on\": \"k\"}"), "{\"_id\": 7, \"k\": 1}",
                "{\"k\": 1, \"v\": 2}", AGG_MERGE_ACT_REPLACE, "{\"_id\": 7, \"k\": 1, \"v\": 2}",
                0);
}

Test(agg_merge, changing_the_id_is_refused)
{
    check_apply(MERGE("{\"into\": \"t\", \"on\": \"k\", \"whenMatched\": \"replace\"}"),
                "{\"_id\": 7, \"k\": 1}", "{\"_id\": 8, \"k\": 1}", 0, NULL, 66);
    check_apply(MERGE("{\"into\": \"t\", \"on\": \"k\"}"), "{\"_id\": 7, \"k\": 1}",
                "{\"_id\": 8, \"k\": 1}", 0, NULL, 66);
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": [{\"$set\": {\"_id\": 2}}]}"),
                "{\"_id\": 1}", "{\"_id\": 1}", 0, NULL, 66);
}

Test(agg_merge, pipeline_sees_new_and_the_target_as_root)
{
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": [{\"$set\": {\"total\": {\"$add\": "
                      "[\"$total\", \"$$new.total\"]}, \"prev\": \"$$ROOT.total\"}}]}"),
                "{\"_id\": 1, \"total\": 10}", "{\"_id\": 1, \"total\": 5}", AGG_MERGE_ACT_REPLACE,
                "{\"_id\": 1, \"total\": 15, \"prev\": 10}", 0);
}

Test(agg_merge, pipeline_with_let_evaluated_on_the_incoming_document)
{
    check_apply(MERGE("{\"into\": \"t\", \"let\": {\"inc\": {\"$multiply\": [\"$n\", 2]}}, "
                      "\"whenMatched\": [{\"$set\": {\"n\": {\"$add\": [\"$n\", \"$$inc\"]}}}]}"),
                "{\"_id\": 1, \"n\": 1}", "{\"_id\": 1, \"n\": 10}", AGG_MERGE_ACT_REPLACE,
                "{\"_id\": 1, \"n\": 21}", 0);
    /* with let and whenNotMatched insert, $$new is still defined */
    check_apply(MERGE("{\"into\": \"t\", \"let\": {\"x\": 1}, \"whenMatched\": [{\"$set\": "
                      "{\"n\": \"$$new.n\", \"x\": \"$$x\"}}]}"),
                "{\"_id\": 1, \"n\": 1}", "{\"_id\": 1, \"n\": 10}", AGG_MERGE_ACT_REPLACE,
                "{\"_id\": 1, \"n\": 10, \"x\": 1}", 0);
}

Test(agg_merge, pipeline_that_drops_the_id_keeps_it)
{
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": [{\"$replaceWith\": {\"v\": "
                      "\"$$new.v\"}}]}"),
                "{\"_id\": 1, \"v\": 0, \"w\": 1}", "{\"_id\": 1, \"v\": 9}",
                AGG_MERGE_ACT_REPLACE, "{\"_id\": 1, \"v\": 9}", 0);
}

Test(agg_merge, pipeline_error_is_reported)
{
    check_apply(MERGE("{\"into\": \"t\", \"whenMatched\": [{\"$set\": {\"x\": {\"$divide\": "
                      "[1, \"$z\"]}}}]}"),
                "{\"_id\": 1, \"z\": 0}", "{\"_id\": 1}", 0, NULL, 16608);
}

Test(agg_merge, dup_key_message_names_the_index)
{
    fixture_t f;
    fixture_init(&f, MERGE("{\"into\": \"t\", \"whenMatched\": \"fail\"}"));
    bson_t *ex = J("{\"_id\": 3}"), *in = J("{\"_id\": 3}");
    bson_t result;
    bq_error_t err;
    bq_error_clear(&err);
    cr_expect(agg_merge_apply(f.out, &f.run, ex, in, &result, &err) == -1);
    cr_expect(strstr(err.message, "E11000 duplicate key error collection: test.t index: _id_"),
              "%s", err.message);
    bson_destroy(&result);
    bson_destroy(ex);
    bson_destroy(in);
    fixture_cleanup(&f);
}
