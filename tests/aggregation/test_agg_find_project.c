/*
 * test_agg_find_project.c: aggregation expressions in find projections (bsonq/bq_project.c
 * evaluating through the hooks aggregation/agg_bq_hooks.c installs). Each row: a document,
 * a projection (operators written #op, see bq_test_util.h) and either the exact output
 * (field order counts) or the error code. Expected outputs follow MongoDB 7.0's
 * db.collection.find() documentation ("Projection" with aggregation expressions, since
 * 4.4: a value other than a number or boolean is an expression or a literal setting the
 * field; computed fields come after the included fields; $$REMOVE drops the field) and
 * mongod's projection parse errors (31252, 31254, 31310, 31325).
 */
#include "agg_hooks.h"
#include "bq_project.h"
#include "bsonq/bq_test_util.h"

typedef struct {
    const char *doc, *proj, *want;
    int code;         /* compile error; or with want == NULL and apply_code: apply error */
    int apply_code;
} fp_row_t;

/* the inventory document of the find() documentation's projection examples */
#define INV "{'_id': 1, 'item': 'journal', 'status': 'A', 'size': {'h': 14, 'w': 21, " \
            "'uom': 'cm'}, 'instock': [{'warehouse': 'A', 'qty': 5}]}"

static const fp_row_t rows[] = {
    /* the documentation's example: $switch, $concat/$toString/$multiply, $literal */
    {INV,
     "{'_id': 0, 'item': 1, 'status': {'#switch': {'branches': [{'case': {'#eq': ['$status', "
     "'A']}, 'then': 'Available'}, {'case': {'#eq': ['$status', 'D']}, 'then': "
     "'Discontinued'}], 'default': 'No status found'}}, 'area': {'#concat': [{'#toString': "
     "{'#multiply': ['$size.h', '$size.w']}}, ' ', '$size.uom']}, 'reportNumber': {'#literal': "
     "1}}",
     "{'item': 'journal', 'status': 'Available', 'area': '294 cm', 'reportNumber': 1}", 0, 0},
    /* field paths and operators; _id stays included */
    {"{'_id': 1, 'a': 2, 'b': 3}", "{'total': {'#add': ['$a', '$b']}}", "{'_id': 1, 'total': 5}",
     0, 0},
    {"{'_id': 1, 'name': 'ann'}", "{'name': {'#toUpper': '$name'}}", "{'_id': 1, 'name': 'ANN'}",
     0, 0},
    {"{'_id': 1, 'a': {'b': 7}}", "{'x': '$a.b'}", "{'_id': 1, 'x': 7}", 0, 0},
    {"{'_id': 1}", "{'x': '$missing'}", "{'_id': 1}", 0, 0},
    {"{'_id': 1, 'a': 2}", "{'x': ['$a', 1]}", "{'_id': 1, 'x': [2, 1]}", 0, 0},
    {"{'_id': 1, 'a': 2}", "{'x': {'#literal': '$a'}}", "{'_id': 1, 'x': '$a'}", 0, 0},
    /* computed fields after the included ones, in projection order */
    {"{'_id': 1, 'a': 1, 'b': 2, 'c': 3}", "{'z': {'#literal': 0}, 'c': 1, 'a': '$b'}",
     "{'_id': 1, 'c': 3, 'z': 0, 'a': 2}", 0, 0},
    {"{'_id': 5, 'a': 1}", "{'_id': {'#add': ['$_id', 1]}, 'a': 1}", "{'a': 1, '_id': 6}", 0, 0},
    /* $$REMOVE and conditional removal */
    {"{'_id': 1, 'a': 1, 'b': 2}", "{'a': 1, 'b': '$$REMOVE'}", "{'_id': 1, 'a': 1}", 0, 0},
    {"{'_id': 1, 'a': 1}", "{'a': {'#cond': [{'#gt': ['$a', 5]}, '$a', '$$REMOVE']}}",
     "{'_id': 1}", 0, 0},
    {"{'_id': 1, 'a': 9}", "{'a': {'#cond': [{'#gt': ['$a', 5]}, '$a', '$$REMOVE']}}",
     "{'_id': 1, 'a': 9}", 0, 0},
    /* nested and dotted paths: the whole document is the root even inside arrays */
    {"{'_id': 1, 'a': {'b': 1, 'c': 2}, 'k': 10}", "{'a': {'b': 1, 'd': {'#add': ['$k', 1]}}}",
     "{'_id': 1, 'a': {'b': 1, 'd': 11}}", 0, 0},
    {"{'_id': 1, 'a': {'b': 1, 'c': 2}, 'k': 10}", "{'a.c': 1, 'a.d': '$k'}",
     "{'_id': 1, 'a': {'c': 2, 'd': 10}}", 0, 0},
    {"{'_id': 1, 'a': 5, 'k': 10}", "{'a.d': '$k'}", "{'_id': 1, 'a': {'d': 10}}", 0, 0},
    {"{'_id': 1, 'k': 10}", "{'x.y': {'#multiply': ['$k', 2]}}", "{'_id': 1, 'x': {'y': 20}}", 0,
     0},
    {"{'_id': 1, 'a': [{'b': 1}, {'b': 2}], 'k': 3}", "{'a.c': '$k'}",
     "{'_id': 1, 'a': [{'c': 3}, {'c': 3}]}", 0, 0},
    /* the command-level variables every expression sees */
    {"{'_id': 1, 'a': 1}", "{'r': '$$ROOT'}", "{'_id': 1, 'r': {'_id': 1, 'a': 1}}", 0, 0},
    /* $slice: find's form, else the expression */
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'a': {'#slice': 2}}",
     "{'_id': 1, 'a': [1, 2], 'b': 1}", 0, 0},
    {"{'_id': 1, 'a': [1, 2, 3], 'b': 1}", "{'x': {'#slice': ['$a', 1, 1]}}",
     "{'_id': 1, 'x': [2]}", 0, 0},
    /* parse errors, as mongod reports them */
    {INV, "{'item': 0, 'x': {'#add': [1, 2]}}", NULL, 31252, 0},
    {INV, "{'x': {'#add': [1, 2]}, 'item': 0}", NULL, 31254, 0},
    {INV, "{'item': 0, 'x': '$status'}", NULL, 31310, 0},
    {INV, "{'item': 0, 'x': [1]}", NULL, 31310, 0},
    {INV, "{'x': {'#nosuchop': 1}}", NULL, 31325, 0},
    {INV, "{'x': {'#add': [{'#nosuchop': 1}]}}", NULL, BQ_ERR_InvalidPipelineOperator, 0},
    {INV, "{'x': '$$undefinedvar'}", NULL, 17276, 0},
    {INV, "{'x': {'#add': [1, 2], 'y': 1}}", NULL, 16410, 0},
    {INV, "{'instock.$': {'#add': [1, 2]}}", NULL, 31271, 0},
    /* evaluation errors fail the projection with the expression's code */
    {"{'_id': 1, 'a': 'x'}", "{'v': {'#add': ['$a', 1]}}", NULL, 0, 16554},
    {"{'_id': 1, 'a': 'abc'}", "{'v': {'#toInt': '$a'}}", NULL, 0, 241},
};

Test(agg_find_project, expressions_follow_the_documentation)
{
    agg_install_bq_hooks();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const fp_row_t *r = &rows[i];
        bson_t *doc = tu_docq(r->doc), *spec = tu_docq(r->proj);
        bq_error_t err;
        bq_error_clear(&err);
        bq_project_t *p = bq_project_compile(spec, &err);
        if (r->code) {
            cr_expect_null(p, "row %zu: %s compiled, want error %d", i, r->proj, r->code);
            cr_expect_eq(err.code, r->code, "row %zu: %s: code %d (%s), want %d", i, r->proj,
                         err.code, err.message, r->code);
        } else if (!p) {
            cr_expect_not_null(p, "row %zu: %s failed: %d %s", i, r->proj, err.code,
                               err.message);
        } else {
            bson_t out;
            bool ok = bq_project_apply(p, doc, &out, &err);
            if (!r->want) {
                cr_expect(!ok, "row %zu: %s applied, want error %d", i, r->proj, r->apply_code);
                cr_expect_eq(err.code, r->apply_code, "row %zu: %s: code %d (%s), want %d", i,
                             r->proj, err.code, err.message, r->apply_code);
            } else {
                cr_expect(ok, "row %zu: %s: %d %s", i, r->proj, err.code, err.message);
                bson_t *want = tu_docq(r->want);
                char *gs = bson_as_canonical_extended_json(&out, NULL);
                char *ws = bson_as_canonical_extended_json(want, NULL);
                cr_expect(out.len == want->len &&
                              memcmp(bson_get_data(&out), bson_get_data(want), want->len) == 0,
                          "row %zu: %s gave %s, want %s", i, r->proj, gs, ws);
                bson_free(gs);
                bson_free(ws);
                bson_destroy(want);
            }
            bson_destroy(&out);
        }
        bq_project_destroy(p);
        bson_destroy(doc);
        bson_destroy(spec);
    }
}

Test(agg_find_project, let_variables_are_visible)
{
    agg_install_bq_hooks();
    bson_t *spec = tu_docq("{'x': {'#multiply': ['$a', '$$factor']}}");
    bson_t *let = tu_docq("{'factor': {'#add': [1, 1]}}");
    bson_t *doc = tu_docq("{'_id': 1, 'a': 4}");
    bson_t *want = tu_docq("{'_id': 1, 'x': 8}");
    bq_error_t err;
    bq_project_t *p = bq_project_compile_let(spec, let, &err);
    cr_assert_not_null(p, "%d %s", err.code, err.message);
    bson_t out;
    cr_assert(bq_project_apply(p, doc, &out, &err), "%s", err.message);
    cr_expect(bson_equal(&out, want));
    bson_destroy(&out);
    bq_project_destroy(p);
    /* without the let the variable is undefined */
    cr_expect_null(bq_project_compile(spec, &err));
    cr_expect_eq(err.code, 17276);
    bson_destroy(spec);
    bson_destroy(let);
    bson_destroy(doc);
    bson_destroy(want);
}
