/*
 * test_bq_project.c: bsonq/bq_project.c, find-style projections. Each row: a document, a
 * projection (operators written #op) and either the exact output (field order counts) or
 * the error code compiling the projection must fail with. Expected outputs follow
 * MongoDB's documentation ("Project Fields to Return from Query", $slice, $elemMatch).
 */
#include "bq_test_util.h"
#include "bq_project.h"

typedef struct {
    const char *doc, *proj, *want;
    int code;
} proj_row_t;

#define INV "{'_id': 1, 'item': 'journal', 'status': 'A', 'size': {'h': 14, 'w': 21, " \
            "'uom': 'cm'}, 'instock': [{'warehouse': 'A', 'qty': 5}, {'warehouse': 'C', "  \
            "'qty': 15}]}"
#define SCH "{'_id': 1, 'zipcode': '63109', 'students': [{'name': 'john', 'school': 102, " \
            "'age': 10}, {'name': 'jess', 'school': 102, 'age': 11}, {'name': 'jeff', "     \
            "'school': 108, 'age': 15}]}"
#define ARR "{'_id': 1, 'a': [{'b': 1, 'c': 2}, {'c': 3}, 5, [{'b': 4, 'c': 0}]]}"

static const proj_row_t rows[] = {
    {INV, "{}", INV, 0},
    {INV, "{'item': 1, 'status': 1}", "{'_id': 1, 'item': 'journal', 'status': 'A'}", 0},
    {INV, "{'status': 1, 'item': 1}", "{'_id': 1, 'item': 'journal', 'status': 'A'}", 0},
    {INV, "{'item': 1, 'status': 1, '_id': 0}", "{'item': 'journal', 'status': 'A'}", 0},
    {INV, "{'item': true, 'status': 5}", "{'_id': 1, 'item': 'journal', 'status': 'A'}", 0},
    {INV, "{'status': 0, 'instock': 0}",
     "{'_id': 1, 'item': 'journal', 'size': {'h': 14, 'w': 21, 'uom': 'cm'}}", 0},
    {INV, "{'status': false, 'instock': 0, '_id': 0}",
     "{'item': 'journal', 'size': {'h': 14, 'w': 21, 'uom': 'cm'}}", 0},
    {INV, "{'item': 1, 'status': 1, 'size.uom': 1}",
     "{'_id': 1, 'item': 'journal', 'status': 'A', 'size': {'uom': 'cm'}}", 0},
    {INV, "{'item': 1, 'status': 1, 'size': {'uom': 1}}",
     "{'_id': 1, 'item': 'journal', 'status': 'A', 'size': {'uom': 'cm'}}", 0},
    {INV, "{'size.uom': 0}",
     "{'_id': 1, 'item': 'journal', 'status': 'A', 'size': {'h': 14, 'w': 21}, "
     "'instock': [{'warehouse': 'A', 'qty': 5}, {'warehouse': 'C', 'qty': 15}]}",
     0},
    {INV, "{'item': 1, 'instock.qty': 1}",
     "{'_id': 1, 'item': 'journal', 'instock': [{'qty': 5}, {'qty': 15}]}", 0},
    {INV, "{'item': 1, 'status': 1, 'instock': {'#slice': -1}}",
     "{'_id': 1, 'item': 'journal', 'status': 'A', 'instock': [{'warehouse': 'C', 'qty': 15}]}",
     0},
    {INV, "{'_id': 1}", "{'_id': 1}", 0},
    {INV, "{'_id': 0, 'size.h': 1}", "{'size': {'h': 14}}", 0},
    /* through arrays: inclusion drops scalars, keeps (projected) documents and arrays */
    {ARR, "{'a.b': 1}", "{'_id': 1, 'a': [{'b': 1}, {}, [{'b': 4}]]}", 0},
    {ARR, "{'a.b': 0}", "{'_id': 1, 'a': [{'c': 2}, {'c': 3}, 5, [{'c': 0}]]}", 0},
    {"{'_id': 1, 'a': 5, 'b': 1}", "{'a.b': 1}", "{'_id': 1}", 0},
    {"{'_id': 1, 'a': 5, 'b': 1}", "{'a.b': 0}", "{'_id': 1, 'a': 5, 'b': 1}", 0},
    {"{'b': 1}", "{'a': 1}", "{}", 0},
    {"{'_id': 1, 'a': {'b': {'c': 1, 'd': 2}, 'e': 3}}", "{'a.b.c': 1}",
     "{'_id': 1, 'a': {'b': {'c': 1}}}", 0},
    /* $slice */
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'a': {'#slice': 2}}",
     "{'_id': 1, 'a': [1, 2], 'b': 1}", 0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'a': {'#slice': -2}}",
     "{'_id': 1, 'a': [2, 3], 'b': 1}", 0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'a': {'#slice': 0}}", "{'_id': 1, 'a': [], 'b': 1}",
     0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'a': {'#slice': [1, 1]}}",
     "{'_id': 1, 'a': [2], 'b': 1}", 0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'a': {'#slice': [-2, 5]}}",
     "{'_id': 1, 'a': [2, 3], 'b': 1}", 0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'a': {'#slice': [5, 1]}}",
     "{'_id': 1, 'a': [], 'b': 1}", 0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1, 'c': 0}", "{'b': 1, 'a': {'#slice': 1}}",
     "{'_id': 1, 'a': [1], 'b': 1}", 0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'b': 0, 'a': {'#slice': 1}}", "{'_id': 1, 'a': [1]}",
     0},
    {"{'_id': 1, 'a': 'x'}", "{'a': {'#slice': 1}}", "{'_id': 1, 'a': 'x'}", 0},
    {"{'_id': 1, 'x': {'a': [1, 2], 'b': 1}}", "{'x.a': {'#slice': 1}}",
     "{'_id': 1, 'x': {'a': [1], 'b': 1}}", 0},
    /* $elemMatch: only _id and the first matching element, after the other fields */
    {SCH, "{'students': {'#elemMatch': {'school': 102}}}",
     "{'_id': 1, 'students': [{'name': 'john', 'school': 102, 'age': 10}]}", 0},
    {SCH, "{'students': {'#elemMatch': {'school': 102, 'age': {'#gt': 10}}}}",
     "{'_id': 1, 'students': [{'name': 'jess', 'school': 102, 'age': 11}]}", 0},
    {SCH, "{'students': {'#elemMatch': {'school': 999}}}", "{'_id': 1}", 0},
    {SCH, "{'students': {'#elemMatch': {'school': 108}}, 'zipcode': 1}",
     "{'_id': 1, 'zipcode': '63109', 'students': [{'name': 'jeff', 'school': 108, 'age': 15}]}",
     0},
    {"{'_id': 1, 'a': [1, 5, 9]}", "{'a': {'#elemMatch': {'#gt': 4}}}", "{'_id': 1, 'a': [5]}", 0},
    /* literals set the field; new ones come after the kept fields */
    {"{'_id': 1, 'a': 1, 'b': 2}", "{'a': 'x'}", "{'_id': 1, 'a': 'x'}", 0},
    {"{'_id': 1, 'a': 1, 'b': 2}", "{'c': 'x', 'b': 1}", "{'_id': 1, 'b': 2, 'c': 'x'}", 0},
    {"{'_id': 1}", "{'x.y': 'lit'}", "{'_id': 1, 'x': {'y': 'lit'}}", 0},
    /* errors */
    {INV, "{'item': 1, 'status': 0}", NULL, 31254},
    {INV, "{'item': 0, 'status': 1}", NULL, 31253},
    {INV, "{'item': 0, 'x': 'lit'}", NULL, 31310},
    {INV, "{'x': 'lit', 'item': 0}", NULL, 31254},
    {INV, "{'_id': 'lit', 'item': 0}", NULL, 31254},
    {INV, "{'instock.$': {'a': 1}}", NULL, 31271},
    {INV, "{'instock.$': 'x'}", NULL, 31308},
    {INV, "{'item': {'#slice': 1, 'x': 1}}", NULL, 16410},
    {INV, "{'size': 1, 'size.uom': 1}", NULL, 31249},
    {INV, "{'size.uom': 1, 'size': 1}", NULL, 31250},
    {INV, "{'size': {}}", NULL, 51270},
    {INV, "{'item': '$status'}", NULL, BQ_ERR_NotImplemented},
    {INV, "{'item': {'#meta': 'textScore'}}", NULL, BQ_ERR_NotImplemented},
    {INV, "{'item': {'#concat': ['a', 'b']}}", NULL, BQ_ERR_NotImplemented},
    {INV, "{'item': {'#meta': 'searchScore'}}", NULL, BQ_ERR_NotImplemented},
    {INV, "{'instock.$': 0}", NULL, 31395},
    {INV, "{'instock.$': 1, 'size.$': 1}", NULL, 31276},
    {INV, "{'instock.$.qty': 1}", NULL, 31394},
    {INV, "{'instock.$': 1, 'item': 0}", NULL, 31254},
    /* find's $slice and $elemMatch arguments (mongod's projection_ast codes; without the
     * aggregation hooks a bad $slice is not retried as the $slice expression) */
    {INV, "{'instock': {'#slice': 'x'}}", NULL, 31273},
    {INV, "{'instock': {'#slice': [1]}}", NULL, 31272},
    {INV, "{'instock': {'#slice': [1, 2, 3]}}", NULL, 31272},
    {INV, "{'instock': {'#slice': ['a', 2]}}", NULL, 31257},
    {INV, "{'instock': {'#slice': [1, 'b']}}", NULL, 31258},
    {INV, "{'instock': {'#slice': [1, 0]}}", NULL, 31259},
    {INV, "{'instock': {'#slice': [1, -2]}}", NULL, 31259},
    {INV, "{'instock': {'#elemMatch': 1}}", NULL, 31274},
    {INV, "{'size.h': {'#elemMatch': {'a': 1}}}", NULL, 31275},
    {INV, "{'instock.$': 1, 'size': {'#elemMatch': {'a': 1}}}", NULL, 31255},
    {INV, "{'size': {'#elemMatch': {'a': 1}}, 'instock.$': 1}", NULL, 31256},
    {INV, "{'#a': 1}", NULL, 16410},
};

Test(bq_project, table)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const proj_row_t *r = &rows[i];
        bson_t *doc = tu_docq(r->doc), *spec = tu_docq(r->proj);
        bq_error_t err;
        bq_error_clear(&err);
        bq_project_t *p = bq_project_compile(spec, &err);
        if (r->want) {
            cr_expect_not_null(p, "row %zu: %s failed: %d %s", i, r->proj, err.code,
                               err.message);
            if (p) {
                bson_t out;
                cr_expect(bq_project_apply(p, doc, &out, &err));
                bson_t *want = tu_docq(r->want);
                char *gs = bson_as_canonical_extended_json(&out, NULL);
                char *ws = bson_as_canonical_extended_json(want, NULL);
                cr_expect(out.len == want->len &&
                              memcmp(bson_get_data(&out), bson_get_data(want), want->len) == 0,
                          "row %zu: %s gave %s, want %s", i, r->proj, gs, ws);
                bson_free(gs);
                bson_free(ws);
                bson_destroy(want);
                bson_destroy(&out);
            }
        } else {
            cr_expect_null(p, "row %zu: %s compiled, want error %d", i, r->proj, r->code);
            cr_expect_eq(err.code, r->code, "row %zu: %s: code %d (%s), want %d", i, r->proj,
                         err.code, err.message, r->code);
        }
        bq_project_destroy(p);
        bson_destroy(doc);
        bson_destroy(spec);
    }
}

Test(bq_project, error_messages)
{
    static const struct {
        const char *proj, *msg;
    } m[] = {
        {"{'a': 1, 'b': 0}", "Cannot do exclusion on field b in inclusion projection"},
        {"{'a': 0, 'b': 1}", "Cannot do inclusion on field b in exclusion projection"},
        {"{'a': 1, 'a.b': 1}", "Path collision at a.b remaining portion b"},
        {"{'a.b': 1, 'a': 1}", "Path collision at a"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        bson_t *spec = tu_docq(m[i].proj);
        bq_error_t err;
        cr_expect_null(bq_project_compile(spec, &err));
        cr_expect_str_eq(err.message, m[i].msg, "%s: '%s'", m[i].proj, err.message);
        bson_destroy(spec);
    }
}

Test(bq_project, modes_and_null_projection)
{
    bson_t *a = tu_docq("{'a': 1}"), *b = tu_docq("{'a': 0}"), *c = tu_docq("{'_id': 0}");
    bq_project_t *pa = bq_project_compile(a, NULL), *pb = bq_project_compile(b, NULL),
                 *pc = bq_project_compile(c, NULL), *pn = bq_project_compile(NULL, NULL);
    cr_assert(pa && pb && pc && pn);
    cr_expect(bq_project_is_inclusion(pa));
    cr_expect(!bq_project_is_inclusion(pb));
    cr_expect(!bq_project_is_inclusion(pc));
    bson_t *doc = tu_docq("{'_id': 3, 'a': 1, 'b': 2}"), out;
    cr_assert(bq_project_apply(pn, doc, &out, NULL));
    cr_expect(bson_equal(&out, doc));
    bson_destroy(&out);
    cr_assert(bq_project_apply(pc, doc, &out, NULL));
    bson_t *w = tu_docq("{'a': 1, 'b': 2}");
    cr_expect(bson_equal(&out, w));
    bson_destroy(w);
    bson_destroy(&out);
    bq_project_destroy(pa);
    bq_project_destroy(pb);
    bq_project_destroy(pc);
    bq_project_destroy(pn);
    bq_project_destroy(NULL);
    bson_destroy(a);
    bson_destroy(b);
    bson_destroy(c);
    bson_destroy(doc);
}

typedef struct {
    const char *filter, *doc, *proj, *want;
    int code;
} pos_row_t;

#define GR "{'_id': 1, 'semester': 1, 'grades': [70, 87, 90]}"

static const pos_row_t pos_rows[] = {
    /* docs: "$ (projection)" */
    {"{'semester': 1, 'grades': {'#gte': 85}}", GR, "{'grades.$': 1}",
     "{'_id': 1, 'grades': [87]}", 0},
    {"{'grades': {'#gte': 85}}", GR, "{'semester': 1, 'grades.$': 1}",
     "{'_id': 1, 'semester': 1, 'grades': [87]}", 0},
    {"{'grades.mean': {'#gt': 70}}",
     "{'_id': 7, 'grades': [{'grade': 80, 'mean': 75}, {'grade': 85, 'mean': 90}]}",
     "{'grades.$': 1}", "{'_id': 7, 'grades': [{'grade': 80, 'mean': 75}]}", 0},
    {"{'x.a': 3}", "{'_id': 1, 'x': {'a': [1, 2, 3], 'b': 0}}", "{'x.a.$': 1}",
     "{'_id': 1, 'x': {'a': [3]}}", 0},
    /* no condition on the array: mongod fails the find */
    {"{'semester': 1}", GR, "{'grades.$': 1}", NULL, 51246},
    {"{'grades': 1000}", GR, "{'grades.$': 1}", NULL, 51246},
    /* a field that is not an array is projected as it is */
    {"{'grades': 5}", "{'_id': 1, 'grades': 5}", "{'grades.$': 1}",
     "{'_id': 1, 'grades': 5}", 0},
};

Test(bq_project, positional_uses_the_filter)
{
    for (size_t i = 0; i < sizeof pos_rows / sizeof pos_rows[0]; i++) {
        const pos_row_t *r = &pos_rows[i];
        bson_t *f = tu_docq(r->filter), *d = tu_docq(r->doc), *spec = tu_docq(r->proj);
        bq_error_t err;
        bq_error_clear(&err);
        bq_project_t *p = bq_project_compile(spec, &err);
        cr_assert_not_null(p, "pos row %zu: %s: %s", i, r->proj, err.message);
        cr_expect(bq_project_uses_positional(p));
        bq_project_opts_t o = {.filter = f};
        bson_t out;
        bool ok = bq_project_apply_ex(p, d, &o, &out, &err);
        if (r->want) {
            bson_t *w = tu_docq(r->want);
            char *gs = bson_as_canonical_extended_json(&out, NULL);
            cr_expect(ok && out.len == w->len &&
                          memcmp(bson_get_data(&out), bson_get_data(w), w->len) == 0,
                      "pos row %zu: got %s (%s)", i, gs, err.message);
            bson_free(gs);
            bson_destroy(w);
        } else {
            cr_expect(!ok, "pos row %zu: succeeded", i);
            cr_expect_eq(err.code, r->code, "pos row %zu: code %d", i, err.code);
        }
        bson_destroy(&out);
        bq_project_destroy(p);
        bson_destroy(f);
        bson_destroy(d);
        bson_destroy(spec);
    }
}

Test(bq_project, meta_seq)
{
    bson_t *doc = tu_docq("{'_id': 1, 'a': 1, 'b': 2}");
    static const struct {
        const char *proj, *want;
    } m[] = {
        {"{'v': {'#meta': 'seq'}}", "{'_id': 1, 'a': 1, 'b': 2, 'v': {'$numberLong': '42'}}"},
        {"{'a': 1, 'v': {'#meta': 'seq'}}", "{'_id': 1, 'a': 1, 'v': {'$numberLong': '42'}}"},
        {"{'a': 0, 'v': {'#meta': 'seq'}}", "{'_id': 1, 'b': 2, 'v': {'$numberLong': '42'}}"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        bson_t *spec = tu_docq(m[i].proj), *w = tu_docq(m[i].want), out;
        bq_project_t *p = bq_project_compile(spec, NULL);
        cr_assert_not_null(p, "%s", m[i].proj);
        bq_project_opts_t o = {.has_seq = true, .seq = 42};
        cr_assert(bq_project_apply_ex(p, doc, &o, &out, NULL));
        char *gs = bson_as_canonical_extended_json(&out, NULL);
        cr_expect(bson_equal(&out, w), "%s gave %s", m[i].proj, gs);
        bson_free(gs);
        bson_destroy(&out);
        /* without a seq the field is left out */
        cr_assert(bq_project_apply(p, doc, &out, NULL));
        bson_iter_t it;
        cr_expect(!bson_iter_init_find(&it, &out, "v"), "%s: v without a seq", m[i].proj);
        bson_destroy(&out);
        bq_project_destroy(p);
        bson_destroy(spec);
        bson_destroy(w);
    }
    bson_destroy(doc);
}
