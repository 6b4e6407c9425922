/*
 * test_bq_schema.c: bsonq/bq_match_schema.c, the $jsonSchema query operator. Tables of
 * (schema, document, expected) rows per keyword family, taken from MongoDB's "$jsonSchema"
 * and "Schema Validation" documentation examples plus edge cases (type-restricted keywords,
 * no array traversal, numbers of every type, unordered documents in enum); a table of
 * invalid schemas with mongod's codes; and the errInfo-style explanation of failures.
 * JSON uses single quotes; keys written #x become $x (see tu_docq).
 */
#include "bq_test_util.h"

typedef struct {
    const char *schema, *doc;
    bool want;
} schema_row_t;

#define D(x) "{'$numberDouble': '" #x "'}"
#define L(x) "{'$numberLong': '" #x "'}"
#define DEC(x) "{'$numberDecimal': '" #x "'}"

static void run_rows(const char *family, const schema_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char filter[4096];
        snprintf(filter, sizeof filter, "{'$jsonSchema': %s}", rows[i].schema);
        bson_t *f = tu_docq(filter), *d = tu_docq(rows[i].doc);
        bq_error_t err;
        bq_error_clear(&err);
        bq_match_t *m = bq_match_compile(f, &err);
        cr_expect_not_null(m, "%s row %zu: %s failed to compile: %s", family, i,
                           rows[i].schema, err.message);
        if (m) {
            bool got = bq_match_eval(m, d);
            cr_expect_eq(got, rows[i].want, "%s row %zu: schema %s on %s gave %d, want %d",
                         family, i, rows[i].schema, rows[i].doc, got, rows[i].want);
            bq_match_destroy(m);
        }
        bson_destroy(f);
        bson_destroy(d);
    }
}

#define RUN(family, rows) run_rows(family, rows, sizeof rows / sizeof rows[0])

/* The "Specify JSON Schema Validation" example of MongoDB's documentation. */
#define STUDENTS                                                                            \
    "{'bsonType': 'object', 'title': 'Student Object Validation',"                          \
    " 'required': ['address', 'major', 'name', 'year'],"                                    \
    " 'properties': {'name': {'bsonType': 'string', 'description': 'must be a string'},"    \
    "  'year': {'bsonType': 'int', 'minimum': 2017, 'maximum': 3017},"                      \
    "  'gpa': {'bsonType': ['double'], 'description': 'must be a double if present'}}}"

/* The $jsonSchema query example of the operator's documentation page. */
#define INVENTORY                                                                           \
    "{'required': ['item', 'qty', 'instock'],"                                              \
    " 'properties': {'item': {'bsonType': 'string'}, 'qty': {'bsonType': 'int'},"           \
    "  'size': {'bsonType': 'object', 'required': ['uom'],"                                 \
    "   'properties': {'uom': {'bsonType': 'string'}, 'h': {'bsonType': 'double'},"         \
    "    'w': {'bsonType': 'double'}}},"                                                    \
    "  'instock': {'bsonType': 'bool'}}}"

static const schema_row_t doc_rows[] = {
    {STUDENTS,
     "{'name': 'Alice', 'year': 2019, 'major': 'History', 'gpa': 3,"
     " 'address': {'city': 'NYC', 'street': '33rd Street'}}",
     false},
    {STUDENTS,
     "{'name': 'Alice', 'year': 2019, 'major': 'History', 'gpa': " D(3.0) ","
     " 'address': {'city': 'NYC', 'street': '33rd Street'}}",
     true},
    {STUDENTS, "{'name': 'Alice', 'year': 2019, 'major': 'History', 'address': {}}", true},
    {STUDENTS, "{'name': 'Alice', 'year': 2019, 'major': 'History'}", false},
    {STUDENTS, "{'name': 'Alice', 'year': 2016, 'major': 'History', 'address': {}}", false},
    {STUDENTS, "{'name': 'Alice', 'year': " L(2019) ", 'major': 'History', 'address': {}}",
     false},
    {INVENTORY,
     "{'item': 'journal', 'qty': 25, 'size': {'h': " D(14) ", 'w': " D(21) ", 'uom': 'cm'},"
     " 'instock': true}",
     true},
    {INVENTORY, "{'item': 'notebook', 'qty': 50, 'size': {'h': " D(8.5) ", 'w': " D(11) ","
                " 'uom': 'in'}, 'instock': true}",
     true},
    {INVENTORY, "{'item': 'paper', 'qty': 100, 'size': {'h': " D(8.5) ", 'w': " D(11) ","
                " 'uom': 'in'}, 'instock': 1}",
     false},
    {INVENTORY, "{'item': 'planner', 'qty': 75, 'size': {'h': " D(22.85) ", 'w': " D(30) "},"
                " 'instock': false}",
     false},
    {INVENTORY, "{'item': 'postcard', 'qty': 45, 'size': {'h': " D(10) ", 'w': " D(15.25) ","
                " 'uom': 'cm'}, 'instock': true}",
     true},
    {INVENTORY, "{'item': 'apple', 'qty': 45, 'status': 'A', 'instock': true}", true},
    {INVENTORY, "{'item': 'pears', 'qty': 50, 'status': 'A', 'instock': true}", true},
    {"{}", "{'anything': [1, {'x': 2}]}", true},
};

static const schema_row_t type_rows[] = {
    {"{'bsonType': 'object'}", "{}", true},
    {"{'bsonType': 'string'}", "{}", false}, /* the top level is always an object */
    {"{'type': 'object'}", "{'a': 1}", true},
    {"{'properties': {'a': {'type': 'number'}}}", "{'a': 1}", true},
    {"{'properties': {'a': {'type': 'number'}}}", "{'a': " L(1) "}", true},
    {"{'properties': {'a': {'type': 'number'}}}", "{'a': " DEC(1.5) "}", true},
    {"{'properties': {'a': {'type': 'number'}}}", "{'a': '1'}", false},
    {"{'properties': {'a': {'bsonType': 'number'}}}", "{'a': " D(1.5) "}", true},
    {"{'properties': {'a': {'bsonType': ['string', 'null']}}}", "{'a': null}", true},
    {"{'properties': {'a': {'bsonType': ['string', 'null']}}}", "{'a': 3}", false},
    {"{'properties': {'a': {'type': ['string', 'null']}}}", "{'a': 'x'}", true},
    {"{'properties': {'a': {'type': 'boolean'}}}", "{'a': false}", true},
    {"{'properties': {'a': {'type': 'boolean'}}}", "{'a': 0}", false},
    {"{'properties': {'a': {'type': 'array'}}}", "{'a': [1]}", true},
    {"{'properties': {'a': {'type': 'object'}}}", "{'a': [1]}", false},
    {"{'properties': {'a': {'type': 'null'}}}", "{'a': null}", true},
    /* no implicit array traversal */
    {"{'properties': {'a': {'bsonType': 'int'}}}", "{'a': [1, 2]}", false},
    {"{'properties': {'a': {'bsonType': 'int'}}}", "{}", true},
    {"{'properties': {'a': {'bsonType': 'long'}}}", "{'a': " L(5) "}", true},
    {"{'properties': {'a': {'bsonType': 'long'}}}", "{'a': 5}", false},
    {"{'properties': {'a': {'bsonType': 'objectId'}}}", "{'a': {'$oid': '5f0c6f6a1c9d440000000000'}}", true},
    {"{'properties': {'a': {'bsonType': 'date'}}}", "{'a': {'$date': '2020-01-01T00:00:00Z'}}", true},
    {"{'properties': {'a': {'bsonType': 'decimal'}}}", "{'a': " DEC(1) "}", true},
    {"{'properties': {'a': {'bsonType': 'minKey'}}}", "{'a': {'$minKey': 1}}", true},
    /* dotted names are literal field names */
    {"{'properties': {'a.b': {'bsonType': 'int'}}}", "{'a': {'b': 'x'}}", true},
};

static const schema_row_t num_rows[] = {
    {"{'properties': {'a': {'minimum': 5}}}", "{'a': 5}", true},
    {"{'properties': {'a': {'minimum': 5}}}", "{'a': " D(4.99) "}", false},
    {"{'properties': {'a': {'minimum': 5, 'exclusiveMinimum': true}}}", "{'a': 5}", false},
    {"{'properties': {'a': {'minimum': 5, 'exclusiveMinimum': false}}}", "{'a': 5}", true},
    {"{'properties': {'a': {'maximum': " D(2.5) "}}}", "{'a': " L(2) "}", true},
    {"{'properties': {'a': {'maximum': 2, 'exclusiveMaximum': true}}}", "{'a': " DEC(2.0) "}",
     false},
    {"{'properties': {'a': {'maximum': 2}}}", "{'a': 3}", false},
    /* type-restricted: strings are not numbers, so they pass */
    {"{'properties': {'a': {'minimum': 5}}}", "{'a': 'abc'}", true},
    {"{'properties': {'a': {'minimum': 5}}}", "{'a': [1]}", true},
    {"{'properties': {'a': {'multipleOf': 3}}}", "{'a': 9}", true},
    {"{'properties': {'a': {'multipleOf': 3}}}", "{'a': 10}", false},
    {"{'properties': {'a': {'multipleOf': " D(0.1) "}}}", "{'a': " D(0.3) "}", true},
    {"{'properties': {'a': {'multipleOf': " D(1.5) "}}}", "{'a': " L(3) "}", true},
    {"{'properties': {'a': {'multipleOf': 2}}}", "{'a': " D(NaN) "}", false},
    {"{'properties': {'a': {'multipleOf': 2}}}", "{'a': 'x'}", true},
};

static const schema_row_t str_rows[] = {
    {"{'properties': {'s': {'minLength': 2, 'maxLength': 3}}}", "{'s': 'ab'}", true},
    {"{'properties': {'s': {'minLength': 2, 'maxLength': 3}}}", "{'s': 'a'}", false},
    {"{'properties': {'s': {'minLength': 2, 'maxLength': 3}}}", "{'s': 'abcd'}", false},
    /* lengths count code points: 'héé' is 5 bytes, 3 characters */
    {"{'properties': {'s': {'maxLength': 3}}}", "{'s': 'h\\u00e9\\u00e9'}", true},
    {"{'properties': {'s': {'minLength': 4}}}", "{'s': 'h\\u00e9\\u00e9'}", false},
    {"{'properties': {'s': {'minLength': 4}}}", "{'s': 12}", true},
    {"{'properties': {'s': {'pattern': '^[a-z]+$'}}}", "{'s': 'abc'}", true},
    {"{'properties': {'s': {'pattern': '^[a-z]+$'}}}", "{'s': 'abc1'}", false},
    {"{'properties': {'s': {'pattern': 'b'}}}", "{'s': 'abc'}", true},
    {"{'properties': {'s': {'pattern': 'b'}}}", "{'s': 5}", true},
};

static const schema_row_t obj_rows[] = {
    {"{'required': ['a', 'b']}", "{'a': 1, 'b': null}", true},
    {"{'required': ['a', 'b']}", "{'a': 1}", false},
    {"{'properties': {'o': {'required': ['x']}}}", "{'o': {'y': 1}}", false},
    {"{'properties': {'o': {'required': ['x']}}}", "{'o': 5}", true},
    {"{'minProperties': 2}", "{'a': 1}", false},
    {"{'minProperties': 2, 'maxProperties': 3}", "{'a': 1, 'b': 2}", true},
    {"{'maxProperties': 1}", "{'a': 1, 'b': 2}", false},
    /* additionalProperties: false at the top level needs _id listed (documented) */
    {"{'properties': {'a': {}}, 'additionalProperties': false}", "{'_id': 1, 'a': 1}", false},
    {"{'properties': {'_id': {}, 'a': {}}, 'additionalProperties': false}",
     "{'_id': 1, 'a': 1}", true},
    {"{'properties': {'a': {}}, 'additionalProperties': true}", "{'b': 1}", true},
    {"{'properties': {'a': {}}, 'additionalProperties': {'bsonType': 'string'}}",
     "{'a': 1, 'b': 'x'}", true},
    {"{'properties': {'a': {}}, 'additionalProperties': {'bsonType': 'string'}}",
     "{'a': 1, 'b': 2}", false},
    {"{'patternProperties': {'^x_': {'bsonType': 'int'}}}", "{'x_a': 1, 'y': 'q'}", true},
    {"{'patternProperties': {'^x_': {'bsonType': 'int'}}}", "{'x_a': 'q'}", false},
    {"{'patternProperties': {'^x_': {}}, 'additionalProperties': false}", "{'x_a': 1}", true},
    {"{'patternProperties': {'^x_': {}}, 'additionalProperties': false}", "{'x_a': 1, 'y': 2}",
     false},
    {"{'dependencies': {'a': ['b']}}", "{'a': 1, 'b': 2}", true},
    {"{'dependencies': {'a': ['b']}}", "{'a': 1}", false},
    {"{'dependencies': {'a': ['b']}}", "{'c': 1}", true},
    {"{'dependencies': {'a': {'required': ['c']}}}", "{'a': 1, 'c': 1}", true},
    {"{'dependencies': {'a': {'required': ['c']}}}", "{'a': 1}", false},
    {"{'properties': {'o': {'properties': {'p': {'enum': [1]}}}}}", "{'o': {'p': 2}}", false},
};

static const schema_row_t arr_rows[] = {
    {"{'properties': {'a': {'items': {'bsonType': 'int'}}}}", "{'a': [1, 2]}", true},
    {"{'properties': {'a': {'items': {'bsonType': 'int'}}}}", "{'a': [1, 'x']}", false},
    {"{'properties': {'a': {'items': {'bsonType': 'int'}}}}", "{'a': []}", true},
    {"{'properties': {'a': {'items': {'bsonType': 'int'}}}}", "{'a': 'x'}", true},
    {"{'properties': {'a': {'items': [{'bsonType': 'int'}, {'bsonType': 'string'}]}}}",
     "{'a': [1, 'x', null]}", true},
    {"{'properties': {'a': {'items': [{'bsonType': 'int'}, {'bsonType': 'string'}]}}}",
     "{'a': ['x']}", false},
    {"{'properties': {'a': {'items': [{}], 'additionalItems': false}}}", "{'a': [1]}", true},
    {"{'properties': {'a': {'items': [{}], 'additionalItems': false}}}", "{'a': [1, 2]}",
     false},
    {"{'properties': {'a': {'items': [{}], 'additionalItems': {'bsonType': 'int'}}}}",
     "{'a': ['x', 2, 3]}", true},
    {"{'properties': {'a': {'items': [{}], 'additionalItems': {'bsonType': 'int'}}}}",
     "{'a': ['x', 2, 'y']}", false},
    /* additionalItems without an items list has no effect */
    {"{'properties': {'a': {'additionalItems': false}}}", "{'a': [1, 2]}", true},
    {"{'properties': {'a': {'items': {}, 'additionalItems': false}}}", "{'a': [1, 2]}", true},
    {"{'properties': {'a': {'minItems': 2, 'maxItems': 3}}}", "{'a': [1]}", false},
    {"{'properties': {'a': {'minItems': 2, 'maxItems': 3}}}", "{'a': [1, 2, 3]}", true},
    {"{'properties': {'a': {'minItems': 2, 'maxItems': 3}}}", "{'a': [1, 2, 3, 4]}", false},
    {"{'properties': {'a': {'uniqueItems': true}}}", "{'a': [1, 2, 3]}", true},
    {"{'properties': {'a': {'uniqueItems': true}}}", "{'a': [1, 2, " D(1.0) "]}", false},
    {"{'properties': {'a': {'uniqueItems': true}}}", "{'a': [{'x': 1, 'y': 2}, {'y': 2, 'x': 1}]}",
     false},
    {"{'properties': {'a': {'uniqueItems': false}}}", "{'a': [1, 1]}", true},
};

static const schema_row_t any_rows[] = {
    {"{'properties': {'a': {'enum': [1, 'x', null]}}}", "{'a': 'x'}", true},
    {"{'properties': {'a': {'enum': [1, 'x', null]}}}", "{'a': " D(1.0) "}", true},
    {"{'properties': {'a': {'enum': [1, 'x', null]}}}", "{'a': 2}", false},
    {"{'properties': {'a': {'enum': [{'x': 1, 'y': 2}]}}}", "{'a': {'y': 2, 'x': 1}}", true},
    {"{'properties': {'a': {'enum': [[1, 2]]}}}", "{'a': [2, 1]}", false},
    {"{'properties': {'a': {'allOf': [{'minimum': 1}, {'maximum': 3}]}}}", "{'a': 2}", true},
    {"{'properties': {'a': {'allOf': [{'minimum': 1}, {'maximum': 3}]}}}", "{'a': 4}", false},
    {"{'properties': {'a': {'anyOf': [{'bsonType': 'int'}, {'bsonType': 'string'}]}}}",
     "{'a': 'x'}", true},
    {"{'properties': {'a': {'anyOf': [{'bsonType': 'int'}, {'bsonType': 'string'}]}}}",
     "{'a': true}", false},
    {"{'properties': {'a': {'oneOf': [{'minimum': 1}, {'maximum': 3}]}}}", "{'a': 5}", true},
    {"{'properties': {'a': {'oneOf': [{'minimum': 1}, {'maximum': 3}]}}}", "{'a': 2}", false},
    {"{'properties': {'a': {'oneOf': [{'bsonType': 'int'}, {'bsonType': 'long'}]}}}",
     "{'a': 'x'}", false},
    {"{'properties': {'a': {'not': {'bsonType': 'string'}}}}", "{'a': 1}", true},
    {"{'properties': {'a': {'not': {'bsonType': 'string'}}}}", "{'a': 'x'}", false},
    {"{'properties': {'a': {'title': 't', 'description': 'd'}}}", "{'a': 1}", true},
    {"{'properties': {'a': {'encrypt': {}}}}", "{'a': 'plain'}", false},
    {"{'properties': {'a': {'encrypt': {}}}}",
     "{'a': {'$binary': {'base64': 'AAAA', 'subType': '06'}}}", true},
    {"{'properties': {'a': {'encrypt': {}}}, 'encryptMetadata': {}}", "{}", true},
};

Test(bq_schema, documentation_examples) { RUN("docs", doc_rows); }
Test(bq_schema, type_and_bson_type) { RUN("type", type_rows); }
Test(bq_schema, numeric_keywords) { RUN("num", num_rows); }
Test(bq_schema, string_keywords) { RUN("str", str_rows); }
Test(bq_schema, object_keywords) { RUN("obj", obj_rows); }
Test(bq_schema, array_keywords) { RUN("arr", arr_rows); }
Test(bq_schema, enum_and_logic) { RUN("any", any_rows); }

Test(bq_schema, combines_with_other_clauses)
{
    bson_t *f = tu_docq("{'$jsonSchema': {'required': ['a']}, 'b': {'$gt': 1}}");
    bson_t *yes = tu_docq("{'a': 0, 'b': 2}"), *no1 = tu_docq("{'b': 2}"),
           *no2 = tu_docq("{'a': 0, 'b': 1}");
    bq_match_t *m = bq_match_compile(f, NULL);
    cr_assert_not_null(m);
    cr_expect(bq_match_eval(m, yes));
    cr_expect_not(bq_match_eval(m, no1));
    cr_expect_not(bq_match_eval(m, no2));
    bq_match_destroy(m);
    /* $jsonSchema inside $or and $nor */
    bson_t *g = tu_docq("{'$nor': [{'$jsonSchema': {'required': ['a']}}]}");
    m = bq_match_compile(g, NULL);
    cr_assert_not_null(m);
    cr_expect(bq_match_eval(m, no1));
    cr_expect_not(bq_match_eval(m, yes));
    bq_match_destroy(m);
    bson_destroy(f);
    bson_destroy(g);
    bson_destroy(yes);
    bson_destroy(no1);
    bson_destroy(no2);
}

typedef struct {
    const char *schema;
    int32_t code;
    const char *msg; /* substring of the message */
} bad_row_t;

/* Codes as mongod's JSON Schema parser reports them: 14 TypeMismatch for a keyword of the
 * wrong type, 9 FailedToParse for unknown/unsupported keywords and invalid values, 2
 * BadValue for unknown type names and type 'integer'. */
static const bad_row_t bad_rows[] = {
    {"1", 14, "$jsonSchema must be an object"},
    {"{'foo': 1}", 9, "Unknown $jsonSchema keyword: foo"},
    {"{'#ref': '#/definitions/a'}", 9, "'$ref' is not currently supported"},
    {"{'#schema': 'http://json-schema.org/draft-04/schema#'}", 9,
     "'$schema' is not currently supported"},
    {"{'default': 1}", 9, "'default' is not currently supported"},
    {"{'definitions': {}}", 9, "'definitions' is not currently supported"},
    {"{'format': 'email'}", 9, "'format' is not currently supported"},
    {"{'id': 'x'}", 9, "'id' is not currently supported"},
    {"{'type': 'integer'}", 2, "type 'integer' is not currently supported"},
    {"{'type': 'int'}", 2, "Unknown $jsonSchema type: int"},
    {"{'bsonType': 'integer'}", 2, "Unknown type name alias: integer"},
    {"{'bsonType': 1}", 14, "must be either a string or an array of strings"},
    {"{'type': 'object', 'bsonType': 'object'}", 9, "both $jsonSchema keywords 'type' and 'bsonType'"},
    {"{'bsonType': []}", 9, "must name at least one type"},
    {"{'bsonType': ['int', 'int']}", 9, "duplicate value"},
    {"{'required': 'a'}", 14, "'required' must be an array"},
    {"{'required': []}", 9, "'required' cannot be an empty array"},
    {"{'required': [1]}", 14, "'required' must contain only strings"},
    {"{'required': ['a', 'a']}", 9, "cannot contain duplicate values"},
    {"{'properties': 1}", 14, "'properties' must be an object"},
    {"{'properties': {'a': 1}}", 14, "Nested schema for $jsonSchema property 'a' must be an object"},
    {"{'properties': {'a': {'bad': 1}}}", 9, "Unknown $jsonSchema keyword: bad"},
    {"{'minimum': 'x'}", 14, "'minimum' must be a number"},
    {"{'exclusiveMaximum': true}", 9, "'maximum' must be a present if exclusiveMaximum"},
    {"{'minimum': 1, 'exclusiveMinimum': 1}", 14, "'exclusiveMinimum' must be a boolean"},
    {"{'multipleOf': 0}", 9, "'multipleOf' must have a positive value"},
    {"{'multipleOf': -2}", 9, "'multipleOf' must have a positive value"},
    {"{'minLength': -1}", 9, "'minLength' must be a non-negative integer"},
    {"{'maxLength': 1.5}", 9, "'maxLength' must be a representable as a long integer"},
    {"{'minItems': 'x'}", 14, "'minItems' must be a number"},
    {"{'pattern': 1}", 14, "'pattern' must be a string"},
    {"{'pattern': '('}", 51091, "Regular expression is invalid"},
    {"{'enum': 1}", 14, "'enum' must be an array"},
    {"{'enum': []}", 9, "'enum' cannot be an empty array"},
    {"{'enum': [1, " D(1.0) "]}", 9, "'enum' array cannot contain duplicate values"},
    {"{'items': 1}", 14, "'items' must be an array or an object"},
    {"{'items': [1]}", 14, "must be an array of objects"},
    {"{'additionalItems': 1}", 14, "'additionalItems' must be either an object or a boolean"},
    {"{'additionalProperties': 'x'}", 14,
     "'additionalProperties' must be either an object or a boolean"},
    {"{'uniqueItems': 1}", 14, "'uniqueItems' must be a boolean"},
    {"{'allOf': []}", 9, "'allOf' must be a non-empty array"},
    {"{'encrypt': 1}", 14, "'encrypt' must be an object"},
    {"{'encrypt': {}, 'bsonType': 'string'}", 9, "both $jsonSchema keywords 'encrypt' and 'bsonType'"},
    {"{'anyOf': {}}", 14, "'anyOf' must be an array"},
    {"{'oneOf': [1]}", 14, "must be an array of objects"},
    {"{'not': []}", 14, "'not' must be an object"},
    {"{'dependencies': {'a': 1}}", 14, "must be either an object or an array"},
    {"{'dependencies': {'a': []}}", 9, "cannot be an empty array"},
    {"{'title': 1}", 14, "'title' must be of type string"},
    {"{'description': true}", 14, "'description' must be of type string"},
    {"{'patternProperties': {'(': {}}}", 51091, "Regular expression is invalid"},
};

Test(bq_schema, invalid_schemas_get_mongod_codes)
{
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        char filter[2048];
        snprintf(filter, sizeof filter, "{'$jsonSchema': %s}", bad_rows[i].schema);
        bson_t *f = tu_docq(filter);
        bq_error_t err;
        bq_error_clear(&err);
        bq_match_t *m = bq_match_compile(f, &err);
        cr_expect_null(m, "row %zu: %s compiled but should fail", i, bad_rows[i].schema);
        bq_match_destroy(m);
        cr_expect_eq(err.code, bad_rows[i].code, "row %zu: %s gave code %d (%s), want %d", i,
                     bad_rows[i].schema, err.code, err.message, bad_rows[i].code);
        cr_expect(strstr(err.message, bad_rows[i].msg) != NULL,
                  "row %zu: %s gave message '%s', want '%s'", i, bad_rows[i].schema,
                  err.message, bad_rows[i].msg);
        bson_destroy(f);
    }
}

/* ---- explanations (errInfo.details) ---- */

/* The explanation of doc against filter, as relaxed JSON (caller frees). */
static char *explain(const char *filter, const char *doc)
{
    bson_t *f = tu_docq(filter), *d = tu_docq(doc);
    bq_error_t err;
    bq_match_t *m = bq_match_compile(f, &err);
    cr_assert_not_null(m, "%s: %s", filter, err.message);
    cr_assert_not(bq_match_eval(m, d), "%s matches %s", filter, doc);
    bson_t details;
    bq_match_explain(m, d, &details);
    char *s = bson_as_relaxed_extended_json(&details, NULL);
    bson_destroy(&details);
    bq_match_destroy(m);
    bson_destroy(f);
    bson_destroy(d);
    return s;
}

static void expect_contains(const char *s, const char *part)
{
    cr_expect(strstr(s, part) != NULL, "explanation %s lacks %s", s, part);
}

Test(bq_schema, explains_failed_rules)
{
    char *s = explain("{'$jsonSchema': " STUDENTS "}",
                      "{'name': 12, 'year': 2019, 'major': 'History'}");
    expect_contains(s, "\"operatorName\" : \"$jsonSchema\"");
    expect_contains(s, "\"title\" : \"Student Object Validation\"");
    expect_contains(s, "\"schemaRulesNotSatisfied\"");
    expect_contains(s, "\"operatorName\" : \"required\"");
    expect_contains(s, "\"missingProperties\" : [ \"address\" ]");
    expect_contains(s, "\"operatorName\" : \"properties\"");
    expect_contains(s, "\"propertyName\" : \"name\"");
    expect_contains(s, "\"description\" : \"must be a string\"");
    expect_contains(s, "\"operatorName\" : \"bsonType\"");
    expect_contains(s, "\"specifiedAs\" : { \"bsonType\" : \"string\" }");
    expect_contains(s, "\"reason\" : \"type did not match\"");
    expect_contains(s, "\"consideredValue\" : 12");
    expect_contains(s, "\"consideredType\" : \"int\"");
    bson_free(s);

    s = explain("{'$jsonSchema': {'properties': {'_id': {}}, 'additionalProperties': false}}",
                "{'_id': 1, 'extra': 2}");
    expect_contains(s, "\"operatorName\" : \"additionalProperties\"");
    expect_contains(s, "\"additionalProperties\" : [ \"extra\" ]");
    bson_free(s);

    s = explain("{'$jsonSchema': {'properties': {'a': {'items': {'minimum': 3}}}}}",
                "{'a': [5, 1]}");
    expect_contains(s, "\"operatorName\" : \"items\"");
    expect_contains(s, "\"itemIndex\" : 1");
    expect_contains(s, "\"operatorName\" : \"minimum\"");
    bson_free(s);
}

Test(bq_schema, explains_plain_filters)
{
    char *s = explain("{'x': {'#type': 'string'}}", "{'_id': 1, 'x': 1}");
    expect_contains(s, "\"operatorName\" : \"$type\"");
    expect_contains(s, "\"specifiedAs\" : { \"x\" : { \"$type\" : \"string\" } }");
    expect_contains(s, "\"reason\" : \"type did not match\"");
    expect_contains(s, "\"consideredType\" : \"int\"");
    bson_free(s);

    s = explain("{'a': {'$gt': 5}, 'b': 1}", "{'a': 3, 'b': 1}");
    expect_contains(s, "\"operatorName\" : \"$and\"");
    expect_contains(s, "\"clausesNotSatisfied\" : [ { \"index\" : 0");
    expect_contains(s, "\"operatorName\" : \"$gt\"");
    bson_free(s);

    s = explain("{'a': 1}", "{'b': 1}");
    expect_contains(s, "\"reason\" : \"field was missing\"");
    bson_free(s);
}
