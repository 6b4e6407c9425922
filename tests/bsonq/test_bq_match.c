/*
 * test_bq_match.c: bsonq/bq_match*.c, query filters. One table of (filter, document,
 * expected) rows per operator family, mostly MongoDB documentation examples plus the array,
 * null, missing-field, mixed-number and NaN edge cases; and one table of invalid filters
 * with the code and message mongod gives. JSON uses single quotes and writes $type, $regex
 * and $options keys as #type, #regex, #options (see tu_docq).
 */
#include "bq_test_util.h"

typedef struct {
    const char *filter, *doc;
    bool want;
} match_row_t;

#define RX(p, o) "{'$regularExpression': {'pattern': '" p "', 'options': '" o "'}}"

static void run_rows(const char *family, const match_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bson_t *f = tu_docq(rows[i].filter), *d = tu_docq(rows[i].doc);
        bq_error_t err;
        bq_error_clear(&err);
        bq_match_t *m = bq_match_compile(f, &err);
        cr_expect_not_null(m, "%s row %zu: %s failed to compile: %s", family, i,
                           rows[i].filter, err.message);
        if (m) {
            bool got = bq_match_eval(m, d);
            cr_expect_eq(got, rows[i].want, "%s row %zu: filter %s on %s gave %d, want %d",
                         family, i, rows[i].filter, rows[i].doc, got, rows[i].want);
            bq_match_destroy(m);
        }
        bson_destroy(f);
        bson_destroy(d);
    }
}

#define RUN(family, rows) run_rows(family, rows, sizeof rows / sizeof rows[0])

static const match_row_t eq_rows[] = {
    {"{'a': 1}", "{'a': 1}", true},
    {"{'a': 1}", "{'a': 1.0}", true},
    {"{'a': 1}", "{'a': {'$numberLong': '1'}}", true},
    {"{'a': 1}", "{'a': {'$numberDecimal': '1.00'}}", true},
    {"{'a': 1}", "{'a': '1'}", false},
    {"{'a': 1}", "{'b': 1}", false},
    {"{'a': 1}", "{'a': [1, 2]}", true},
    {"{'a': 1}", "{'a': [[1]]}", false},
    {"{'a': [1, 2]}", "{'a': [1, 2]}", true},
    {"{'a': [1, 2]}", "{'a': [2, 1]}", false},
    {"{'a': [1, 2]}", "{'a': [[1, 2], 3]}", true},
    {"{'a': []}", "{'a': []}", true},
    {"{'a': []}", "{'a': [[]]}", true},
    {"{'a.b': 1}", "{'a': [{'b': 1}]}", true},
    {"{'a.b': 1}", "{'a': [{'b': [0, 1]}]}", true},
    {"{'a.b': 1}", "{'a': [[{'b': 1}]]}", false},
    {"{'a.b.c': 1}", "{'a': [{'b': [{'c': [1]}]}]}", true},
    {"{'a.1': 20}", "{'a': [10, 20]}", true},
    {"{'a.0': 20}", "{'a': [10, 20]}", false},
    {"{'a.0.b': 1}", "{'a': [{'b': 1}]}", true},
    {"{'a.0': 'x'}", "{'a': [{'0': 'x'}]}", true},
    {"{'a': {'b': 1}}", "{'a': {'b': 1}}", true},
    {"{'a': {'b': 1}}", "{'a': {'b': 1, 'c': 2}}", false},
    {"{'a': {'b': 1, 'c': 2}}", "{'a': {'c': 2, 'b': 1}}", false},
    {"{'a': {'b': 1}}", "{'a': [{'b': 1}]}", true},
    {"{'a': {'$ref': 'c', '$id': 1}}", "{'a': {'$ref': 'c', '$id': 1}}", true},
    {"{'a': {'$eq': 5}}", "{'a': [4, 5]}", true},
    {"{'a': 'x', 'b': 2}", "{'a': 'x', 'b': 3}", false},
    {"{'a': {'$numberDouble': 'NaN'}}", "{'a': {'$numberDouble': 'NaN'}}", true},
    {"{'a': {'$numberDouble': 'NaN'}}", "{'a': {'$numberDecimal': 'NaN'}}", true},
    {"{'a': {'$numberDecimal': '0.1'}}", "{'a': 0.1}", false},
    {"{'a': {'$numberLong': '9007199254740993'}}", "{'a': 9007199254740992.0}", false},
    {"{'a': -0.0}", "{'a': 0}", true},
};

static const match_row_t null_rows[] = {
    {"{'a': null}", "{}", true},
    {"{'a': null}", "{'a': null}", true},
    {"{'a': null}", "{'a': [1, null]}", true},
    {"{'a': null}", "{'a': 1}", false},
    {"{'a': null}", "{'a': []}", false},
    {"{'a': null}", "{'a': {'$undefined': true}}", true},
    {"{'a.b': null}", "{'a': [{'b': 1}, {'c': 1}]}", true},
    {"{'a.b': null}", "{'a': [{'b': 1}]}", false},
    {"{'a.b': null}", "{'a': 5}", true},
    {"{'a.b': null}", "{'a': [1, 2]}", false},
    {"{'a': {'$ne': null}}", "{}", false},
    {"{'a': {'$ne': null}}", "{'a': 1}", true},
    {"{'a': {'$ne': null}}", "{'a': [null, 1]}", false},
    {"{'a': {'$gte': null}}", "{}", true},
    {"{'a': {'$lte': null}}", "{'a': null}", true},
    {"{'a': {'$gt': null}}", "{}", false},
    {"{'a': {'$lt': null}}", "{'a': 1}", false},
    {"{'a': {'$in': [null]}}", "{}", true},
    {"{'a': {'$in': [null, 5]}}", "{'a': 3}", false},
    {"{'a': {'$nin': [null]}}", "{}", false},
};

static const match_row_t cmp_rows[] = {
    {"{'a': {'$gt': 1}}", "{'a': 2}", true},
    {"{'a': {'$gt': 1}}", "{'a': 1}", false},
    {"{'a': {'$gte': 1}}", "{'a': 1.0}", true},
    {"{'a': {'$gt': 1}}", "{'a': '2'}", false},
    {"{'a': {'$gt': 1}}", "{'a': [0, 5]}", true},
    {"{'a': {'$gt': 1}}", "{'a': [0, 1]}", false},
    {"{'a': {'$gt': 1}}", "{}", false},
    {"{'a': {'$gt': 1}}", "{'a': null}", false},
    {"{'a': {'$gt': 1, '$lt': 3}}", "{'a': [0, 5]}", true},
    {"{'a': {'$gt': 1, '$lt': 3}}", "{'a': 5}", false},
    {"{'a': {'$lt': 2.5}}", "{'a': {'$numberLong': '2'}}", true},
    {"{'a': {'$lt': {'$numberDecimal': '2.5'}}}", "{'a': 2}", true},
    {"{'a': {'$gt': {'$numberLong': '9223372036854775807'}}}", "{'a': 9.3e18}", true},
    {"{'a': {'$gt': {'$numberDouble': 'NaN'}}}", "{'a': 5}", false},
    {"{'a': {'$lt': 5}}", "{'a': {'$numberDouble': 'NaN'}}", false},
    {"{'a': {'$gte': {'$numberDouble': 'NaN'}}}", "{'a': {'$numberDouble': 'NaN'}}", true},
    {"{'a': {'$lte': {'$numberDouble': 'NaN'}}}", "{'a': {'$numberDecimal': 'NaN'}}", true},
    {"{'a': {'$gt': {'$numberDouble': '-Infinity'}}}", "{'a': {'$numberDouble': 'NaN'}}", false},
    {"{'a': {'$lt': 'b'}}", "{'a': 'abc'}", true},
    {"{'a': {'$lt': 'b'}}", "{'a': 1}", false},
    {"{'a': {'$gt': {'$minKey': 1}}}", "{'a': 'x'}", true},
    {"{'a': {'$lt': {'$maxKey': 1}}}", "{'a': {}}", true},
    {"{'a': {'$gt': {'$maxKey': 1}}}", "{'a': 1}", false},
    {"{'a': {'$gt': {'$date': '2020-01-01T00:00:00Z'}}}", "{'a': {'$date': '2021-01-01T00:00:00Z'}}", true},
    {"{'a': {'$gt': {'$date': '2020-01-01T00:00:00Z'}}}", "{'a': {'$timestamp': {'t': 1700000000, 'i': 1}}}", false},
    {"{'a': {'$gt': [1]}}", "{'a': [2]}", true},
    {"{'a': {'$gt': [1]}}", "{'a': [1]}", false},
    {"{'a': {'$gt': {'b': 1}}}", "{'a': {'b': 2}}", true},
    {"{'a': {'$ne': 1}}", "{'a': [1, 2]}", false},
    {"{'a': {'$ne': 1}}", "{'a': [2, 3]}", true},
    {"{'a': {'$ne': 1}}", "{}", true},
    {"{'a': {'$ne': [1, 2]}}", "{'a': [1, 2]}", false},
    {"{'a': {'$in': [1, 'x']}}", "{'a': 'x'}", true},
    {"{'a': {'$in': [1, 'x']}}", "{'a': [5, 1]}", true},
    {"{'a': {'$in': [1, 'x']}}", "{'a': 2}", false},
    {"{'a': {'$in': [" RX("^ab", "") "]}}", "{'a': 'abc'}", true},
    {"{'a': {'$in': [" RX("^ab", "") "]}}", "{'a': 'xab'}", false},
    {"{'a': {'$in': [1, " RX("^ab", "") "]}}", "{'a': ['x', 'abz']}", true},
    {"{'a': {'$in': []}}", "{'a': 1}", false},
    {"{'a': {'$in': [[1, 2]]}}", "{'a': [1, 2]}", true},
    {"{'a': {'$nin': []}}", "{'a': 1}", true},
    {"{'a': {'$nin': [1, 2]}}", "{'a': 3}", true},
    {"{'a': {'$nin': [1, 2]}}", "{'a': [3, 2]}", false},
    {"{'a': {'$nin': [1, 2]}}", "{}", true},
    {"{'a': {'$nin': [" RX("^x", "") "]}}", "{'a': 'xy'}", false},
};

static const match_row_t regex_rows[] = {
    {"{'a': " RX("^A", "i") "}", "{'a': 'abc'}", true},
    {"{'a': {'#regex': '^A'}}", "{'a': 'abc'}", false},
    {"{'a': {'#regex': '^A', '#options': 'i'}}", "{'a': 'abc'}", true},
    {"{'a': {'#options': 'i', '#regex': '^A'}}", "{'a': 'abc'}", true},
    {"{'a': {'#regex': " RX("^A", "i") "}}", "{'a': 'abc'}", true},
    {"{'a': {'#regex': 'b.c', '#options': 's'}}", "{'a': 'b\\nc'}", true},
    {"{'a': {'#regex': 'b.c'}}", "{'a': 'b\\nc'}", false},
    {"{'a': {'#regex': '^c', '#options': 'm'}}", "{'a': 'ab\\ncd'}", true},
    {"{'a': {'#regex': '^c'}}", "{'a': 'ab\\ncd'}", false},
    {"{'a': {'#regex': 'a b # comment', '#options': 'x'}}", "{'a': 'ab'}", true},
    {"{'a': {'#regex': '^.$'}}", "{'a': '\\u00e9'}", true},
    {"{'a': {'#regex': '^\\u00c9$', '#options': 'i'}}", "{'a': '\\u00e9'}", true},
    {"{'a': " RX("x", "") "}", "{'a': {'$symbol': 'xx'}}", true},
    {"{'a': " RX("x", "") "}", "{'a': 5}", false},
    {"{'a': " RX("x", "") "}", "{'a': " RX("x", "") "}", true},
    {"{'a': " RX("x", "") "}", "{'a': " RX("x", "i") "}", false},
    {"{'a': " RX("x", "") "}", "{'a': ['q', 'xyz']}", true},
    {"{'a': " RX("x", "") "}", "{}", false},
    {"{'a': {'$eq': " RX("x", "") "}}", "{'a': 'x'}", false},
    {"{'a': {'$eq': " RX("x", "") "}}", "{'a': " RX("x", "") "}", true},
    {"{'a': {'$not': " RX("^a", "") "}}", "{'a': 'b'}", true},
    {"{'a': {'$not': " RX("^a", "") "}}", "{'a': 'abc'}", false},
    {"{'a': {'$not': " RX("^a", "") "}}", "{}", true},
    {"{'a': {'$not': {'#regex': '^a'}}}", "{'a': ['b', 'ab']}", false},
};

static const match_row_t logic_rows[] = {
    {"{'$or': [{'a': 1}, {'b': 2}]}", "{'b': 2}", true},
    {"{'$or': [{'a': 1}, {'b': 2}]}", "{'c': 1}", false},
    {"{'$and': [{'a': {'$gt': 1}}, {'a': {'$lt': 3}}]}", "{'a': 2}", true},
    {"{'$and': [{'a': {'$gt': 1}}, {'a': {'$lt': 3}}]}", "{'a': 3}", false},
    {"{'$nor': [{'a': 1}, {'b': 2}]}", "{'c': 1}", true},
    {"{'$nor': [{'a': 1}, {'b': 2}]}", "{'a': 1}", false},
    {"{'$nor': [{'a': 1}]}", "{'a': [0, 1]}", false},
    {"{'$or': [{'$and': [{'a': 1}, {'b': 1}]}, {'c': 1}]}", "{'a': 1, 'b': 1}", true},
    {"{'$comment': 'why', 'a': 1}", "{'a': 1}", true},
    {"{'$alwaysFalse': 1}", "{'a': 1}", false},
    {"{'$alwaysTrue': 1}", "{}", true},
    {"{}", "{'x': 1}", true},
    {"{'a': {'$not': {'$gt': 5}}}", "{'a': 3}", true},
    {"{'a': {'$not': {'$gt': 5}}}", "{'a': 7}", false},
    {"{'a': {'$not': {'$gt': 5}}}", "{}", true},
    {"{'a': {'$not': {'$gt': 5}}}", "{'a': [3, 7]}", false},
    {"{'a': {'$not': {'$gt': 1, '$lt': 3}}}", "{'a': 2}", false},
    {"{'a': {'$not': {'$gt': 1, '$lt': 3}}}", "{'a': 5}", true},
    {"{'a': {'$not': {'$not': {'$eq': 1}}}}", "{'a': 1}", true},
};

static const match_row_t elem_rows[] = {
    {"{'a': {'$exists': true}}", "{'a': null}", true},
    {"{'a': {'$exists': true}}", "{}", false},
    {"{'a': {'$exists': true}}", "{'a': []}", true},
    {"{'a.b': {'$exists': true}}", "{'a': [{'b': 1}]}", true},
    {"{'a.b': {'$exists': true}}", "{'a': [1]}", false},
    {"{'a.b': {'$exists': true}}", "{'a': [{'c': 1}]}", false},
    {"{'a': {'$exists': false}}", "{}", true},
    {"{'a': {'$exists': false}}", "{'a': 1}", false},
    {"{'a': {'$exists': 0}}", "{}", true},
    {"{'a': {'$exists': 1}}", "{}", false},
    {"{'a.b': {'$exists': false}}", "{'a': [{'c': 1}, {'b': 1}]}", false},
    {"{'a.b': {'$exists': false}}", "{'a': [{'c': 1}]}", true},
    {"{'a.1': {'$exists': true}}", "{'a': [1]}", false},
    {"{'a.1': {'$exists': true}}", "{'a': [1, 2]}", true},
    {"{'a': {'#type': 'string'}}", "{'a': 'x'}", true},
    {"{'a': {'#type': 'string'}}", "{'a': ['x', 1]}", true},
    {"{'a': {'#type': 'string'}}", "{'a': 1}", false},
    {"{'a': {'#type': 'string'}}", "{}", false},
    {"{'a': {'#type': 'number'}}", "{'a': {'$numberDecimal': '1'}}", true},
    {"{'a': {'#type': 'number'}}", "{'a': {'$numberLong': '1'}}", true},
    {"{'a': {'#type': 'number'}}", "{'a': '1'}", false},
    {"{'a': {'#type': 'array'}}", "{'a': []}", true},
    {"{'a': {'#type': 'array'}}", "{'a': [[1]]}", true},
    {"{'a': {'#type': 'array'}}", "{'a': 1}", false},
    {"{'a': {'#type': 'object'}}", "{'a': [{'b': 1}]}", true},
    {"{'a': {'#type': 2}}", "{'a': 'x'}", true},
    {"{'a': {'#type': 2.0}}", "{'a': 'x'}", true},
    {"{'a': {'#type': [16, 'bool']}}", "{'a': true}", true},
    {"{'a': {'#type': [16, 'bool']}}", "{'a': 5}", true},
    {"{'a': {'#type': [16, 'bool']}}", "{'a': 5.5}", false},
    {"{'a': {'#type': 'null'}}", "{'a': null}", true},
    {"{'a': {'#type': 'null'}}", "{}", false},
    {"{'a': {'#type': 'long'}}", "{'a': {'$numberLong': '5'}}", true},
    {"{'a': {'#type': 'decimal'}}", "{'a': 5}", false},
    {"{'a': {'#type': -1}}", "{'a': {'$minKey': 1}}", true},
    {"{'a': {'#type': 'maxKey'}}", "{'a': {'$maxKey': 1}}", true},
    {"{'a': {'#type': 'maxKey'}}", "{'a': {'$minKey': 1}}", false},
};

static const match_row_t array_rows[] = {
    {"{'a': {'$size': 2}}", "{'a': [1, 2]}", true},
    {"{'a': {'$size': 2}}", "{'a': [1]}", false},
    {"{'a': {'$size': 2}}", "{'a': [[1, 2]]}", false},
    {"{'a': {'$size': 1}}", "{'a': [[1, 2]]}", true},
    {"{'a': {'$size': 2}}", "{'a': 'ab'}", false},
    {"{'a': {'$size': 0}}", "{'a': []}", true},
    {"{'a': {'$size': 0}}", "{}", false},
    {"{'a': {'$size': 2.0}}", "{'a': [1, 2]}", true},
    {"{'a.b': {'$size': 2}}", "{'a': [{'b': [1, 2]}]}", true},
    {"{'a': {'$all': [1, 2]}}", "{'a': [2, 1, 3]}", true},
    {"{'a': {'$all': [1, 2]}}", "{'a': [1]}", false},
    {"{'a': {'$all': [1]}}", "{'a': 1}", true},
    {"{'a': {'$all': [[1, 2]]}}", "{'a': [[1, 2], 3]}", true},
    {"{'a': {'$all': [[1, 2]]}}", "{'a': [1, 2]}", true},
    {"{'a': {'$all': []}}", "{'a': [1]}", false},
    {"{'a': {'$all': [" RX("^x", "") "]}}", "{'a': ['xy']}", true},
    {"{'a': {'$all': [{'$elemMatch': {'b': 1}}, {'$elemMatch': {'c': 2}}]}}",
     "{'a': [{'b': 1}, {'c': 2}]}", true},
    {"{'a': {'$all': [{'$elemMatch': {'b': 1}}, {'$elemMatch': {'c': 2}}]}}",
     "{'a': [{'b': 1}]}", false},
    {"{'results': {'$elemMatch': {'$gte': 80, '$lt': 85}}}", "{'results': [82, 85, 88]}", true},
    {"{'results': {'$elemMatch': {'$gte': 80, '$lt': 85}}}", "{'results': [75, 88, 89]}", false},
    {"{'a': {'$elemMatch': {'$gt': 1, '$lt': 3}}}", "{'a': [0, 5]}", false},
    {"{'results': {'$elemMatch': {'product': 'xyz', 'score': {'$gte': 8}}}}",
     "{'results': [{'product': 'abc', 'score': 10}, {'product': 'xyz', 'score': 5}]}", false},
    {"{'results': {'$elemMatch': {'product': 'xyz', 'score': {'$gte': 8}}}}",
     "{'results': [{'product': 'abc', 'score': 8}, {'product': 'xyz', 'score': 9}]}", true},
    {"{'a': {'$elemMatch': {'$eq': 1}}}", "{'a': 1}", false},
    {"{'a': {'$elemMatch': {'$eq': 1}}}", "{'a': [[1]]}", false},
    {"{'a': {'$elemMatch': {'b': {'$exists': false}}}}", "{'a': [1]}", false},
    {"{'a': {'$elemMatch': {'b': {'$exists': false}}}}", "{'a': [{'c': 1}]}", true},
    {"{'a': {'$elemMatch': {'$or': [{'b': 1}, {'c': 1}]}}}", "{'a': [{'c': 1}]}", true},
    {"{'a.b': {'$elemMatch': {'c': 1}}}", "{'a': [{'b': [{'c': 1}]}]}", true},
    {"{'a': {'$elemMatch': {'$not': {'$gt': 5}}}}", "{'a': [7, 3]}", true},
    {"{'a': {'$elemMatch': {'$not': {'$gt': 5}}}}", "{'a': [7]}", false},
    {"{'a': {'$elemMatch': {'$in': [" RX("^x", "") "]}}}", "{'a': ['xq']}", true},
    {"{'a': {'$elemMatch': {'#type': 'array'}}}", "{'a': [1, [2]]}", true},
    {"{'a': {'$elemMatch': {'$size': 1}}}", "{'a': [[1]]}", true},
};

static const match_row_t eval_rows[] = {
    {"{'a': {'$mod': [4, 0]}}", "{'a': 8}", true},
    {"{'a': {'$mod': [4, 0]}}", "{'a': 9}", false},
    {"{'a': {'$mod': [4, 0]}}", "{'a': 8.9}", true},
    {"{'a': {'$mod': [4, 0]}}", "{'a': -8}", true},
    {"{'a': {'$mod': [4, 0]}}", "{'a': '8'}", false},
    {"{'a': {'$mod': [4, 0]}}", "{'a': [1, 12]}", true},
    {"{'a': {'$mod': [4, 0]}}", "{'a': {'$numberDecimal': '16.5'}}", true},
    {"{'a': {'$mod': [4, 0]}}", "{'a': {'$numberDouble': 'NaN'}}", false},
    {"{'a': {'$mod': [4, 0]}}", "{}", false},
    {"{'a': {'$mod': [3, -1]}}", "{'a': -4}", true},
    {"{'a': {'$mod': [4.5, 1]}}", "{'a': 5}", true},
    {"{'a': {'$bitsAllSet': [1, 5]}}", "{'a': 54}", true},
    {"{'a': {'$bitsAllSet': 35}}", "{'a': 54}", false},
    {"{'a': {'$bitsAllSet': 50}}", "{'a': 54}", true},
    {"{'a': {'$bitsAnySet': [0, 1]}}", "{'a': 54}", true},
    {"{'a': {'$bitsAnySet': [0, 3]}}", "{'a': 54}", false},
    {"{'a': {'$bitsAllClear': [0, 3]}}", "{'a': 54}", true},
    {"{'a': {'$bitsAllClear': [0, 1]}}", "{'a': 54}", false},
    {"{'a': {'$bitsAnyClear': [1, 2]}}", "{'a': 54}", false},
    {"{'a': {'$bitsAnyClear': [0, 2]}}", "{'a': 54}", true},
    {"{'a': {'$bitsAllSet': [63]}}", "{'a': -1}", true},
    {"{'a': {'$bitsAllSet': [100]}}", "{'a': {'$numberLong': '-5'}}", true},
    {"{'a': {'$bitsAllSet': [100]}}", "{'a': 5}", false},
    {"{'a': {'$bitsAllSet': {'$binary': {'base64': 'MA==', 'subType': '00'}}}}", "{'a': 48}", true},
    {"{'a': {'$bitsAllSet': [4, 5]}}", "{'a': {'$binary': {'base64': 'MA==', 'subType': '00'}}}", true},
    {"{'a': {'$bitsAllSet': [12]}}", "{'a': {'$binary': {'base64': 'MA==', 'subType': '00'}}}", false},
    {"{'a': {'$bitsAllSet': [1]}}", "{'a': 2.5}", false},
    {"{'a': {'$bitsAllSet': [1]}}", "{'a': 2.0}", true},
    {"{'a': {'$bitsAllSet': [1]}}", "{'a': '2'}", false},
    {"{'a': {'$bitsAllSet': []}}", "{'a': 0}", true},
    {"{'a': {'$bitsAnySet': []}}", "{'a': 7}", false},
};

Test(bq_match, equality) { RUN("eq", eq_rows); }
Test(bq_match, null_and_missing) { RUN("null", null_rows); }
Test(bq_match, comparison) { RUN("cmp", cmp_rows); }
Test(bq_match, regex) { RUN("regex", regex_rows); }
Test(bq_match, logic) { RUN("logic", logic_rows); }
Test(bq_match, exists_and_type) { RUN("elem", elem_rows); }
Test(bq_match, array_operators) { RUN("array", array_rows); }
Test(bq_match, mod_and_bits) { RUN("eval", eval_rows); }

typedef struct {
    const char *filter;
    int32_t code;
    const char *msg; /* substring of the message */
} bad_row_t;

static const bad_row_t bad_rows[] = {
    {"{'$foo': 1}", 2, "unknown top level operator: $foo"},
    {"{'a': {'$foo': 1}}", 2, "unknown operator: $foo"},
    {"{'a': {'$gt': 1, 'b': 2}}", 2, "unknown operator: b"},
    {"{'a': {'$in': 1}}", 2, "$in needs an array"},
    {"{'a': {'$nin': {}}}", 2, "$nin needs an array"},
    {"{'a': {'$in': [{'$gt': 1}]}}", 2, "cannot nest $ under $in"},
    {"{'a': {'#regex': 'x', '#options': 'z'}}", 51108, "invalid flag in regex options: z"},
    {"{'a': {'#options': 'i'}}", 2, "$options needs a $regex"},
    {"{'a': {'#regex': 5}}", 2, "$regex has to be a string"},
    {"{'a': {'#regex': 'x', '#options': 5}}", 2, "$options has to be a string"},
    {"{'a': {'#regex': '('}}", 51091, "Regular expression is invalid"},
    {"{'a': {'#regex': " RX("x", "i") ", '#options': 'm'}}", 51075, "options set in both"},
    {"{'a': {'$not': 5}}", 2, "$not needs a regex or a document"},
    {"{'a': {'$not': {}}}", 2, "$not cannot be empty"},
    {"{'a': {'$not': {'b': 1}}}", 2, "unknown operator: b"},
    {"{'$and': []}", 2, "must be a nonempty array"},
    {"{'$or': [1]}", 2, "entries need to be full objects"},
    {"{'$nor': 1}", 2, "$nor must be an array"},
    {"{'$or': [{'a': {'$bad': 1}}]}", 2, "unknown operator: $bad"},
    {"{'a': {'$size': 'x'}}", 2, "$size needs a number"},
    {"{'a': {'$size': -1}}", 2, "$size may not be negative"},
    {"{'a': {'$size': 1.5}}", 2, "$size must be a whole number"},
    {"{'a': {'#type': 'foo'}}", 2, "Unknown type name alias: foo"},
    {"{'a': {'#type': 99}}", 2, "Invalid numerical type code: 99"},
    {"{'a': {'#type': {}}}", 14, "type must be represented as a number or a string"},
    {"{'a': {'$all': 1}}", 2, "$all needs an array"},
    {"{'a': {'$all': [{'$elemMatch': {'b': 1}}, 1]}}", 2, "$all/$elemMatch has to be consistent"},
    {"{'a': {'$all': [{'$gt': 1}]}}", 2, "no $ expressions in $all"},
    {"{'a': {'$elemMatch': 1}}", 2, "$elemMatch needs an Object"},
    {"{'a': {'$elemMatch': {'$foo': 1}}}", 2, "unknown operator: $foo"},
    {"{'a': {'$mod': 4}}", 2, "malformed mod, needs to be an array"},
    {"{'a': {'$mod': [4]}}", 2, "malformed mod, not enough elements"},
    {"{'a': {'$mod': [4, 1, 2]}}", 2, "malformed mod, too many elements"},
    {"{'a': {'$mod': [0, 1]}}", 2, "divisor cannot be 0"},
    {"{'a': {'$mod': ['x', 1]}}", 2, "malformed mod, divisor not a number"},
    {"{'a': {'$mod': [1, 'x']}}", 2, "malformed mod, remainder not a number"},
    {"{'a': {'$bitsAllSet': 'x'}}", 2, "takes an Array, a number, or a BinData"},
    {"{'a': {'$bitsAllSet': [-1]}}", 2, "bit positions must be >= 0"},
    {"{'a': {'$bitsAnySet': -1}}", 9, "must be a non-negative number"},
    {"{'a': {'$bitsAnySet': 1.5}}", 9, "64-bit integer"},
    {"{'$where': 'this.a == 1'}", 2, "$where is not supported"},
    {"{'$expr': {'$eq': ['$a', 1]}}", 238, "$expr is not implemented"},
    {"{'$text': {'$search': 'x'}}", 238, "$text is not implemented"},
    {"{'a': {'$near': [0, 0]}}", 238, "$near is not implemented"},
    {"{'a': {'$ne': " RX("x", "") "}}", 2, "Can't have regex as arg to $ne"},
    {"{'a': {'$eq': {'$undefined': true}}}", 2, "cannot compare to undefined"},
    {"{'a': {'$undefined': true}}", 2, "cannot compare to undefined"},
};

Test(bq_match, invalid_filters_get_mongod_codes)
{
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        bson_t *f = tu_docq(bad_rows[i].filter);
        bq_error_t err;
        bq_error_clear(&err);
        bq_match_t *m = bq_match_compile(f, &err);
        cr_expect_null(m, "row %zu: %s compiled but should fail", i, bad_rows[i].filter);
        bq_match_destroy(m);
        cr_expect_eq(err.code, bad_rows[i].code, "row %zu: %s gave code %d (%s), want %d", i,
                     bad_rows[i].filter, err.code, err.message, bad_rows[i].code);
        cr_expect(strstr(err.message, bad_rows[i].msg) != NULL,
                  "row %zu: %s gave message '%s', want '%s'", i, bad_rows[i].filter,
                  err.message, bad_rows[i].msg);
        bson_destroy(f);
    }
}

Test(bq_match, null_error_pointer_and_reuse)
{
    bson_t *bad = tu_docq("{'a': {'$foo': 1}}");
    cr_expect_null(bq_match_compile(bad, NULL));
    bson_destroy(bad);
    bson_t *f = tu_docq("{'a': {'$in': [1, " RX("^z", "") "]}}");
    bq_match_t *m = bq_match_compile(f, NULL);
    bson_destroy(f); /* the matcher keeps its own copy */
    cr_assert_not_null(m);
    bson_t *d1 = tu_docq("{'a': 'zz'}"), *d2 = tu_docq("{'a': 2}");
    for (int i = 0; i < 3; i++) {
        cr_expect(bq_match_eval(m, d1));
        cr_expect(!bq_match_eval(m, d2));
    }
    bson_destroy(d1);
    bson_destroy(d2);
    bq_match_destroy(m);
    bq_match_destroy(NULL);
}
