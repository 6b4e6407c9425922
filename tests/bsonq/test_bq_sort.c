/*
 * test_bq_sort.c: bsonq/bq_sort.c, sort specifications and MongoDB's sort order of
 * documents. Rows give a sort, a list of documents, and the order (by _id) a stable sort
 * must produce; error rows give the code compiling the sort must fail with.
 */
#include "bq_test_util.h"
#include "bq_sort.h"

typedef struct {
    const char *sort;
    const char *docs;   /* JSON array of documents, each with an _id */
    const char *order;  /* JSON array of _ids */
} sort_row_t;

static const sort_row_t rows[] = {
    {"{'a': 1}", "[{'_id': 1, 'a': 3}, {'_id': 2, 'a': 1}, {'_id': 3, 'a': 2}]", "[2, 3, 1]"},
    {"{'a': -1}", "[{'_id': 1, 'a': 3}, {'_id': 2, 'a': 1}, {'_id': 3, 'a': 2}]", "[1, 3, 2]"},
    /* numbers compare across types */
    {"{'a': 1}", "[{'_id': 1, 'a': 2.5}, {'_id': 2, 'a': {'$numberLong': '2'}}, "
                 "{'_id': 3, 'a': 3}]",
     "[2, 1, 3]"},
    /* type order: missing = null < numbers < strings < objects < arrays-as-elements ... */
    {"{'a': 1}", "[{'_id': 1, 'a': 'x'}, {'_id': 2, 'a': 1}, {'_id': 3}, {'_id': 4, 'a': null},"
                 " {'_id': 5, 'a': {'b': 1}}, {'_id': 6, 'a': true}]",
     "[3, 4, 2, 1, 5, 6]"},
    /* stable: equal keys keep their input order */
    {"{'a': 1}", "[{'_id': 1, 'a': 1}, {'_id': 2, 'a': 0}, {'_id': 3, 'a': 1}, "
                 "{'_id': 4, 'a': 0}]",
     "[2, 4, 1, 3]"},
    {"{'a': -1}", "[{'_id': 1, 'a': 1}, {'_id': 2}, {'_id': 3, 'a': 1}, {'_id': 4}]",
     "[1, 3, 2, 4]"},
    /* arrays: ascending uses the smallest element, descending the largest */
    {"{'a': 1}", "[{'_id': 1, 'a': [5, 0]}, {'_id': 2, 'a': 1}, {'_id': 3, 'a': [2, 3]}]",
     "[1, 2, 3]"},
    {"{'a': -1}", "[{'_id': 1, 'a': [5, 0]}, {'_id': 2, 'a': 6}, {'_id': 3, 'a': [2, 3]}]",
     "[2, 1, 3]"},
    /* an empty array sorts before null and missing */
    {"{'a': 1}", "[{'_id': 1, 'a': null}, {'_id': 2, 'a': []}, {'_id': 3, 'a': 0}, {'_id': 4}]",
     "[2, 1, 4, 3]"},
    {"{'a': -1}", "[{'_id': 1, 'a': null}, {'_id': 2, 'a': []}, {'_id': 3, 'a': 0}]",
     "[3, 1, 2]"},
    /* mongod's documented order for these five (DOCS-2760) */
    {"{'a': 1}", "[{'_id': 1}, {'_id': 2, 'a': 1}, {'_id': 3, 'a': []}, {'_id': 4, 'a': [1]}, "
                 "{'_id': 5, 'a': [0, 1]}]",
     "[3, 1, 5, 2, 4]"},
    {"{'a': -1}", "[{'_id': 1}, {'_id': 2, 'a': 1}, {'_id': 3, 'a': []}, {'_id': 4, 'a': [1]}, "
                  "{'_id': 5, 'a': [0, 1]}]",
     "[2, 4, 5, 1, 3]"},
    /* dotted paths, through arrays of documents */
    {"{'a.b': 1}", "[{'_id': 1, 'a': {'b': 2}}, {'_id': 2, 'a': [{'b': 3}, {'b': 1}]}, "
                   "{'_id': 3, 'a': {'c': 1}}]",
     "[3, 2, 1]"},
    {"{'a.b': -1}", "[{'_id': 1, 'a': {'b': 2}}, {'_id': 2, 'a': [{'b': 3}, {'b': 1}]}]",
     "[2, 1]"},
    {"{'a.1': 1}", "[{'_id': 1, 'a': [9, 2]}, {'_id': 2, 'a': [0, 1]}]", "[2, 1]"},
    /* compound */
    {"{'a': 1, 'b': -1}", "[{'_id': 1, 'a': 1, 'b': 1}, {'_id': 2, 'a': 1, 'b': 2}, "
                          "{'_id': 3, 'a': 0, 'b': 0}]",
     "[3, 2, 1]"},
    {"{}", "[{'_id': 2}, {'_id': 1}]", "[2, 1]"},
    {"{'a': 1.0, 'b': {'$numberLong': '-1'}}",
     "[{'_id': 1, 'a': 1, 'b': 1}, {'_id': 2, 'a': 1, 'b': 2}]", "[2, 1]"},
    /* strings by bytes */
    {"{'s': 1}", "[{'_id': 1, 's': 'b'}, {'_id': 2, 's': 'B'}, {'_id': 3, 's': 'a'}]",
     "[2, 3, 1]"},
};

static void docs_array(const char *json, const bson_t ***out, size_t *n, bson_t **holder)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "{'v': %s}", json);
    *holder = tu_docq(buf);
    bson_iter_t it, a;
    cr_assert(bson_iter_init_find(&it, *holder, "v"));
    bson_iter_recurse(&it, &a);
    size_t cap = 64;
    bson_t **docs = calloc(cap, sizeof *docs);
    *n = 0;
    while (bson_iter_next(&a) && *n < cap) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&a, &len, &data);
        docs[(*n)++] = bson_new_from_data(data, len);
    }
    *out = (const bson_t **)docs;
}

Test(bq_sort, order_table)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const sort_row_t *r = &rows[i];
        bson_t *spec = tu_docq(r->sort);
        bq_error_t err;
        bq_sort_t *s = bq_sort_compile(spec, &err);
        cr_assert_not_null(s, "row %zu: %s: %s", i, r->sort, err.message);
        const bson_t **docs;
        size_t n;
        bson_t *holder;
        docs_array(r->docs, &docs, &n, &holder);
        bson_t **orig = malloc(sizeof *orig * (n ? n : 1));
        memcpy(orig, docs, sizeof *orig * n);
        cr_assert(bq_sort_docs(s, docs, n));
        char got[256] = "[", *p = got + 1;
        for (size_t j = 0; j < n; j++) {
            bson_iter_t id;
            cr_assert(bson_iter_init_find(&id, docs[j], "_id"));
            p += snprintf(p, (size_t)(got + sizeof got - p), "%s%d", j ? ", " : "",
                          bson_iter_int32(&id));
        }
        snprintf(p, (size_t)(got + sizeof got - p), "]");
        cr_expect_str_eq(got, r->order, "row %zu: sort %s of %s gave %s, want %s", i, r->sort,
                         r->docs, got, r->order);
        /* the comparator agrees with the order */
        for (size_t j = 0; j + 1 < n; j++)
            cr_expect(bq_sort_compare(s, docs[j], docs[j + 1]) <= 0, "row %zu: pair %zu", i, j);
        for (size_t j = 0; j < n; j++)
            bson_destroy(orig[j]);
        free(orig);
        free(docs);
        bson_destroy(holder);
        bson_destroy(spec);
        bq_sort_destroy(s);
    }
}

typedef struct {
    const char *sort;
    int code;
} sort_err_t;

static const sort_err_t errs[] = {
    {"{'a': 'x'}", 15974},
    {"{'a': true}", 15974},
    {"{'a': 2}", 15975},
    {"{'a': 0}", 15975},
    {"{'a': -0.5}", 15975},
    {"{'a': {'b': 1}}", 17312},
    {"{'a': {'#meta': 'textScore'}}", BQ_ERR_NotImplemented},
    {"{'a': {'#meta': 'textScore', 'x': 1}}", BQ_ERR_FailedToParse},
    {"{'': 1}", BQ_ERR_FailedToParse},
};

Test(bq_sort, invalid_specs)
{
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        bson_t *spec = tu_docq(errs[i].sort);
        bq_error_t err;
        bq_error_clear(&err);
        bq_sort_t *s = bq_sort_compile(spec, &err);
        cr_expect_null(s, "row %zu: %s compiled", i, errs[i].sort);
        cr_expect_eq(err.code, errs[i].code, "row %zu: %s: code %d (%s), want %d", i,
                     errs[i].sort, err.code, err.message, errs[i].code);
        bq_sort_destroy(s);
        bson_destroy(spec);
    }
    bson_t *spec = tu_docq("{'a': 'x'}");
    bq_error_t err;
    cr_expect_null(bq_sort_compile(spec, &err));
    cr_expect_str_eq(err.message, "Illegal key in $sort specification: a: \"x\"");
    bson_destroy(spec);
    spec = tu_docq("{'a': 3}");
    cr_expect_null(bq_sort_compile(spec, &err));
    cr_expect_str_eq(err.message,
                     "$sort key ordering must be 1 (for ascending) or -1 (for descending)");
    bson_destroy(spec);
}

Test(bq_sort, natural_and_empty)
{
    bson_t *spec = tu_docq("{'#natural': -1}");
    int dir = 0;
    bq_sort_t *s = bq_sort_compile(spec, NULL);
    cr_assert_not_null(s);
    cr_expect(bq_sort_is_natural(s, &dir));
    cr_expect_eq(dir, -1);
    cr_expect(!bq_sort_is_empty(s));
    bq_sort_destroy(s);
    bson_destroy(spec);
    spec = tu_docq("{}");
    s = bq_sort_compile(spec, NULL);
    cr_assert_not_null(s);
    cr_expect(bq_sort_is_empty(s));
    cr_expect(!bq_sort_is_natural(s, &dir));
    bq_sort_destroy(s);
    bson_destroy(spec);
    spec = tu_docq("{'a': 1}");
    s = bq_sort_compile(spec, NULL);
    cr_expect(!bq_sort_is_natural(s, NULL));
    cr_expect(!bq_sort_is_empty(s));
    bq_sort_destroy(s);
    bson_destroy(spec);
}

Test(bq_sort, compare_values_of_non_documents)
{
    bson_t *spec = tu_docq("{'a': 1}");
    bq_sort_t *s = bq_sort_compile(spec, NULL);
    bson_t *h1, *h2;
    bson_value_t five = tu_val("5", &h1), doc = tu_val("{\"a\": 1}", &h2);
    /* a scalar has no field a: it sorts as null, before 1 */
    cr_expect_lt(bq_sort_compare_values(s, &five, &doc), 0);
    cr_expect_gt(bq_sort_compare_values(s, &doc, &five), 0);
    cr_expect_eq(bq_sort_compare_values(s, &five, &five), 0);
    bson_destroy(h1);
    bson_destroy(h2);
    bq_sort_destroy(s);
    bson_destroy(spec);
}
