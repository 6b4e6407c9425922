/*
 * test_bq_path.c: bsonq/bq_path.c, dotted paths as MongoDB's query matcher resolves
 * them. Each row: a document, a path, flags, the values reached in order (a missing hit is
 * written {"$undefined": true}) and one character per hit: '1' when it came from an
 * expanded array, '0' otherwise.
 */
#include "bq_test_util.h"

#define EXP BQ_PATH_EXPAND_LEAF_ARRAYS

typedef struct {
    const char *doc, *path;
    int flags;
    const char *hits;     /* JSON array */
    const char *in_array; /* one char per hit */
} path_row_t;

static const path_row_t rows[] = {
    {"{\"a\": 1}", "a", EXP, "[1]", "0"},
    {"{\"a\": {\"b\": 2}}", "a.b", EXP, "[2]", "0"},
    {"{\"a\": [1, 2]}", "a", EXP, "[1, 2, [1, 2]]", "110"},
    {"{\"a\": [1, 2]}", "a", 0, "[[1, 2]]", "0"},
    {"{}", "a", EXP, "[{\"$undefined\": true}]", "0"},
    {"{\"a\": 5}", "a.b", EXP, "[{\"$undefined\": true}]", "0"},
    {"{\"a\": [{\"b\": 1}, {\"b\": 2}, {\"c\": 3}]}", "a.b", EXP,
     "[1, 2, {\"$undefined\": true}]", "111"},
    {"{\"a\": [1, 2]}", "a.b", EXP, "[]", ""},
    {"{\"a\": []}", "a", EXP, "[[]]", "0"},
    {"{\"a\": [{\"b\": [1, 2]}]}", "a.b", EXP, "[1, 2, [1, 2]]", "111"},
    {"{\"a\": [{\"b\": [1, 2]}]}", "a.b", 0, "[[1, 2]]", "1"},
    {"{\"a\": [10, 20]}", "a.1", EXP, "[20]", "0"},
    {"{\"a\": [10, 20]}", "a.2", EXP, "[]", ""},
    {"{\"a\": [{\"0\": \"x\"}, {\"0\": \"y\"}]}", "a.0", EXP,
     "[{\"0\": \"x\"}, \"x\", \"y\"]", "011"},
    {"{\"a\": [[1, 2]]}", "a.0", EXP, "[1, 2, [1, 2]]", "110"},
    {"{\"a\": [[{\"b\": 1}]]}", "a.b", EXP, "[]", ""},
    {"{\"a\": {\"0\": \"z\"}}", "a.0", EXP, "[\"z\"]", "0"},
    {"{\"a\": [{\"b\": {\"c\": 1}}, {\"b\": {\"c\": 2}}]}", "a.b.c", EXP, "[1, 2]", "11"},
    {"{\"a\": [{\"b\": [{\"c\": 1}, {\"c\": 2}]}]}", "a.b.c", EXP, "[1, 2]", "11"},
    {"{\"a\": [1, [2]]}", "a", EXP, "[1, [2], [1, [2]]]", "110"},
    /* the index reaches {c: 1}; the same document is also searched for a field "0" */
    {"{\"a\": {\"b\": [{\"c\": 1}]}}", "a.b.0.c", EXP, "[1, {\"$undefined\": true}]", "01"},
    {"{\"a\": [{\"b\": 5}]}", "a.0.b", EXP, "[5, {\"$undefined\": true}]", "01"},
    {"{\"a\": {\"b\": null}}", "a.b", EXP, "[null]", "0"},
    {"{\"a.b\": 1}", "a.b", EXP, "[{\"$undefined\": true}]", "0"},
    /* more components than the walk keeps on its stack */
    {"{\"a\": {\"b\": {\"c\": {\"d\": {\"e\": {\"f\": {\"g\": {\"h\": {\"i\": {\"j\": {\"k\": {\"l\": "
     "{\"m\": {\"n\": {\"o\": {\"p\": {\"q\": 9}}}}}}}}}}}}}}}}}", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q", EXP,
     "[9]", "0"},
};

typedef struct {
    bson_t arr;
    uint32_t n;
    char flags[64];
    int stop_after;
} collect_t;

static bool collect(void *ctx, const bq_path_hit_t *hit)
{
    collect_t *c = ctx;
    char key[16];
    snprintf(key, sizeof key, "%u", c->n);
    if (hit->value) {
        bson_append_value(&c->arr, key, -1, hit->value);
    } else {
        bson_append_undefined(&c->arr, key, -1);
    }
    if (c->n < sizeof c->flags - 1)
        c->flags[c->n] = hit->in_array ? '1' : '0';
    c->n++;
    c->flags[c->n < sizeof c->flags ? c->n : sizeof c->flags - 1] = '\0';
    return c->stop_after && (int)c->n >= c->stop_after;
}

Test(bq_path, walk_table)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const path_row_t *r = &rows[i];
        bson_t *doc = tu_doc(r->doc);
        collect_t c = {.n = 0};
        bson_init(&c.arr);
        c.flags[0] = '\0';
        bool stopped = bq_path_walk(doc, r->path, r->flags, collect, &c);
        cr_expect(!stopped, "row %zu: not stopped", i);
        bson_t *hw;
        bson_value_t want = tu_val(r->hits, &hw);
        bson_value_t got = {.value_type = BSON_TYPE_ARRAY};
        got.value.v_doc.data = (uint8_t *)bson_get_data(&c.arr);
        got.value.v_doc.data_len = c.arr.len;
        char *gs = tu_str(&got);
        cr_expect(bq_value_compare(&got, &want) == 0 &&
                      got.value.v_doc.data_len == want.value.v_doc.data_len,
                  "row %zu: %s over %s gave %s, want %s", i, r->path, r->doc, gs, r->hits);
        cr_expect_str_eq(c.flags, r->in_array, "row %zu: %s over %s: in_array %s, want %s",
                         i, r->path, r->doc, c.flags, r->in_array);
        bson_free(gs);
        bson_destroy(hw);
        bson_destroy(&c.arr);
        bson_destroy(doc);
    }
}

Test(bq_path, callback_can_stop_the_walk)
{
    bson_t *doc = tu_doc("{\"a\": [{\"b\": 1}, {\"b\": 2}, {\"b\": 3}]}");
    collect_t c = {.n = 0, .stop_after = 2};
    bson_init(&c.arr);
    cr_expect(bq_path_walk(doc, "a.b", EXP, collect, &c));
    cr_expect_eq(c.n, 2);
    bson_destroy(&c.arr);
    bson_destroy(doc);
}

Test(bq_path, walk_from_value)
{
    bson_t *h;
    bson_value_t v = tu_val("[{\"x\": 7}]", &h);
    collect_t c = {.n = 0};
    bson_init(&c.arr);
    bq_path_walk_value(&v, "0.x", EXP, collect, &c);
    cr_expect_eq(c.n, 1);
    bson_destroy(&c.arr);
    bson_value_t s = {.value_type = BSON_TYPE_INT32};
    collect_t d = {.n = 0};
    bson_init(&d.arr);
    bq_path_walk_value(&s, "x", EXP, collect, &d);
    cr_expect_eq(d.n, 1);
    cr_expect_str_eq(d.flags, "0");
    bson_destroy(&d.arr);
    bson_destroy(h);
}

Test(bq_path, get_without_fanout)
{
    bson_t *doc = tu_doc("{\"a\": [{\"b\": 1}, {\"b\": 2}], \"c\": {\"d\": \"x\"}}");
    bson_value_t v;
    cr_expect(bq_path_get(doc, "a.1.b", &v));
    cr_expect_eq(v.value_type, BSON_TYPE_INT32);
    cr_expect_eq(v.value.v_int32, 2);
    cr_expect(bq_path_get(doc, "c.d", &v));
    cr_expect_eq(v.value_type, BSON_TYPE_UTF8);
    cr_expect(!bq_path_get(doc, "a.b", &v));
    cr_expect(!bq_path_get(doc, "c.d.e", &v));
    cr_expect(!bq_path_get(doc, "z", &v));
    bson_destroy(doc);
}
