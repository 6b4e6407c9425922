/*
 * test_bq_update.c: bsonq/bq_update.c and bq_update_arr.c, MongoDB update documents.
 * Each row: an input document, an update (operators written #op, since the JSON reader
 * takes some $ keys as Extended JSON), optional arrayFilters, and either the exact output
 * document (types and field order count) with whether it changed, or the error code
 * (and a piece of mongod's message) the compile or the apply must fail with.
 * Expected results come from MongoDB's documentation examples and mongod's behaviour.
 */
#include "bq_test_util.h"
#include "bq_update.h"

typedef struct {
    const char *doc, *update, *filters;
    const char *want;   /* expected document, NULL when an error is expected */
    int changed;        /* 1 changed, 0 unchanged */
    int code;           /* expected error code */
    const char *msg;    /* substring of the expected message, or NULL */
} upd_row_t;

#define OK(d, u, w) {d, u, NULL, w, 1, 0, NULL}
#define SAME(d, u) {d, u, NULL, d, 0, 0, NULL}
#define ERR(d, u, c, m) {d, u, NULL, NULL, 0, c, m}
#define OKF(d, u, f, w) {d, u, f, w, 1, 0, NULL}
#define ERRF(d, u, f, c, m) {d, u, f, NULL, 0, c, m}

static char *json_of(const bson_t *b)
{
    return bson_as_canonical_extended_json(b, NULL);
}

static void run_rows(const char *name, const upd_row_t *rows, size_t n,
                     const bq_update_opts_t *opts)
{
    for (size_t i = 0; i < n; i++) {
        const upd_row_t *r = &rows[i];
        bson_t *doc = tu_docq(r->doc);
        bson_t *upd = tu_docq(r->update);
        bson_t *af = r->filters ? tu_docq(r->filters) : NULL;
        bq_error_t err;
        bq_error_clear(&err);
        bq_update_t *u = bq_update_compile(upd, af, &err);
        bson_t out;
        bool changed = false;
        bool ok = false;
        if (u) {
            ok = bq_update_apply_ex(u, doc, opts, &out, &changed, &err);
        } else {
            bson_init(&out);
        }
        if (r->want) {
            bson_t *want = tu_docq(r->want);
            char *gs = json_of(&out), *ws = json_of(want);
            cr_expect(ok, "%s row %zu: %s on %s failed: %d %s", name, i, r->update, r->doc,
                      err.code, err.message);
            cr_expect(ok && out.len == want->len &&
                          memcmp(bson_get_data(&out), bson_get_data(want), want->len) == 0,
                      "%s row %zu: %s on %s gave %s, want %s", name, i, r->update, r->doc, gs,
                      ws);
            cr_expect(!ok || changed == (r->changed != 0), "%s row %zu: changed %d, want %d",
                      name, i, changed, r->changed);
            bson_free(gs);
            bson_free(ws);
            bson_destroy(want);
        } else {
            cr_expect(!ok, "%s row %zu: %s on %s succeeded, want error %d", name, i,
                      r->update, r->doc, r->code);
            cr_expect_eq(err.code, r->code, "%s row %zu: %s: code %d (%s), want %d", name, i,
                         r->update, err.code, err.message, r->code);
            if (r->msg)
                cr_expect(strstr(err.message, r->msg) != NULL,
                          "%s row %zu: message '%s' lacks '%s'", name, i, err.message, r->msg);
            cr_expect_eq(out.len, 5u, "%s row %zu: out not empty on error", name, i);
        }
        bson_destroy(&out);
        bq_update_destroy(u);
        bson_destroy(doc);
        bson_destroy(upd);
        if (af)
            bson_destroy(af);
    }
}

#define RUN(name, rows) run_rows(name, rows, sizeof rows / sizeof rows[0], NULL)

static const upd_row_t set_rows[] = {
    OK("{'_id': 1, 'a': 1}", "{'#set': {'a': 2}}", "{'_id': 1, 'a': 2}"),
    SAME("{'_id': 1, 'a': 1}", "{'#set': {'a': 1}}"),
    /* same value, other type: a change, as mongod compares bytes */
    OK("{'_id': 1, 'a': 1}", "{'#set': {'a': 1.0}}", "{'_id': 1, 'a': 1.0}"),
    OK("{'_id': 1, 'a': 1, 'b': 2}", "{'#set': {'a': 3}}", "{'_id': 1, 'a': 3, 'b': 2}"),
    /* new fields are appended in lexicographic order (MongoDB 5.0+) */
    OK("{'_id': 1}", "{'#set': {'b': 1, 'a': 2}}", "{'_id': 1, 'a': 2, 'b': 1}"),
    OK("{'_id': 1, 'z': 0}", "{'#set': {'y': 1, 'x.b': 2, 'x.a': 3}}",
       "{'_id': 1, 'z': 0, 'x': {'a': 3, 'b': 2}, 'y': 1}"),
    /* numeric field names in numeric order */
    OK("{'_id': 1, 'a': {}}", "{'#set': {'a.10': 1, 'a.2': 2}}",
       "{'_id': 1, 'a': {'2': 2, '10': 1}}"),
    OK("{'_id': 1}", "{'#set': {'a.b.c': 1}}", "{'_id': 1, 'a': {'b': {'c': 1}}}"),
    OK("{'_id': 1, 'a': {'x': 1}}", "{'#set': {'a.b': 2}}",
       "{'_id': 1, 'a': {'x': 1, 'b': 2}}"),
    OK("{'_id': 1, 'a': {'b': 1}}", "{'#set': {'a': {'c': 2}}}", "{'_id': 1, 'a': {'c': 2}}"),
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#set': {'a.1': 9}}", "{'_id': 1, 'a': [1, 9, 3]}"),
    OK("{'_id': 1, 'a': [1]}", "{'#set': {'a.3': 9}}", "{'_id': 1, 'a': [1, null, null, 9]}"),
    OK("{'_id': 1, 'a': [{'b': 1}, {'b': 2}]}", "{'#set': {'a.1.b': 5}}",
       "{'_id': 1, 'a': [{'b': 1}, {'b': 5}]}"),
    OK("{'_id': 1, 'a': [[1, 2], [3]]}", "{'#set': {'a.0.1': 7}}",
       "{'_id': 1, 'a': [[1, 7], [3]]}"),
    OK("{'_id': 1, 'a': null}", "{'#set': {'a': [1, {'b': null}]}}",
       "{'_id': 1, 'a': [1, {'b': null}]}"),
    OK("{'_id': 1, 'a': {'b': {'c': 1, 'd': 2}}}", "{'#set': {'a.b.c': {'$numberLong': '1'}}}",
       "{'_id': 1, 'a': {'b': {'c': {'$numberLong': '1'}, 'd': 2}}}"),
    SAME("{'_id': 1, 'a': {'b': [1, 2]}}", "{'#set': {'a.b': [1, 2]}}"),
    SAME("{'_id': 1}", "{'#set': {'_id': 1}}"),
    ERR("{'_id': 1, 'a': 5}", "{'#set': {'a.b': 1}}", 28,
        "Cannot create field 'b' in element {a: 5}"),
    ERR("{'_id': 1, 'a': [{'b': 0}]}", "{'#set': {'a.b': 1}}", 28, "Cannot create field 'b'"),
    ERR("{'_id': 1}", "{'#set': {'_id': 2}}", 66,
        "Performing an update on the path '_id' would modify the immutable field '_id'"),
    ERR("{'_id': {'x': 1}}", "{'#set': {'_id.x': 2}}", 66, "immutable field '_id'"),
    ERR("{'_id': 1}", "{'#set': {'a.$.b': 1}}", 2,
        "The positional operator did not find the match needed from the query."),
};

static const upd_row_t unset_rows[] = {
    OK("{'_id': 1, 'a': 1, 'b': 2}", "{'#unset': {'a': ''}}", "{'_id': 1, 'b': 2}"),
    OK("{'_id': 1, 'a': {'b': 1, 'c': 2}}", "{'#unset': {'a.b': 1}}",
       "{'_id': 1, 'a': {'c': 2}}"),
    SAME("{'_id': 1}", "{'#unset': {'a': 1}}"),
    SAME("{'_id': 1}", "{'#unset': {'a.b': 1}}"),
    SAME("{'_id': 1, 'a': 5}", "{'#unset': {'a.b': 1}}"),
    /* array elements become null, the array keeps its length */
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#unset': {'a.1': 1}}",
       "{'_id': 1, 'a': [1, null, 3]}"),
    SAME("{'_id': 1, 'a': [1]}", "{'#unset': {'a.5': 1}}"),
    OK("{'_id': 1, 'a': 1, 'b': 2, 'c': 3}", "{'#unset': {'a': 1, 'c': 1}}",
       "{'_id': 1, 'b': 2}"),
    ERR("{'_id': 1}", "{'#unset': {'_id': 1}}", 66, "immutable field '_id'"),
};

static const upd_row_t inc_rows[] = {
    OK("{'_id': 1, 'a': 1}", "{'#inc': {'a': 2}}", "{'_id': 1, 'a': 3}"),
    OK("{'_id': 1}", "{'#inc': {'a': 2}}", "{'_id': 1, 'a': 2}"),
    OK("{'_id': 1}", "{'#inc': {'a.b': -1}}", "{'_id': 1, 'a': {'b': -1}}"),
    OK("{'_id': 1, 'a': 2147483647}", "{'#inc': {'a': 1}}",
       "{'_id': 1, 'a': {'$numberLong': '2147483648'}}"),
    OK("{'_id': 1, 'a': -2147483648}", "{'#inc': {'a': -1}}",
       "{'_id': 1, 'a': {'$numberLong': '-2147483649'}}"),
    OK("{'_id': 1, 'a': 1}", "{'#inc': {'a': 0.5}}", "{'_id': 1, 'a': 1.5}"),
    /* int64 overflow has no wider integer type: mongod refuses */
    ERR("{'_id': 1, 'a': {'$numberLong': '9223372036854775807'}}", "{'#inc': {'a': 1}}", 2,
        "Failed to apply $inc operations to current value ((NumberLong)9223372036854775807) "
        "for document {_id: 1}"),
    OK("{'_id': 1, 'a': {'$numberLong': '9223372036854775807'}}", "{'#inc': {'a': 1.0}}",
       "{'_id': 1, 'a': 9.2233720368547758e+18}"),
    OK("{'_id': 1, 'a': {'$numberLong': '5'}}", "{'#inc': {'a': 1}}",
       "{'_id': 1, 'a': {'$numberLong': '6'}}"),
    OK("{'_id': 1, 'a': {'$numberDecimal': '1.5'}}", "{'#inc': {'a': 1}}",
       "{'_id': 1, 'a': {'$numberDecimal': '2.5'}}"),
    OK("{'_id': 1, 'a': [1, 5]}", "{'#inc': {'a.1': 5}}", "{'_id': 1, 'a': [1, 10]}"),
    SAME("{'_id': 1, 'a': 1}", "{'#inc': {'a': 0}}"),
    /* docs example: $inc on an embedded field and a top-level one */
    OK("{'_id': 1, 'sku': 'abc123', 'quantity': 10, 'metrics': {'orders': 2, "
       "'ratings': 3.5}}",
       "{'#inc': {'quantity': -2, 'metrics.orders': 1}}",
       "{'_id': 1, 'sku': 'abc123', 'quantity': 8, 'metrics': {'orders': 3, "
       "'ratings': 3.5}}"),
    ERR("{'_id': 1, 'a': 'x'}", "{'#inc': {'a': 1}}", 14,
        "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'a' of "
        "non-numeric type string"),
    ERR("{'_id': 1, 'a': null}", "{'#inc': {'a': 1}}", 14, "non-numeric type null"),
    ERR("{'_id': 1, 'a': 1}", "{'#inc': {'a': 'x'}}", 14,
        "Cannot increment with non-numeric argument: {a: \"x\"}"),
    ERR("{'_id': 1, 'a': [1]}", "{'#inc': {'a.b': 1}}", 28, "Cannot create field 'b'"),
};

static const upd_row_t mul_minmax_rows[] = {
    OK("{'_id': 1, 'a': 2}", "{'#mul': {'a': 3}}", "{'_id': 1, 'a': 6}"),
    OK("{'_id': 1}", "{'#mul': {'a': 3}}", "{'_id': 1, 'a': 0}"),
    OK("{'_id': 1}", "{'#mul': {'a': 2.5}}", "{'_id': 1, 'a': 0.0}"),
    OK("{'_id': 1}", "{'#mul': {'a': {'$numberLong': '7'}}}",
       "{'_id': 1, 'a': {'$numberLong': '0'}}"),
    OK("{'_id': 1, 'a': 65536}", "{'#mul': {'a': 65536}}",
       "{'_id': 1, 'a': {'$numberLong': '4294967296'}}"),
    OK("{'_id': 1, 'price': {'$numberDecimal': '10.99'}, 'qty': 25}",
       "{'#mul': {'price': {'$numberDecimal': '1.25'}, 'qty': 2}}",
       "{'_id': 1, 'price': {'$numberDecimal': '13.7375'}, 'qty': 50}"),
    ERR("{'_id': 1, 'a': 'x'}", "{'#mul': {'a': 2}}", 14, "Cannot apply $mul"),
    ERR("{'_id': 1}", "{'#mul': {'a': true}}", 14, "Cannot multiply with non-numeric"),
    OK("{'_id': 1, 'a': 5}", "{'#min': {'a': 3}}", "{'_id': 1, 'a': 3}"),
    SAME("{'_id': 1, 'a': 5}", "{'#min': {'a': 7}}"),
    SAME("{'_id': 1, 'a': 5}", "{'#min': {'a': 5.0}}"),
    OK("{'_id': 1, 'a': 5}", "{'#max': {'a': 7}}", "{'_id': 1, 'a': 7}"),
    SAME("{'_id': 1, 'a': 5}", "{'#max': {'a': 2}}"),
    OK("{'_id': 1}", "{'#max': {'a': 2}}", "{'_id': 1, 'a': 2}"),
    /* across types: numbers sort before strings, null before numbers */
    OK("{'_id': 1, 'a': 'x'}", "{'#min': {'a': 1}}", "{'_id': 1, 'a': 1}"),
    OK("{'_id': 1, 'a': null}", "{'#max': {'a': 1}}", "{'_id': 1, 'a': 1}"),
    SAME("{'_id': 1, 'a': null}", "{'#min': {'a': 1}}"),
    OK("{'_id': 1, 'd': {'$date': '2020-01-01T00:00:00Z'}}",
       "{'#max': {'d': {'$date': '2021-01-01T00:00:00Z'}}}",
       "{'_id': 1, 'd': {'$date': '2021-01-01T00:00:00Z'}}"),
};

static const upd_row_t rename_rows[] = {
    OK("{'_id': 1, 'a': 1, 'b': 2}", "{'#rename': {'a': 'c'}}", "{'_id': 1, 'b': 2, 'c': 1}"),
    /* an existing destination is overwritten in place */
    OK("{'_id': 1, 'a': 1, 'b': 2}", "{'#rename': {'a': 'b'}}", "{'_id': 1, 'b': 1}"),
    OK("{'_id': 1, 'b': 2, 'a': 1}", "{'#rename': {'a': 'b'}}", "{'_id': 1, 'b': 1}"),
    SAME("{'_id': 1, 'b': 2}", "{'#rename': {'a': 'c'}}"),
    OK("{'_id': 1, 'a': {'b': 1}}", "{'#rename': {'a.b': 'c.d'}}",
       "{'_id': 1, 'a': {}, 'c': {'d': 1}}"),
    OK("{'_id': 1, 'name': {'first': 'george', 'last': 'washington'}}",
       "{'#rename': {'name.first': 'name.fname'}}",
       "{'_id': 1, 'name': {'last': 'washington', 'fname': 'george'}}"),
    ERR("{'_id': 1, 'a': 1}", "{'#rename': {'a': 'a'}}", 2,
        "The source and target field for $rename must differ"),
    ERR("{'_id': 1, 'a': 1}", "{'#rename': {'a': 1}}", 2,
        "The 'to' field for $rename must be a string"),
    ERR("{'_id': 1, 'a': 1}", "{'#rename': {'a': 'a.b'}}", 2, "must not be on the same path"),
    ERR("{'_id': 1, 'a': 1}", "{'#rename': {'a': 'b'}, '#set': {'b': 1}}", 40,
        "Updating the path 'b' would create a conflict at 'b'"),
    ERR("{'_id': 1, 'a': 1, 'b': 5}", "{'#rename': {'a': 'b.c'}}", 28,
        "Cannot create field 'c'"),
};

static const upd_row_t parse_rows[] = {
    ERR("{'_id': 1}", "{'#set': {'a': 1}, '#inc': {'a': 1}}", 40,
        "Updating the path 'a' would create a conflict at 'a'"),
    ERR("{'_id': 1}", "{'#set': {'a': 1, 'a.b': 1}}", 40,
        "Updating the path 'a.b' would create a conflict at 'a'"),
    ERR("{'_id': 1}", "{'#set': {'a.b.c': 1}, '#unset': {'a.b': 1}}", 40,
        "Updating the path 'a.b' would create a conflict at 'a.b'"),
    ERR("{'_id': 1}", "{'#set': {}}", 9,
        "'$set' is empty. You must specify a field like so: {$set: {<field>: ...}}"),
    ERR("{'_id': 1}", "{'#foo': {'a': 1}}", 9,
        "Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update "
        "specified as an array"),
    ERR("{'_id': 1}", "{'#set': {'a': 1}, 'b': 2}", 9, "Unknown modifier: b"),
    ERR("{'_id': 1}", "{'#set': 1}", 9,
        "Modifiers operate on fields but we found type int instead. For example: {$mod: "
        "{<field>: ...}} not {$set: 1}"),
    ERR("{'_id': 1}", "{'#set': 'string'}", 9, "not {$set: \"string\"}"),
    ERR("{'_id': 1}", "{'#set': 42.12345}", 9, "type double instead"),
    ERR("{'_id': 1}", "{'#set': 42.12345}", 9, "not {$set: 42.12345}"),
    ERR("{'_id': 1}", "{'#currentDate': []}", 9, "type array instead. For example: {$mod: "
        "{<field>: ...}} not {$currentDate: []}"),
    ERR("{'_id': 1}", "{'#set': null}", 9, "not {$set: null}"),
    ERR("{'_id': 1}", "{'#set': {'': 1}}", 56, "An empty update path is not valid."),
    ERR("{'_id': 1}", "{'#set': {'a..b': 1}}", 56, "contains an empty field name"),
    ERR("{'_id': 1}", "{'#set': {'$.a': 1}}", 2, "Cannot have positional"),
    ERR("{'_id': 1}", "{'#set': {'a.$.b.$': 1}}", 2, "Too many positional"),
    ERR("{'_id': 1}", "{'#currentDate': {'a': 1}}", 2, "is not valid type for $currentDate"),
    ERR("{'_id': 1}", "{'#currentDate': {'a': {'#type': 'x'}}}", 2, "'date' or 'timestamp'"),
    /* fields in other operators that do not overlap are fine */
    OK("{'_id': 1, 'a': {'b': 1}}", "{'#set': {'a.c': 1}, '#unset': {'a.b': 1}}",
       "{'_id': 1, 'a': {'c': 1}}"),
};

static const upd_row_t push_rows[] = {
    OK("{'_id': 1, 'a': [1]}", "{'#push': {'a': 2}}", "{'_id': 1, 'a': [1, 2]}"),
    OK("{'_id': 1}", "{'#push': {'a': 2}}", "{'_id': 1, 'a': [2]}"),
    OK("{'_id': 1, 'a': [1]}", "{'#push': {'a': [2, 3]}}", "{'_id': 1, 'a': [1, [2, 3]]}"),
    OK("{'_id': 1, 'a': [1]}", "{'#push': {'a': {'x': 1}}}", "{'_id': 1, 'a': [1, {'x': 1}]}"),
    OK("{'_id': 1, 'a': [1]}", "{'#push': {'a': {'#each': [2, 3]}}}",
       "{'_id': 1, 'a': [1, 2, 3]}"),
    SAME("{'_id': 1, 'a': [1]}", "{'#push': {'a': {'#each': []}}}"),
    OK("{'_id': 1}", "{'#push': {'a': {'#each': []}}}", "{'_id': 1, 'a': []}"),
    OK("{'_id': 1, 'a': [1]}", "{'#push': {'a': {'#each': [2, 3], '#position': 0}}}",
       "{'_id': 1, 'a': [2, 3, 1]}"),
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#push': {'a': {'#each': [9], '#position': -1}}}",
       "{'_id': 1, 'a': [1, 2, 9, 3]}"),
    OK("{'_id': 1, 'a': [1, 2]}", "{'#push': {'a': {'#each': [9], '#position': 10}}}",
       "{'_id': 1, 'a': [1, 2, 9]}"),
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#push': {'a': {'#each': [4], '#slice': -2}}}",
       "{'_id': 1, 'a': [3, 4]}"),
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#push': {'a': {'#each': [4], '#slice': 2}}}",
       "{'_id': 1, 'a': [1, 2]}"),
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#push': {'a': {'#each': [], '#slice': 0}}}",
       "{'_id': 1, 'a': []}"),
    OK("{'_id': 1, 'a': [3, 1]}", "{'#push': {'a': {'#each': [2], '#sort': 1}}}",
       "{'_id': 1, 'a': [1, 2, 3]}"),
    OK("{'_id': 1, 'a': [3, 'x', 1]}", "{'#push': {'a': {'#each': [null], '#sort': -1}}}",
       "{'_id': 1, 'a': ['x', 3, 1, null]}"),
    /* docs example: $each, $sort on a field, $slice; the sort is stable */
    OK("{'_id': 5, 'quizzes': [{'wk': 1, 'score': 10}, {'wk': 2, 'score': 8}, "
       "{'wk': 3, 'score': 5}, {'wk': 4, 'score': 6}]}",
       "{'#push': {'quizzes': {'#each': [{'wk': 5, 'score': 8}, {'wk': 6, 'score': 7}, "
       "{'wk': 7, 'score': 6}], '#sort': {'score': -1}, '#slice': 3}}}",
       "{'_id': 5, 'quizzes': [{'wk': 1, 'score': 10}, {'wk': 2, 'score': 8}, "
       "{'wk': 5, 'score': 8}]}"),
    ERR("{'_id': 1, 'a': 1}", "{'#push': {'a': 2}}", 2,
        "The field 'a' must be an array but is of type int in document {_id: 1}"),
    ERR("{'_id': 1}", "{'#push': {'a': {'#each': [1], '#foo': 1}}}", 2,
        "Unrecognized clause in $push: $foo"),
    ERR("{'_id': 1}", "{'#push': {'a': {'#each': 1}}}", 2,
        "The argument to $each in $push must be an array but it was of type: int"),
    ERR("{'_id': 1}", "{'#push': {'a': {'#each': [1], '#slice': 'x'}}}", 2,
        "The value for $slice must be an integer value but was given type: string"),
    ERR("{'_id': 1}", "{'#push': {'a': {'#each': [1], '#sort': 2}}}", 2, "$sort"),
    ERR("{'_id': 1}", "{'#push': {'a': {'#each': [1], '#position': 1.5}}}", 2, "$position"),
};

static const upd_row_t set_ops_rows[] = {
    SAME("{'_id': 1, 'a': [1, 2]}", "{'#addToSet': {'a': 2}}"),
    SAME("{'_id': 1, 'a': [1, 2]}", "{'#addToSet': {'a': 2.0}}"),
    OK("{'_id': 1, 'a': [1, 2]}", "{'#addToSet': {'a': 3}}", "{'_id': 1, 'a': [1, 2, 3]}"),
    OK("{'_id': 1, 'a': [1, 2]}", "{'#addToSet': {'a': {'#each': [2, 3, 3, 4]}}}",
       "{'_id': 1, 'a': [1, 2, 3, 4]}"),
    OK("{'_id': 1}", "{'#addToSet': {'a': 5}}", "{'_id': 1, 'a': [5]}"),
    OK("{'_id': 1, 'a': [[1]]}", "{'#addToSet': {'a': [1, 2]}}",
       "{'_id': 1, 'a': [[1], [1, 2]]}"),
    SAME("{'_id': 1, 'a': [{'x': 1, 'y': 2}]}", "{'#addToSet': {'a': {'x': 1, 'y': 2}}}"),
    /* field order matters for documents */
    OK("{'_id': 1, 'a': [{'x': 1, 'y': 2}]}", "{'#addToSet': {'a': {'y': 2, 'x': 1}}}",
       "{'_id': 1, 'a': [{'x': 1, 'y': 2}, {'y': 2, 'x': 1}]}"),
    ERR("{'_id': 1, 'a': 1}", "{'#addToSet': {'a': 2}}", 2,
        "Cannot apply $addToSet to non-array field. Field named 'a' has non-array type int"),
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#pop': {'a': 1}}", "{'_id': 1, 'a': [1, 2]}"),
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#pop': {'a': -1}}", "{'_id': 1, 'a': [2, 3]}"),
    SAME("{'_id': 1, 'a': []}", "{'#pop': {'a': 1}}"),
    SAME("{'_id': 1}", "{'#pop': {'a': 1}}"),
    ERR("{'_id': 1, 'a': [1]}", "{'#pop': {'a': 2}}", 9, "$pop expects 1 or -1, found: 2"),
    ERR("{'_id': 1, 'a': 5}", "{'#pop': {'a': 1}}", 14,
        "Path 'a' contains an element of non-array type 'int'"),
    OK("{'_id': 1, 'a': [1, 2, 3, 2]}", "{'#pull': {'a': 2}}", "{'_id': 1, 'a': [1, 3]}"),
    OK("{'_id': 1, 'a': [1, 2.0, 3]}", "{'#pull': {'a': 2}}", "{'_id': 1, 'a': [1, 3]}"),
    OK("{'_id': 1, 'votes': [3, 5, 6, 7, 7, 8]}", "{'#pull': {'votes': {'#gte': 6}}}",
       "{'_id': 1, 'votes': [3, 5]}"),
    OK("{'_id': 1, 'fruits': ['apples', 'pears', 'oranges', 'grapes']}",
       "{'#pull': {'fruits': {'#in': ['apples', 'oranges']}}}",
       "{'_id': 1, 'fruits': ['pears', 'grapes']}"),
    OK("{'_id': 1, 'results': [{'item': 'A', 'score': 5}, {'item': 'B', 'score': 8}]}",
       "{'#pull': {'results': {'score': 8, 'item': 'B'}}}",
       "{'_id': 1, 'results': [{'item': 'A', 'score': 5}]}"),
    OK("{'_id': 1, 'a': [{'x': 1}, 5, {'x': 2}]}", "{'#pull': {'a': {'x': {'#gt': 1}}}}",
       "{'_id': 1, 'a': [{'x': 1}, 5]}"),
    SAME("{'_id': 1}", "{'#pull': {'a': 1}}"),
    ERR("{'_id': 1, 'a': 1}", "{'#pull': {'a': 1}}", 2,
        "Cannot apply $pull to a non-array value"),
    OK("{'_id': 1, 'scores': [0, 2, 5, 5, 1, 0]}", "{'#pullAll': {'scores': [0, 5]}}",
       "{'_id': 1, 'scores': [2, 1]}"),
    ERR("{'_id': 1, 'a': [1]}", "{'#pullAll': {'a': 1}}", 2,
        "$pullAll requires an array argument but was given a int"),
    OK("{'_id': 1, 'a': 13}", "{'#bit': {'a': {'and': 10}}}", "{'_id': 1, 'a': 8}"),
    SAME("{'_id': 1, 'a': 13}", "{'#bit': {'a': {'or': 5}}}"),
    OK("{'_id': 1, 'a': 1}", "{'#bit': {'a': {'xor': 5}}}", "{'_id': 1, 'a': 4}"),
    OK("{'_id': 1, 'a': {'$numberLong': '1'}}", "{'#bit': {'a': {'or': 2}}}",
       "{'_id': 1, 'a': {'$numberLong': '3'}}"),
    OK("{'_id': 1, 'a': 1}", "{'#bit': {'a': {'or': {'$numberLong': '2'}}}}",
       "{'_id': 1, 'a': {'$numberLong': '3'}}"),
    OK("{'_id': 1}", "{'#bit': {'a': {'or': 6}}}", "{'_id': 1, 'a': 6}"),
    ERR("{'_id': 1}", "{'#bit': {'a': 5}}", 2, "The $bit modifier is not compatible with a int"),
    ERR("{'_id': 1}", "{'#bit': {'a': {'nand': 5}}}", 2, "only supports 'and', 'or', and 'xor'"),
    ERR("{'_id': 1}", "{'#bit': {'a': {'and': 1.5}}}", 2, "must be an Integer(32/64 bit)"),
    ERR("{'_id': 1, 'a': 'x'}", "{'#bit': {'a': {'and': 1}}}", 2,
        "Cannot apply $bit to a value of non-integral type"),
};

static const upd_row_t array_filter_rows[] = {
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#inc': {'a.$[]': 10}}",
       "{'_id': 1, 'a': [11, 12, 13]}"),
    OK("{'_id': 1, 'a': [{'x': 1}, {'x': 2}]}", "{'#set': {'a.$[].y': 0}}",
       "{'_id': 1, 'a': [{'x': 1, 'y': 0}, {'x': 2, 'y': 0}]}"),
    SAME("{'_id': 1, 'a': []}", "{'#set': {'a.$[]': 1}}"),
    OKF("{'_id': 1, 'grades': [95, 102, 90, 150]}", "{'#set': {'grades.$[element]': 100}}",
        "[{'element': {'#gte': 100}}]", "{'_id': 1, 'grades': [95, 100, 90, 100]}"),
    OKF("{'_id': 1, 'a': [{'x': 1}, {'x': 5}]}", "{'#set': {'a.$[e].y': 1}}",
        "[{'e.x': {'#gt': 2}}]", "{'_id': 1, 'a': [{'x': 1}, {'x': 5, 'y': 1}]}"),
    OKF("{'_id': 1, 'a': [[1, 5], [7]]}", "{'#inc': {'a.$[].$[n]': 1}}",
        "[{'n': {'#gt': 4}}]", "{'_id': 1, 'a': [[1, 6], [8]]}"),
    /* two array updates reaching one element: merged when neither ends there */
    ERR("{'_id': 1, 'a': [1, 2]}", "{'#set': {'a.$[]': 1, 'a.0': 2}}", 40,
        "Update created a conflict at 'a.0'"),
    OK("{'_id': 1, 'a': [{'x': 1}, {'x': 2}]}", "{'#set': {'a.$[].y': 1, 'a.0.z': 2}}",
       "{'_id': 1, 'a': [{'x': 1, 'y': 1, 'z': 2}, {'x': 2, 'y': 1}]}"),
    ERRF("{'_id': 1, 'a': [{'x': 1}, {'x': 2}]}", "{'#set': {'a.$[].y': 1, 'a.$[i].y': 2}}",
         "[{'i.x': 2}]", 40, "Update created a conflict at 'a.1.y'"),
    OKF("{'_id': 1, 'a': [{'x': 1}, {'x': 2}]}", "{'#set': {'a.$[].y': 1, 'a.$[i].z': 2}}",
        "[{'i.x': 2}]", "{'_id': 1, 'a': [{'x': 1, 'y': 1}, {'x': 2, 'y': 1, 'z': 2}]}"),
    ERR("{'_id': 1, 'a': 5}", "{'#set': {'a.$[]': 1}}", 2,
        "Cannot apply array updates to non-array element"),
    ERR("{'_id': 1}", "{'#set': {'a.$[]': 1}}", 2,
        "must exist in the document in order to apply array updates"),
    ERRF("{'_id': 1, 'a': [1]}", "{'#set': {'a.$[i]': 1}}", "[{'j': 1}]", 2,
         "No array filter found for identifier 'i' in path 'a.$[i]'"),
    ERRF("{'_id': 1, 'a': [1]}", "{'#set': {'a.$[i]': 1}}", "[{'i': 1}, {'j': 1}]", 9,
         "The array filter for identifier 'j' was not used in the update"),
    ERRF("{'_id': 1, 'a': [1]}", "{'#set': {'a.$[i]': 1}}", "[{'i': 1}, {'i': 2}]", 9,
         "Found multiple array filters with the same top-level field name i"),
    ERRF("{'_id': 1, 'a': [1]}", "{'#set': {'a.$[i]': 1}}", "[{'i': 1, 'j': 2}]", 9,
         "Expected a single top-level field name"),
};

static const upd_row_t replace_rows[] = {
    OK("{'_id': 1, 'a': 1}", "{'b': 2}", "{'_id': 1, 'b': 2}"),
    OK("{'_id': 1, 'a': 1}", "{'_id': 1, 'b': 2}", "{'_id': 1, 'b': 2}"),
    OK("{'_id': 1, 'a': 1}", "{}", "{'_id': 1}"),
    SAME("{'_id': 1, 'a': 1}", "{'_id': 1, 'a': 1}"),
    SAME("{'_id': 1, 'a': 1}", "{'a': 1}"),
    OK("{'a': 1}", "{'b': 2}", "{'b': 2}"),
    ERR("{'_id': 1, 'a': 1}", "{'_id': 2, 'b': 2}", 66,
        "After applying the update, the (immutable) field '_id' was found to have been "
        "altered to _id: 2"),
    ERR("{'_id': 1}", "{'a': 1, '#x': 2}", 52, "The dollar ($) prefixed field '$x'"),
};

Test(bq_update, set) { RUN("set", set_rows); }
Test(bq_update, unset) { RUN("unset", unset_rows); }
Test(bq_update, inc) { RUN("inc", inc_rows); }
Test(bq_update, mul_min_max) { RUN("mul", mul_minmax_rows); }
Test(bq_update, rename) { RUN("rename", rename_rows); }
Test(bq_update, parse_errors_and_conflicts) { RUN("parse", parse_rows); }
Test(bq_update, push) { RUN("push", push_rows); }
Test(bq_update, addtoset_pop_pull_bit) { RUN("setops", set_ops_rows); }
Test(bq_update, array_filters) { RUN("af", array_filter_rows); }
Test(bq_update, replacement) { RUN("replace", replace_rows); }

Test(bq_update, replacement_flag)
{
    bson_t *a = tu_docq("{'a': 1}"), *b = tu_docq("{'#set': {'a': 1}}");
    bq_update_t *ua = bq_update_compile(a, NULL, NULL), *ub = bq_update_compile(b, NULL, NULL);
    cr_assert(ua && ub);
    cr_expect(bq_update_is_replacement(ua));
    cr_expect(!bq_update_is_replacement(ub));
    cr_expect(!bq_update_uses_positional(ub));
    bq_update_destroy(ua);
    bq_update_destroy(ub);
    bson_destroy(a);
    bson_destroy(b);
}

static const upd_row_t positional_rows[] = {
    OK("{'_id': 1, 'a': [1, 2, 3]}", "{'#set': {'a.$': 9}}", "{'_id': 1, 'a': [1, 9, 3]}"),
    OK("{'_id': 1, 'a': [{'b': 1}, {'b': 2}]}", "{'#inc': {'a.$.b': 5}}",
       "{'_id': 1, 'a': [{'b': 1}, {'b': 7}]}"),
    ERR("{'_id': 1, 'a': 5}", "{'#set': {'a.$': 9}}", 28,
        "Cannot create field '1' in element {a: 5}"),
};

Test(bq_update, positional_uses_the_matched_index)
{
    /* zero-initialised options know no index, even though positional_index is 0 */
    static const upd_row_t none[] = {
        ERR("{'_id': 1, 'a': [1, 2, 3]}", "{'#set': {'a.$': 9}}", 2,
            "The positional operator did not find the match needed from the query."),
    };
    bq_update_opts_t zero = {0};
    run_rows("positional-none", none, 1, &zero);
    bq_update_opts_t o = {.has_positional = true, .positional_index = 1};
    run_rows("positional", positional_rows, sizeof positional_rows / sizeof positional_rows[0],
             &o);
    bson_t *u = tu_docq("{'#set': {'a.$': 1}}");
    bq_update_t *c = bq_update_compile(u, NULL, NULL);
    cr_assert(c);
    cr_expect(bq_update_uses_positional(c));
    bq_update_destroy(c);
    bson_destroy(u);
}

static const upd_row_t upsert_rows[] = {
    OK("{'_id': 1}", "{'#set': {'a': 1}, '#setOnInsert': {'b': 2}}",
       "{'_id': 1, 'a': 1, 'b': 2}"),
    /* _id goes first in an inserted document */
    OK("{}", "{'#set': {'a': 1, '_id': 5}}", "{'_id': 5, 'a': 1}"),
    ERR("{'_id': 1}", "{'#set': {'_id': 2}}", 66, "immutable field '_id'"),
    ERR("{'_id': 1}", "{'#set': {'a': 1}, '#setOnInsert': {'a': 2}}", 40,
        "would create a conflict at 'a'"),
};

Test(bq_update, set_on_insert_only_on_upsert_insert)
{
    bq_update_opts_t o = {.is_upsert_insert = true};
    run_rows("upsert", upsert_rows, sizeof upsert_rows / sizeof upsert_rows[0], &o);
    static const upd_row_t plain[] = {
        OK("{'_id': 1}", "{'#set': {'a': 1}, '#setOnInsert': {'b': 2}}", "{'_id': 1, 'a': 1}"),
        SAME("{'_id': 1}", "{'#setOnInsert': {'b': 2}}"),
    };
    RUN("plain", plain);
}

Test(bq_update, current_date_uses_the_given_time)
{
    bq_update_opts_t o = {.now_ms = 1700000000123};
    static const upd_row_t rows[] = {
        OK("{'_id': 1, 'a': 1}", "{'#currentDate': {'a': true, 'b': {'#type': 'date'}}}",
           "{'_id': 1, 'a': {'$date': {'$numberLong': '1700000000123'}}, "
           "'b': {'$date': {'$numberLong': '1700000000123'}}}"),
        OK("{'_id': 1}", "{'#currentDate': {'t': {'#type': 'timestamp'}}}",
           "{'_id': 1, 't': {'$timestamp': {'t': 1700000000, 'i': 1}}}"),
    };
    run_rows("currentDate", rows, sizeof rows / sizeof rows[0], &o);
}

Test(bq_update, compiled_update_is_reusable_and_null_err_ok)
{
    bson_t *u = tu_docq("{'#inc': {'n': 1}}");
    bq_update_t *c = bq_update_compile(u, NULL, NULL);
    cr_assert(c);
    bson_t *doc = tu_docq("{'_id': 1, 'n': 1}");
    for (int i = 0; i < 3; i++) {
        bson_t out;
        bool ch;
        cr_assert(bq_update_apply(c, doc, false, &out, &ch, NULL));
        cr_expect(ch);
        bson_destroy(doc);
        doc = bson_copy(&out);
        bson_destroy(&out);
    }
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, doc, "n"));
    cr_expect_eq(bson_iter_int32(&it), 4);
    bson_t *bad = tu_docq("{'_id': 1, 'n': 'x'}");
    bson_t out;
    cr_expect(!bq_update_apply(c, bad, false, &out, NULL, NULL));
    bson_destroy(&out);
    bson_destroy(bad);
    bson_destroy(doc);
    bq_update_destroy(c);
    bson_destroy(u);
    bq_update_destroy(NULL);
}

Test(bq_update, pipeline_not_implemented)
{
    bson_t *p = tu_docq("{'0': {'#set': {'a': 1}}}");
    bq_error_t err;
    bq_error_clear(&err);
    cr_expect_null(bq_update_compile_pipeline(p, NULL, &err));
    cr_expect_eq(err.code, BQ_ERR_NotImplemented);
    bson_destroy(p);
}

/* ---------------------------------------------------------------- upsert seed */

typedef struct {
    const char *filter, *want;
    int code;
} seed_row_t;

static const seed_row_t seed_rows[] = {
    {"{'a': 1, 'b': {'#eq': 2}}", "{'a': 1, 'b': 2}", 0},
    {"{'x.y': 1, '_id': 5}", "{'_id': 5, 'x': {'y': 1}}", 0},
    {"{'x.y': 1, 'x.z': 2}", "{'x': {'y': 1, 'z': 2}}", 0},
    {"{'#and': [{'a': 1}, {'b': {'#gt': 1}}]}", "{'a': 1}", 0},
    {"{'a': {'#gt': 1}}", "{}", 0},
    {"{'a': {'#eq': 1, '#lt': 5}}", "{'a': 1}", 0},
    {"{'a': {'b': 1}}", "{'a': {'b': 1}}", 0},
    {"{'a': [1, 2]}", "{'a': [1, 2]}", 0},
    {"{'a': null}", "{'a': null}", 0},
    {"{'#or': [{'a': 1}, {'a': 2}]}", "{}", 0},
    {"{'a': {'$regex': 'x'}}", "{}", 0},
    {"{}", "{}", 0},
    {"{'a': 1, 'a.b': 2}", NULL, 54},
    {"{'a': 1, '#and': [{'a': 2}]}", NULL, 54},
};

Test(bq_update, upsert_seed)
{
    for (size_t i = 0; i < sizeof seed_rows / sizeof seed_rows[0]; i++) {
        const seed_row_t *r = &seed_rows[i];
        bson_t *f = tu_docq(r->filter);
        bson_t out;
        bq_error_t err;
        bq_error_clear(&err);
        bool ok = bq_upsert_seed(f, &out, &err);
        if (r->want) {
            bson_t *w = tu_docq(r->want);
            char *gs = json_of(&out), *ws = json_of(w);
            cr_expect(ok && bson_equal(&out, w), "seed row %zu: %s gave %s, want %s", i,
                      r->filter, gs, ws);
            bson_free(gs);
            bson_free(ws);
            bson_destroy(w);
        } else {
            cr_expect(!ok, "seed row %zu: %s succeeded", i, r->filter);
            cr_expect_eq(err.code, r->code, "seed row %zu: code %d (%s)", i, err.code,
                         err.message);
        }
        bson_destroy(&out);
        bson_destroy(f);
    }
}

/* ---------------------------------------------------------------- positional index */

typedef struct {
    const char *filter, *doc, *update;
    int64_t index;      /* -1: none */
    const char *want;   /* result of applying with that index, or NULL */
} pos_row_t;

static const pos_row_t pos_rows[] = {
    /* docs: "Update Values in an Array" */
    {"{'_id': 1, 'grades': 80}", "{'_id': 1, 'grades': [85, 80, 80]}",
     "{'#set': {'grades.$': 82}}", 1, "{'_id': 1, 'grades': [85, 82, 80]}"},
    /* docs: "Update Documents in an Array" */
    {"{'_id': 4, 'grades.grade': 85}",
     "{'_id': 4, 'grades': [{'grade': 80, 'mean': 75}, {'grade': 85, 'mean': 90}, "
     "{'grade': 85, 'mean': 85}]}",
     "{'#set': {'grades.$.std': 6}}", 1,
     "{'_id': 4, 'grades': [{'grade': 80, 'mean': 75}, {'grade': 85, 'mean': 90, 'std': 6}, "
     "{'grade': 85, 'mean': 85}]}"},
    /* docs: "Update Embedded Documents Using Multiple Field Matches" */
    {"{'_id': 5, 'grades': {'#elemMatch': {'grade': {'#lte': 90}, 'mean': {'#gt': 80}}}}",
     "{'_id': 5, 'grades': [{'grade': 80, 'mean': 75, 'std': 8}, {'grade': 85, 'mean': 90, "
     "'std': 5}, {'grade': 90, 'mean': 85, 'std': 3}]}",
     "{'#set': {'grades.$.std': 6}}", 1,
     "{'_id': 5, 'grades': [{'grade': 80, 'mean': 75, 'std': 8}, {'grade': 85, 'mean': 90, "
     "'std': 6}, {'grade': 90, 'mean': 85, 'std': 3}]}"},
    {"{'#and': [{'x.a': {'#gt': 1}}]}", "{'_id': 1, 'x': {'a': [0, 1, 2, 3]}}",
     "{'#inc': {'x.a.$': 10}}", 2, "{'_id': 1, 'x': {'a': [0, 1, 12, 3]}}"},
    {"{'_id': 1}", "{'_id': 1, 'a': [1]}", "{'#set': {'a.$': 2}}", -1, NULL},
    {"{'a': 9}", "{'_id': 1, 'a': [1]}", "{'#set': {'a.$': 2}}", -1, NULL},
    {"{'a': 1}", "{'_id': 1, 'a': 1}", "{'#set': {'a.$': 2}}", -1, NULL},
    {"{'a': 1}", "{'_id': 1, 'a': [1]}", "{'#set': {'a.0': 2}}", -1, NULL},
};

Test(bq_update, positional_index_from_the_filter)
{
    for (size_t i = 0; i < sizeof pos_rows / sizeof pos_rows[0]; i++) {
        const pos_row_t *r = &pos_rows[i];
        bson_t *f = tu_docq(r->filter), *d = tu_docq(r->doc), *u = tu_docq(r->update);
        bq_update_t *c = bq_update_compile(u, NULL, NULL);
        cr_assert_not_null(c, "pos row %zu", i);
        int64_t idx = 7;
        bool found = bq_update_positional_index(c, f, d, &idx);
        cr_expect_eq(found, r->index >= 0, "pos row %zu: found %d", i, found);
        cr_expect_eq(idx, r->index, "pos row %zu: index %lld, want %lld", i, (long long)idx,
                     (long long)r->index);
        bq_update_opts_t o = {.has_positional = found, .positional_index = idx};
        bson_t out;
        bq_error_t err;
        bool ok = bq_update_apply_ex(c, d, &o, &out, NULL, &err);
        if (r->want) {
            bson_t *w = tu_docq(r->want);
            cr_expect(ok && bson_equal(&out, w), "pos row %zu: apply failed or differs", i);
            bson_destroy(w);
        } else if (bq_update_uses_positional(c)) {
            cr_expect(!ok, "pos row %zu: apply without a match succeeded", i);
        }
        bson_destroy(&out);
        bq_update_destroy(c);
        bson_destroy(f);
        bson_destroy(d);
        bson_destroy(u);
    }
}
