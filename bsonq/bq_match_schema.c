/*
 * bq_match_schema.c: the $jsonSchema query operator, as MongoDB 7.0 implements JSON Schema
 * draft 4 with its own extensions and omissions.
 *
 * Owns the parse of a schema document into a tree of schema_t (one per schema object),
 * its evaluation against a value, and the "why did it fail" description that document
 * validation reports in errInfo.details (schemaRulesNotSatisfied). It also describes the
 * failure of any other compiled filter (bq_match_explain), since a collection validator is
 * an ordinary query filter in which $jsonSchema is one clause among others.
 *
 * Rules MongoDB applies, and so do we:
 *   - keywords are type-restricted: minimum applies only to numbers, minLength only to
 *     strings, properties only to objects, items only to arrays; a value of another type
 *     satisfies them. Only type/bsonType restrict the type itself.
 *   - no implicit array traversal: properties: {a: {bsonType: "int"}} fails for a: [1, 2].
 *   - property names are literal field names (a dot is part of the name).
 *   - type takes JSON type names ("integer" is refused: MongoDB does not support it),
 *     bsonType takes BSON aliases and "number"; a schema may not have both.
 *   - enum and uniqueItems compare documents without regard to field order, numbers by
 *     value.
 *   - multipleOf is Decimal128 remainder, with doubles converted to 15 digits (mongod's
 *     Decimal128(double) default), so 0.3 is a multiple of 0.1.
 *   - $ref, $schema, default, definitions, format and id are refused as unsupported;
 *     title and description must be strings and are otherwise ignored for matching.
 * Parse error codes follow mongod's JSON Schema parser: TypeMismatch (14) for a keyword of
 * the wrong BSON type, FailedToParse (9) for a well-typed but invalid value (empty or
 * duplicated lists, negative lengths, exclusiveMaximum without maximum, unknown or
 * unsupported keywords), BadValue (2) for unknown type aliases and type "integer".
 * MongoDB's documentation does not list these codes: they are the server's as best we
 * know them, the least certain being duplicate and empty type lists (FailedToParse here).
 *   - MongoDB's encryption keywords: encrypt matches only BinData subtype 6 (encrypted
 *     values; we never decrypt), encryptMetadata is checked to be an object.
 *
 * A compiled schema is immutable: evaluation allocates only its per-call regex match data,
 * so a filter holding one may be shared between threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

typedef struct schema schema_t;

typedef struct prop {
    char *name;
    schema_t *schema;
} prop_t;

typedef struct pprop {
    bq__regex_t *re;
    char *pattern;
    schema_t *schema;
} pprop_t;

typedef struct dep {
    char *name;
    schema_t *schema;   /* schema dependency, or NULL */
    char **fields;      /* property dependency */
    size_t nfields;
} dep_t;

/* additionalProperties / additionalItems */
enum { ADDL_NONE, ADDL_FALSE, ADDL_TRUE, ADDL_SCHEMA };

struct schema {
    bson_t *src;                    /* the schema object, for specifiedAs in explanations */
    /* type / bsonType */
    bool has_type;
    const char *type_kw;            /* "type" or "bsonType" */
    uint32_t type_bits;             /* bit t for BSON type t in 1..31 */
    bool type_number, type_min_key, type_max_key;
    /* numbers */
    bool has_min, has_max, excl_min, excl_max, has_mult;
    bson_value_t min, max, mult;    /* plain numbers: never own memory */
    /* strings */
    int64_t min_len, max_len;       /* -1 when absent */
    bq__regex_t *pattern;
    /* objects */
    char **required;
    size_t nrequired;
    prop_t *props;
    size_t nprops;
    pprop_t *pprops;
    size_t npprops;
    int addl_props;
    schema_t *addl_props_schema;
    int64_t min_props, max_props;
    dep_t *deps;
    size_t ndeps;
    /* arrays */
    schema_t *items;                /* one schema for every item */
    schema_t **items_list;          /* items given as an array: positional schemas */
    size_t nitems_list;
    bool items_is_list;
    int addl_items;
    schema_t *addl_items_schema;
    int64_t min_items, max_items;
    bool unique_items;
    bool encrypt;                   /* the value must be BinData subtype 6 */
    /* any type */
    bson_value_t *enums;            /* owned copies */
    size_t nenums;
    schema_t **all_of, **any_of, **one_of;
    size_t nall_of, nany_of, none_of;
    schema_t *not_schema;
};

/* ---------------------------------------------------------------- freeing */

static void schema_free(schema_t *s);

static void schema_list_free(schema_t **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        schema_free(l[i]);
    free(l);
}

static void strings_free(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void schema_free(schema_t *s)
{
    if (!s)
        return;
    if (s->src)
        bson_destroy(s->src);
    bq__regex_free(s->pattern);
    strings_free(s->required, s->nrequired);
    for (size_t i = 0; i < s->nprops; i++) {
        free(s->props[i].name);
        schema_free(s->props[i].schema);
    }
    free(s->props);
    for (size_t i = 0; i < s->npprops; i++) {
        bq__regex_free(s->pprops[i].re);
        free(s->pprops[i].pattern);
        schema_free(s->pprops[i].schema);
    }
    free(s->pprops);
    schema_free(s->addl_props_schema);
    for (size_t i = 0; i < s->ndeps; i++) {
        free(s->deps[i].name);
        schema_free(s->deps[i].schema);
        strings_free(s->deps[i].fields, s->deps[i].nfields);
    }
    free(s->deps);
    schema_free(s->items);
    schema_list_free(s->items_list, s->nitems_list);
    schema_free(s->addl_items_schema);
    for (size_t i = 0; i < s->nenums; i++)
        bson_value_destroy(&s->enums[i]);
    free(s->enums);
    schema_list_free(s->all_of, s->nall_of);
    schema_list_free(s->any_of, s->nany_of);
    schema_list_free(s->one_of, s->none_of);
    schema_free(s->not_schema);
    free(s);
}

void bq__schema_free(void *schema)
{
    schema_free(schema);
}

/* ---------------------------------------------------------------- value helpers */

static bool oom(bq_error_t *err)
{
    bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory compiling $jsonSchema");
    return false;
}

static bool value_as_doc(const bson_value_t *v, bson_t *out)
{
    if (v->value_type != BSON_TYPE_DOCUMENT && v->value_type != BSON_TYPE_ARRAY)
        return false;
    return bson_init_static(out, v->value.v_doc.data, v->value.v_doc.data_len);
}

static bool iter_sub(const bson_iter_t *it, bson_t *out)
{
    uint32_t len;
    const uint8_t *data;
    if (BSON_ITER_HOLDS_DOCUMENT(it))
        bson_iter_document(it, &len, &data);
    else if (BSON_ITER_HOLDS_ARRAY(it))
        bson_iter_array(it, &len, &data);
    else
        return false;
    return bson_init_static(out, data, len);
}

static bool unordered_equal(const bson_value_t *a, const bson_value_t *b);

/* Documents equal as sets of fields (field order ignored), values compared recursively. */
static bool docs_unordered_equal(const bson_value_t *a, const bson_value_t *b)
{
    bson_t da, db;
    if (!value_as_doc(a, &da) || !value_as_doc(b, &db))
        return false;
    if (bson_count_keys(&da) != bson_count_keys(&db))
        return false;
    bson_iter_t ia, ib;
    bson_iter_init(&ia, &da);
    while (bson_iter_next(&ia)) {
        if (!bson_iter_init_find_w_len(&ib, &db, bson_iter_key(&ia), (int)bson_iter_key_len(&ia)))
            return false;
        if (!unordered_equal(bson_iter_value(&ia), bson_iter_value(&ib)))
            return false;
    }
    return true;
}

static bool unordered_equal(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type == BSON_TYPE_DOCUMENT && b->value_type == BSON_TYPE_DOCUMENT)
        return docs_unordered_equal(a, b);
    if (a->value_type == BSON_TYPE_ARRAY && b->value_type == BSON_TYPE_ARRAY) {
        bson_t da, db;
        bson_iter_t ia, ib;
        if (!value_as_doc(a, &da) || !value_as_doc(b, &db))
            return false;
        bson_iter_init(&ia, &da);
        bson_iter_init(&ib, &db);
        for (;;) {
            bool na = bson_iter_next(&ia), nb = bson_iter_next(&ib);
            if (na != nb)
                return false;
            if (!na)
                return true;
            if (!unordered_equal(bson_iter_value(&ia), bson_iter_value(&ib)))
                return false;
        }
    }
    if (bq_type_rank(a->value_type) != bq_type_rank(b->value_type))
        return false;
    return bq_value_compare(a, b) == 0;
}

/* Code points of a UTF-8 string (continuation bytes are not counted). */
static int64_t utf8_length(const char *s, uint32_t len)
{
    int64_t n = 0;
    for (uint32_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* ---------------------------------------------------------------- parse */

static schema_t *schema_parse(const bson_t *doc, bool top, bq_error_t *err);

static bool kw_number(const bson_iter_t *it, const char *kw, bson_value_t *out, bq_error_t *err)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    if (!bq_num_is_number(v)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$jsonSchema keyword '%s' must be a number", kw);
        return false;
    }
    *out = *v; /* numbers own no memory */
    return true;
}

/* A non-negative integral count (minLength, maxItems, ...). */
static bool kw_count(const bson_iter_t *it, const char *kw, int64_t *out, bq_error_t *err)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    bool exact;
    if (!bq_num_is_number(v)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$jsonSchema keyword '%s' must be a number", kw);
        return false;
    }
    if (!bq_num_to_int64(v, out, &exact) || !exact) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword '%s' must be a representable as a long integer", kw);
        return false;
    }
    if (*out < 0) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword '%s' must be a non-negative integer", kw);
        return false;
    }
    return true;
}

static bool kw_bool(const bson_iter_t *it, const char *kw, bool *out, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_BOOL(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$jsonSchema keyword '%s' must be a boolean", kw);
        return false;
    }
    *out = bson_iter_bool(it);
    return true;
}

/* A nested schema: must be an object. */
static schema_t *kw_schema(const bson_iter_t *it, const char *what, bq_error_t *err)
{
    bson_t sub;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !iter_sub(it, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "%s must be an object", what);
        return NULL;
    }
    return schema_parse(&sub, false, err);
}

/* A non-empty array of distinct strings (required, property dependencies). */
static bool kw_strings(const bson_iter_t *arr, const char *kw, char ***out, size_t *n,
                       bq_error_t *err)
{
    bson_t sub;
    bson_iter_t it;
    if (!BSON_ITER_HOLDS_ARRAY(arr) || !iter_sub(arr, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$jsonSchema keyword '%s' must be an array", kw);
        return false;
    }
    uint32_t count = bson_count_keys(&sub);
    if (count == 0) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword '%s' cannot be an empty array", kw);
        return false;
    }
    *out = calloc(count, sizeof **out);
    if (!*out)
        return oom(err);
    bson_iter_init(&it, &sub);
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_UTF8(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "$jsonSchema keyword '%s' must contain only strings", kw);
            return false;
        }
        const char *s = bson_iter_utf8(&it, NULL);
        for (size_t i = 0; i < *n; i++) {
            if (strcmp((*out)[i], s) == 0) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "$jsonSchema keyword '%s' array cannot contain duplicate values",
                             kw);
                return false;
            }
        }
        if (!((*out)[*n] = strdup(s)))
            return oom(err);
        (*n)++;
    }
    return true;
}

/* A non-empty array of schemas (allOf, anyOf, oneOf, items as a list). */
static bool kw_schema_list(const bson_iter_t *arr, const char *kw, bool allow_empty,
                           schema_t ***out, size_t *n, bq_error_t *err)
{
    bson_t sub;
    bson_iter_t it;
    if (!BSON_ITER_HOLDS_ARRAY(arr) || !iter_sub(arr, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$jsonSchema keyword '%s' must be an array", kw);
        return false;
    }
    uint32_t count = bson_count_keys(&sub);
    if (count == 0 && !allow_empty) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword '%s' must be a non-empty array", kw);
        return false;
    }
    *out = calloc(count ? count : 1, sizeof **out);
    if (!*out)
        return oom(err);
    bson_iter_init(&it, &sub);
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "$jsonSchema keyword '%s' must be an array of objects, but found an "
                         "element of type %s",
                         kw, bq_type_name(bson_iter_type(&it)));
            return false;
        }
        schema_t *s = kw_schema(&it, kw, err);
        if (!s)
            return false;
        (*out)[(*n)++] = s;
    }
    return true;
}

/* One entry of type or bsonType. */
static bool type_add(schema_t *s, const bson_iter_t *it, bool json, bq_error_t *err)
{
    const char *kw = json ? "type" : "bsonType";
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "$jsonSchema keyword '%s' must be either a string or an array of strings",
                     kw);
        return false;
    }
    const char *name = bson_iter_utf8(it, NULL);
    bson_type_t t;
    if (strcmp(name, "number") == 0) {
        s->type_number = true;
        return true;
    }
    if (json) {
        static const struct {
            const char *name;
            bson_type_t type;
        } json_types[] = {{"object", BSON_TYPE_DOCUMENT}, {"array", BSON_TYPE_ARRAY},
                          {"boolean", BSON_TYPE_BOOL},    {"string", BSON_TYPE_UTF8},
                          {"null", BSON_TYPE_NULL}};
        if (strcmp(name, "integer") == 0) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "$jsonSchema type 'integer' is not currently supported.");
            return false;
        }
        for (size_t i = 0; i < sizeof json_types / sizeof *json_types; i++) {
            if (strcmp(json_types[i].name, name) == 0) {
                s->type_bits |= 1u << (unsigned)json_types[i].type;
                return true;
            }
        }
        bq_error_set(err, BQ_ERR_BadValue, "Unknown $jsonSchema type: %s", name);
        return false;
    }
    if (!bq_type_from_name(name, &t)) {
        bq_error_set(err, BQ_ERR_BadValue, "Unknown type name alias: %s", name);
        return false;
    }
    if (t == BSON_TYPE_MINKEY)
        s->type_min_key = true;
    else if (t == BSON_TYPE_MAXKEY)
        s->type_max_key = true;
    else
        s->type_bits |= 1u << (unsigned)t;
    return true;
}

static bool parse_type(schema_t *s, const bson_iter_t *it, bool json, bq_error_t *err)
{
    const char *kw = json ? "type" : "bsonType";
    if (s->has_type || s->encrypt) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "Cannot specify both $jsonSchema keywords '%s' and '%s'",
                     s->encrypt ? "encrypt" : "type", s->encrypt ? kw : "bsonType");
        return false;
    }
    s->has_type = true;
    s->type_kw = kw;
    if (!BSON_ITER_HOLDS_ARRAY(it))
        return type_add(s, it, json, err);
    bson_t sub;
    bson_iter_t el;
    iter_sub(it, &sub);
    if (bson_count_keys(&sub) == 0) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword '%s' must name at least one type", kw);
        return false;
    }
    bson_iter_init(&el, &sub);
    while (bson_iter_next(&el)) {
        bson_iter_t prev;
        bson_iter_init(&prev, &sub);
        while (bson_iter_next(&prev) && strcmp(bson_iter_key(&prev), bson_iter_key(&el)) != 0)
            if (BSON_ITER_HOLDS_UTF8(&prev) && BSON_ITER_HOLDS_UTF8(&el) &&
                strcmp(bson_iter_utf8(&prev, NULL), bson_iter_utf8(&el, NULL)) == 0) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "$jsonSchema keyword '%s' has duplicate value: %s", kw,
                             bson_iter_utf8(&el, NULL));
                return false;
            }
        if (!type_add(s, &el, json, err))
            return false;
    }
    return true;
}

static bool parse_properties(schema_t *s, const bson_iter_t *it, bq_error_t *err)
{
    bson_t sub;
    bson_iter_t p;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !iter_sub(it, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "$jsonSchema keyword 'properties' must be an object");
        return false;
    }
    if (!(s->props = calloc(bson_count_keys(&sub) + 1, sizeof *s->props)))
        return oom(err);
    bson_iter_init(&p, &sub);
    while (bson_iter_next(&p)) {
        char what[300];
        snprintf(what, sizeof what, "Nested schema for $jsonSchema property '%s'",
                 bson_iter_key(&p));
        prop_t *pr = &s->props[s->nprops];
        if (!(pr->name = strdup(bson_iter_key(&p))))
            return oom(err);
        s->nprops++;
        if (!(pr->schema = kw_schema(&p, what, err)))
            return false;
    }
    return true;
}

static bool parse_pattern_properties(schema_t *s, const bson_iter_t *it, bq_error_t *err)
{
    bson_t sub;
    bson_iter_t p;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !iter_sub(it, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "$jsonSchema keyword 'patternProperties' must be an object");
        return false;
    }
    if (!(s->pprops = calloc(bson_count_keys(&sub) + 1, sizeof *s->pprops)))
        return oom(err);
    bson_iter_init(&p, &sub);
    while (bson_iter_next(&p)) {
        pprop_t *pp = &s->pprops[s->npprops];
        if (!(pp->pattern = strdup(bson_iter_key(&p))))
            return oom(err);
        s->npprops++;
        if (!(pp->re = bq__regex_new(pp->pattern, "", err)))
            return false;
        char what[300];
        snprintf(what, sizeof what,
                 "Nested schema for $jsonSchema patternProperties entry '%s'", pp->pattern);
        if (!(pp->schema = kw_schema(&p, what, err)))
            return false;
    }
    return true;
}

/* additionalProperties / additionalItems: a boolean or a schema. */
static bool parse_additional(const bson_iter_t *it, const char *kw, int *kind, schema_t **out,
                             bq_error_t *err)
{
    if (BSON_ITER_HOLDS_BOOL(it)) {
        *kind = bson_iter_bool(it) ? ADDL_TRUE : ADDL_FALSE;
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "$jsonSchema keyword '%s' must be either an object or a boolean", kw);
        return false;
    }
    *kind = ADDL_SCHEMA;
    return (*out = kw_schema(it, kw, err)) != NULL;
}

static bool parse_dependencies(schema_t *s, const bson_iter_t *it, bq_error_t *err)
{
    bson_t sub;
    bson_iter_t d;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !iter_sub(it, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "$jsonSchema keyword 'dependencies' must be an object");
        return false;
    }
    if (!(s->deps = calloc(bson_count_keys(&sub) + 1, sizeof *s->deps)))
        return oom(err);
    bson_iter_init(&d, &sub);
    while (bson_iter_next(&d)) {
        dep_t *dp = &s->deps[s->ndeps];
        if (!(dp->name = strdup(bson_iter_key(&d))))
            return oom(err);
        s->ndeps++;
        if (BSON_ITER_HOLDS_DOCUMENT(&d)) {
            if (!(dp->schema = kw_schema(&d, "dependencies", err)))
                return false;
        } else if (BSON_ITER_HOLDS_ARRAY(&d)) {
            char kw[300];
            snprintf(kw, sizeof kw, "dependencies.%s", dp->name);
            if (!kw_strings(&d, kw, &dp->fields, &dp->nfields, err))
                return false;
        } else {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "property '%s' in $jsonSchema keyword 'dependencies' must be either "
                         "an object or an array",
                         dp->name);
            return false;
        }
    }
    return true;
}

static bool parse_enum(schema_t *s, const bson_iter_t *it, bq_error_t *err)
{
    bson_t sub;
    bson_iter_t e;
    if (!BSON_ITER_HOLDS_ARRAY(it) || !iter_sub(it, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$jsonSchema keyword 'enum' must be an array");
        return false;
    }
    uint32_t count = bson_count_keys(&sub);
    if (count == 0) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword 'enum' cannot be an empty array");
        return false;
    }
    if (!(s->enums = calloc(count, sizeof *s->enums)))
        return oom(err);
    bson_iter_init(&e, &sub);
    while (bson_iter_next(&e)) {
        const bson_value_t *v = bson_iter_value(&e);
        for (size_t i = 0; i < s->nenums; i++) {
            if (unordered_equal(&s->enums[i], v)) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "$jsonSchema keyword 'enum' array cannot contain duplicate values");
                return false;
            }
        }
        bson_value_copy(v, &s->enums[s->nenums++]);
    }
    return true;
}

static bool parse_items(schema_t *s, const bson_iter_t *it, bq_error_t *err)
{
    if (BSON_ITER_HOLDS_DOCUMENT(it))
        return (s->items = kw_schema(it, "items", err)) != NULL;
    if (BSON_ITER_HOLDS_ARRAY(it)) {
        s->items_is_list = true;
        return kw_schema_list(it, "items", true, &s->items_list, &s->nitems_list, err);
    }
    bq_error_set(err, BQ_ERR_TypeMismatch,
                 "$jsonSchema keyword 'items' must be an array or an object, not %s",
                 bq_type_name(bson_iter_type(it)));
    return false;
}

static bool kw_is(const char *k, const char *name)
{
    return strcmp(k, name) == 0;
}

static schema_t *schema_parse(const bson_t *doc, bool top, bq_error_t *err)
{
    (void)top;
    schema_t *s = calloc(1, sizeof *s);
    if (!s || !(s->src = bson_copy(doc))) {
        free(s);
        oom(err);
        return NULL;
    }
    s->min_len = s->max_len = s->min_props = s->max_props = s->min_items = s->max_items = -1;
    bson_iter_t it;
    bool has_excl_min = false, has_excl_max = false;
    bool ok = bson_iter_init(&it, doc);
    if (!ok)
        bq_error_set(err, BQ_ERR_InvalidBSON, "invalid BSON in $jsonSchema");
    while (ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (kw_is(k, "type") || kw_is(k, "bsonType")) {
            ok = parse_type(s, &it, k[0] == 't', err);
        } else if (kw_is(k, "properties")) {
            ok = parse_properties(s, &it, err);
        } else if (kw_is(k, "patternProperties")) {
            ok = parse_pattern_properties(s, &it, err);
        } else if (kw_is(k, "additionalProperties")) {
            ok = parse_additional(&it, k, &s->addl_props, &s->addl_props_schema, err);
        } else if (kw_is(k, "required")) {
            ok = kw_strings(&it, k, &s->required, &s->nrequired, err);
        } else if (kw_is(k, "minProperties")) {
            ok = kw_count(&it, k, &s->min_props, err);
        } else if (kw_is(k, "maxProperties")) {
            ok = kw_count(&it, k, &s->max_props, err);
        } else if (kw_is(k, "dependencies")) {
            ok = parse_dependencies(s, &it, err);
        } else if (kw_is(k, "minimum")) {
            ok = kw_number(&it, k, &s->min, err);
            s->has_min = ok;
        } else if (kw_is(k, "maximum")) {
            ok = kw_number(&it, k, &s->max, err);
            s->has_max = ok;
        } else if (kw_is(k, "exclusiveMinimum")) {
            ok = kw_bool(&it, k, &s->excl_min, err);
            has_excl_min = true;
        } else if (kw_is(k, "exclusiveMaximum")) {
            ok = kw_bool(&it, k, &s->excl_max, err);
            has_excl_max = true;
        } else if (kw_is(k, "multipleOf")) {
            ok = kw_number(&it, k, &s->mult, err);
            if (ok) {
                double d = 0;
                bq_num_to_double(&s->mult, &d);
                if (!(d > 0) || bq_num_is_nan(&s->mult)) {
                    bq_error_set(err, BQ_ERR_FailedToParse,
                                 "$jsonSchema keyword 'multipleOf' must have a positive value");
                    ok = false;
                }
            }
            s->has_mult = ok;
        } else if (kw_is(k, "minLength")) {
            ok = kw_count(&it, k, &s->min_len, err);
        } else if (kw_is(k, "maxLength")) {
            ok = kw_count(&it, k, &s->max_len, err);
        } else if (kw_is(k, "pattern")) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "$jsonSchema keyword 'pattern' must be a string");
                ok = false;
            } else {
                ok = (s->pattern = bq__regex_new(bson_iter_utf8(&it, NULL), "", err)) != NULL;
            }
        } else if (kw_is(k, "items")) {
            ok = parse_items(s, &it, err);
        } else if (kw_is(k, "additionalItems")) {
            ok = parse_additional(&it, k, &s->addl_items, &s->addl_items_schema, err);
        } else if (kw_is(k, "minItems")) {
            ok = kw_count(&it, k, &s->min_items, err);
        } else if (kw_is(k, "maxItems")) {
            ok = kw_count(&it, k, &s->max_items, err);
        } else if (kw_is(k, "uniqueItems")) {
            ok = kw_bool(&it, k, &s->unique_items, err);
        } else if (kw_is(k, "enum")) {
            ok = parse_enum(s, &it, err);
        } else if (kw_is(k, "allOf")) {
            ok = kw_schema_list(&it, k, false, &s->all_of, &s->nall_of, err);
        } else if (kw_is(k, "anyOf")) {
            ok = kw_schema_list(&it, k, false, &s->any_of, &s->nany_of, err);
        } else if (kw_is(k, "oneOf")) {
            ok = kw_schema_list(&it, k, false, &s->one_of, &s->none_of, err);
        } else if (kw_is(k, "not")) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "$jsonSchema keyword 'not' must be an object");
                ok = false;
            } else {
                ok = (s->not_schema = kw_schema(&it, k, err)) != NULL;
            }
        } else if (kw_is(k, "encrypt") || kw_is(k, "encryptMetadata")) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "$jsonSchema keyword '%s' must be an object", k);
                ok = false;
            } else if (k[7] == '\0') {
                if (s->has_type) {
                    bq_error_set(err, BQ_ERR_FailedToParse,
                                 "Cannot specify both $jsonSchema keywords 'encrypt' and '%s'",
                                 s->type_kw);
                    ok = false;
                }
                s->encrypt = true;
            }
        } else if (kw_is(k, "title") || kw_is(k, "description")) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "$jsonSchema keyword '%s' must be of type string", k);
                ok = false;
            }
        } else if (kw_is(k, "$ref") || kw_is(k, "$schema") || kw_is(k, "default") ||
                   kw_is(k, "definitions") || kw_is(k, "format") || kw_is(k, "id")) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "$jsonSchema keyword '%s' is not currently supported", k);
            ok = false;
        } else {
            bq_error_set(err, BQ_ERR_FailedToParse, "Unknown $jsonSchema keyword: %s", k);
            ok = false;
        }
    }
    if (ok && has_excl_max && !s->has_max) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword 'maximum' must be a present if exclusiveMaximum is "
                     "present");
        ok = false;
    }
    if (ok && has_excl_min && !s->has_min) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$jsonSchema keyword 'minimum' must be a present if exclusiveMinimum is "
                     "present");
        ok = false;
    }
    if (!ok) {
        schema_free(s);
        return NULL;
    }
    return s;
}

bq__mnode_t *bq__match_schema_node(const bson_iter_t *arg, bq_error_t *err)
{
    bson_t sub;
    if (!BSON_ITER_HOLDS_DOCUMENT(arg) || !iter_sub(arg, &sub)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$jsonSchema must be an object");
        return NULL;
    }
    schema_t *s = schema_parse(&sub, true, err);
    if (!s)
        return NULL;
    bq__mnode_t *n = bq__mnode_new(BQ__M_SCHEMA);
    if (!n) {
        schema_free(s);
        oom(err);
        return NULL;
    }
    n->data = s;
    return n;
}

/* ---------------------------------------------------------------- evaluation */

/* Each check below returns true when the value satisfies that keyword. */

static bool check_type(const schema_t *s, const bson_value_t *v)
{
    if (s->encrypt && (v->value_type != BSON_TYPE_BINARY ||
                       v->value.v_binary.subtype != BSON_SUBTYPE_ENCRYPTED))
        return false;
    if (!s->has_type)
        return true;
    if (s->type_number && bq_num_is_number(v))
        return true;
    if (v->value_type == BSON_TYPE_MINKEY)
        return s->type_min_key;
    if (v->value_type == BSON_TYPE_MAXKEY)
        return s->type_max_key;
    unsigned t = (unsigned)v->value_type;
    return t < 32 && (s->type_bits & (1u << t)) != 0;
}

static bool check_min(const schema_t *s, const bson_value_t *v)
{
    if (!s->has_min || !bq_num_is_number(v))
        return true;
    int c = bq_num_compare(v, &s->min);
    return s->excl_min ? c > 0 : c >= 0;
}

static bool check_max(const schema_t *s, const bson_value_t *v)
{
    if (!s->has_max || !bq_num_is_number(v))
        return true;
    int c = bq_num_compare(v, &s->max);
    return s->excl_max ? c < 0 : c <= 0;
}

static bson_decimal128_t to_dec(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return bq_dec_from_int64(v->value.v_int32);
    case BSON_TYPE_INT64:
        return bq_dec_from_int64(v->value.v_int64);
    case BSON_TYPE_DOUBLE:
        return bq_dec_from_double(v->value.v_double, 15);
    default:
        return v->value.v_decimal128;
    }
}

static bool check_mult(const schema_t *s, const bson_value_t *v)
{
    if (!s->has_mult || !bq_num_is_number(v))
        return true;
    bson_decimal128_t r = bq_dec_mod(to_dec(v), to_dec(&s->mult));
    return !bq_dec_is_nan(r) && bq_dec_is_zero(r);
}

static bool check_min_len(const schema_t *s, const bson_value_t *v)
{
    return s->min_len < 0 || v->value_type != BSON_TYPE_UTF8 ||
           utf8_length(v->value.v_utf8.str, v->value.v_utf8.len) >= s->min_len;
}

static bool check_max_len(const schema_t *s, const bson_value_t *v)
{
    return s->max_len < 0 || v->value_type != BSON_TYPE_UTF8 ||
           utf8_length(v->value.v_utf8.str, v->value.v_utf8.len) <= s->max_len;
}

static bool check_pattern(const schema_t *s, const bson_value_t *v)
{
    return !s->pattern || v->value_type != BSON_TYPE_UTF8 ||
           bq__regex_match_value(s->pattern, v);
}

static bool check_enum(const schema_t *s, const bson_value_t *v)
{
    if (!s->enums)
        return true;
    for (size_t i = 0; i < s->nenums; i++)
        if (unordered_equal(&s->enums[i], v))
            return true;
    return false;
}

static bool schema_match(const schema_t *s, const bson_value_t *v);

/* Fields of an object value, counted. */
static int64_t field_count(const bson_value_t *v)
{
    bson_t d;
    return value_as_doc(v, &d) ? (int64_t)bson_count_keys(&d) : 0;
}

static bool has_field(const bson_value_t *obj, const char *name)
{
    bson_t d;
    bson_iter_t it;
    return value_as_doc(obj, &d) && bson_iter_init_find(&it, &d, name);
}

/* The first required property the object lacks, or NULL. */
static const char *missing_required(const schema_t *s, const bson_value_t *v, size_t from,
                                    size_t *at)
{
    for (size_t i = from; i < s->nrequired; i++) {
        if (!has_field(v, s->required[i])) {
            *at = i;
            return s->required[i];
        }
    }
    return NULL;
}

static const prop_t *prop_find(const schema_t *s, const char *name)
{
    for (size_t i = 0; i < s->nprops; i++)
        if (strcmp(s->props[i].name, name) == 0)
            return &s->props[i];
    return NULL;
}

static bool name_matches(const bq__regex_t *re, const char *name, uint32_t len)
{
    bson_value_t k;
    k.value_type = BSON_TYPE_UTF8;
    k.value.v_utf8.str = (char *)name;
    k.value.v_utf8.len = len;
    return bq__regex_match_value(re, &k);
}

/* properties, patternProperties and additionalProperties over each field. When `bad` is
 * given, fields that break additionalProperties (or its schema) are reported to it. */
typedef void (*field_cb)(void *ctx, const char *name, int which, size_t idx,
                         const bson_value_t *v);
enum { FIELD_PROP, FIELD_PPROP, FIELD_ADDL };

static bool check_fields(const schema_t *s, const bson_value_t *obj, field_cb bad, void *ctx)
{
    bson_t d;
    bson_iter_t it;
    bool ok = true;
    if (!s->nprops && !s->npprops && (s->addl_props == ADDL_NONE || s->addl_props == ADDL_TRUE))
        return true;
    if (!value_as_doc(obj, &d) || !bson_iter_init(&it, &d))
        return true;
    while (bson_iter_next(&it)) {
        const char *name = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        const prop_t *p = prop_find(s, name);
        bool covered = p != NULL;
        if (p && !schema_match(p->schema, v)) {
            ok = false;
            if (!bad)
                return false;
            bad(ctx, name, FIELD_PROP, (size_t)(p - s->props), v);
        }
        for (size_t i = 0; i < s->npprops; i++) {
            if (!name_matches(s->pprops[i].re, name, bson_iter_key_len(&it)))
                continue;
            covered = true;
            if (!schema_match(s->pprops[i].schema, v)) {
                ok = false;
                if (!bad)
                    return false;
                bad(ctx, name, FIELD_PPROP, i, v);
            }
        }
        if (!covered && (s->addl_props == ADDL_FALSE ||
                         (s->addl_props == ADDL_SCHEMA && !schema_match(s->addl_props_schema, v)))) {
            ok = false;
            if (!bad)
                return false;
            bad(ctx, name, FIELD_ADDL, 0, v);
        }
    }
    return ok;
}

static bool check_deps(const schema_t *s, const bson_value_t *obj, size_t *at)
{
    for (size_t i = 0; i < s->ndeps; i++) {
        const dep_t *d = &s->deps[i];
        if (!has_field(obj, d->name))
            continue;
        bool ok = true;
        if (d->schema)
            ok = schema_match(d->schema, obj);
        for (size_t j = 0; ok && j < d->nfields; j++)
            ok = has_field(obj, d->fields[j]);
        if (!ok) {
            if (at)
                *at = i;
            return false;
        }
    }
    return true;
}

static bool check_object(const schema_t *s, const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_DOCUMENT)
        return true;
    size_t at;
    if (missing_required(s, v, 0, &at))
        return false;
    int64_t n = (s->min_props >= 0 || s->max_props >= 0) ? field_count(v) : 0;
    if ((s->min_props >= 0 && n < s->min_props) || (s->max_props >= 0 && n > s->max_props))
        return false;
    return check_fields(s, v, NULL, NULL) && check_deps(s, v, NULL);
}

/* The index of the first array item that breaks items/additionalItems, or -1. */
static int64_t bad_item(const schema_t *s, const bson_value_t *arr, bool *addl)
{
    bson_t d;
    bson_iter_t it;
    if (!value_as_doc(arr, &d) || !bson_iter_init(&it, &d))
        return -1;
    int64_t i = 0;
    for (; bson_iter_next(&it); i++) {
        const bson_value_t *v = bson_iter_value(&it);
        *addl = false;
        if (s->items && !schema_match(s->items, v))
            return i;
        if (!s->items_is_list)
            continue;
        if ((size_t)i < s->nitems_list) {
            if (!schema_match(s->items_list[i], v))
                return i;
            continue;
        }
        *addl = true;
        if (s->addl_items == ADDL_FALSE ||
            (s->addl_items == ADDL_SCHEMA && !schema_match(s->addl_items_schema, v)))
            return i;
    }
    return -1;
}

/* The index of the first item equal to an earlier one, or -1. */
static int64_t duplicate_item(const bson_value_t *arr)
{
    bson_t d;
    bson_iter_t it, prev;
    if (!value_as_doc(arr, &d) || !bson_iter_init(&it, &d))
        return -1;
    for (int64_t i = 0; bson_iter_next(&it); i++) {
        bson_iter_init(&prev, &d);
        for (int64_t j = 0; j < i && bson_iter_next(&prev); j++)
            if (unordered_equal(bson_iter_value(&prev), bson_iter_value(&it)))
                return i;
    }
    return -1;
}

static bool check_array(const schema_t *s, const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_ARRAY)
        return true;
    int64_t n = field_count(v);
    if ((s->min_items >= 0 && n < s->min_items) || (s->max_items >= 0 && n > s->max_items))
        return false;
    bool addl;
    if ((s->items || s->items_is_list) && bad_item(s, v, &addl) >= 0)
        return false;
    return !s->unique_items || duplicate_item(v) < 0;
}

/* The number of schemas of a list that v satisfies (stops counting at `stop`). */
static size_t count_matching(schema_t *const *l, size_t n, const bson_value_t *v, size_t stop)
{
    size_t c = 0;
    for (size_t i = 0; i < n && c < stop; i++)
        if (schema_match(l[i], v))
            c++;
    return c;
}

static bool check_logic(const schema_t *s, const bson_value_t *v)
{
    if (s->nall_of && count_matching(s->all_of, s->nall_of, v, SIZE_MAX) != s->nall_of)
        return false;
    if (s->nany_of && count_matching(s->any_of, s->nany_of, v, 1) == 0)
        return false;
    if (s->none_of && count_matching(s->one_of, s->none_of, v, 2) != 1)
        return false;
    return !s->not_schema || !schema_match(s->not_schema, v);
}

static bool schema_match(const schema_t *s, const bson_value_t *v)
{
    return check_type(s, v) && check_enum(s, v) && check_min(s, v) && check_max(s, v) &&
           check_mult(s, v) && check_min_len(s, v) && check_max_len(s, v) &&
           check_pattern(s, v) && check_object(s, v) && check_array(s, v) && check_logic(s, v);
}

bool bq__schema_match(const void *schema, const bson_value_t *v)
{
    return schema_match(schema, v);
}

/* ---------------------------------------------------------------- explanation */

/*
 * The failure of a schema, in the shape mongod gives errInfo.details (MongoDB 5.0+): an
 * array of rules not satisfied, each {operatorName: <keyword>, specifiedAs: {<keyword>:
 * <as written>}, reason, consideredValue, ...}, with nested rules under properties
 * (propertiesNotSatisfied: [{propertyName, details: [...]}]), items (details) and the
 * logical keywords (schemasNotSatisfied: [{index, details}]).
 */

typedef struct arr_builder {
    bson_t *arr;
    uint32_t n;
} arr_builder_t;

static void arr_doc_begin(arr_builder_t *a, bson_t *child)
{
    char key[16];
    snprintf(key, sizeof key, "%u", a->n++);
    bson_append_document_begin(a->arr, key, -1, child);
}

static void arr_append_utf8(arr_builder_t *a, const char *s)
{
    char key[16];
    snprintf(key, sizeof key, "%u", a->n++);
    bson_append_utf8(a->arr, key, -1, s, -1);
}

static void append_specified(bson_t *rule, const schema_t *s, const char *kw)
{
    bson_iter_t it;
    bson_t spec;
    bson_append_document_begin(rule, "specifiedAs", -1, &spec);
    if (bson_iter_init_find(&it, s->src, kw))
        bson_append_iter(&spec, kw, -1, &it);
    bson_append_document_end(rule, &spec);
}

/* Begins the rule for keyword `kw` in `rules`; the caller appends fields and ends it. */
static void rule_begin(arr_builder_t *rules, bson_t *rule, const schema_t *s, const char *kw,
                       bool specified)
{
    arr_doc_begin(rules, rule);
    bson_append_utf8(rule, "operatorName", -1, kw, -1);
    if (specified)
        append_specified(rule, s, kw);
}

/* A simple rule: operatorName, specifiedAs, reason, consideredValue. */
static void rule_simple(arr_builder_t *rules, const schema_t *s, const char *kw,
                        const char *reason, const bson_value_t *v)
{
    bson_t rule;
    rule_begin(rules, &rule, s, kw, true);
    bson_append_utf8(&rule, "reason", -1, reason, -1);
    bson_append_value(&rule, "consideredValue", -1, v);
    if (strcmp(kw, "type") == 0 || strcmp(kw, "bsonType") == 0)
        bson_append_utf8(&rule, "consideredType", -1, bq_type_name(v->value_type), -1);
    bson_append_document_end(rules->arr, &rule);
}

static void schema_explain(const schema_t *s, const bson_value_t *v, arr_builder_t *rules);

/* Appends {details: [rules of s against v]} into `into` under key "details". */
static void append_details(bson_t *into, const schema_t *s, const bson_value_t *v)
{
    bson_t arr;
    bson_append_array_begin(into, "details", -1, &arr);
    arr_builder_t sub = {&arr, 0};
    schema_explain(s, v, &sub);
    bson_append_array_end(into, &arr);
}

static void append_description(bson_t *into, const schema_t *s)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, s->src, "description") && BSON_ITER_HOLDS_UTF8(&it))
        bson_append_iter(into, "description", -1, &it);
}

typedef struct fields_ctx {
    const schema_t *s;
    arr_builder_t props, addl;
    bson_t props_arr, addl_arr;
} fields_ctx_t;

static void field_failed(void *p, const char *name, int which, size_t idx,
                         const bson_value_t *v)
{
    fields_ctx_t *c = p;
    if (which == FIELD_ADDL) {
        arr_append_utf8(&c->addl, name);
        return;
    }
    const schema_t *sub = which == FIELD_PROP ? c->s->props[idx].schema
                                              : c->s->pprops[idx].schema;
    bson_t d;
    arr_doc_begin(&c->props, &d);
    bson_append_utf8(&d, "propertyName", -1, name, -1);
    if (which == FIELD_PPROP)
        bson_append_utf8(&d, "regexMatched", -1, c->s->pprops[idx].pattern, -1);
    append_description(&d, sub);
    append_details(&d, sub, v);
    bson_append_document_end(c->props.arr, &d);
}

static void explain_object(const schema_t *s, const bson_value_t *v, arr_builder_t *rules)
{
    bson_t rule;
    if (s->nrequired) {
        bson_t missing;
        arr_builder_t m = {&missing, 0};
        bson_init(&missing);
        for (size_t i = 0; i < s->nrequired; i++)
            if (!has_field(v, s->required[i]))
                arr_append_utf8(&m, s->required[i]);
        if (m.n) {
            rule_begin(rules, &rule, s, "required", true);
            bson_append_array(&rule, "missingProperties", -1, &missing);
            bson_append_document_end(rules->arr, &rule);
        }
        bson_destroy(&missing);
    }
    int64_t n = field_count(v);
    const char *kws[] = {"minProperties", "maxProperties"};
    bool bad[] = {s->min_props >= 0 && n < s->min_props, s->max_props >= 0 && n > s->max_props};
    for (int i = 0; i < 2; i++) {
        if (!bad[i])
            continue;
        rule_begin(rules, &rule, s, kws[i], true);
        bson_append_utf8(&rule, "reason", -1, "specified number of properties was not satisfied",
                         -1);
        bson_append_int32(&rule, "numberOfProperties", -1, (int32_t)n);
        bson_append_document_end(rules->arr, &rule);
    }
    if (!check_fields(s, v, NULL, NULL)) {
        fields_ctx_t c = {.s = s};
        bson_init(&c.props_arr);
        bson_init(&c.addl_arr);
        c.props.arr = &c.props_arr;
        c.addl.arr = &c.addl_arr;
        check_fields(s, v, field_failed, &c);
        if (c.props.n) {
            rule_begin(rules, &rule, s, s->nprops ? "properties" : "patternProperties", false);
            bson_append_array(&rule, "propertiesNotSatisfied", -1, &c.props_arr);
            bson_append_document_end(rules->arr, &rule);
        }
        if (c.addl.n) {
            rule_begin(rules, &rule, s, "additionalProperties", true);
            bson_append_array(&rule, "additionalProperties", -1, &c.addl_arr);
            bson_append_document_end(rules->arr, &rule);
        }
        bson_destroy(&c.props_arr);
        bson_destroy(&c.addl_arr);
    }
    size_t at;
    if (!check_deps(s, v, &at)) {
        const dep_t *d = &s->deps[at];
        bson_t deps, one;
        rule_begin(rules, &rule, s, "dependencies", false);
        bson_append_array_begin(&rule, "failingDependencies", -1, &deps);
        bson_append_document_begin(&deps, "0", -1, &one);
        bson_append_utf8(&one, "conditionalProperty", -1, d->name, -1);
        if (d->schema) {
            append_details(&one, d->schema, v);
        } else {
            bson_t missing;
            arr_builder_t m = {&missing, 0};
            bson_append_array_begin(&one, "missingProperties", -1, &missing);
            for (size_t j = 0; j < d->nfields; j++)
                if (!has_field(v, d->fields[j]))
                    arr_append_utf8(&m, d->fields[j]);
            bson_append_array_end(&one, &missing);
        }
        bson_append_document_end(&deps, &one);
        bson_append_array_end(&rule, &deps);
        bson_append_document_end(rules->arr, &rule);
    }
}

static void explain_array(const schema_t *s, const bson_value_t *v, arr_builder_t *rules)
{
    bson_t rule;
    int64_t n = field_count(v);
    if ((s->min_items >= 0 && n < s->min_items) || (s->max_items >= 0 && n > s->max_items))
        rule_simple(rules, s, s->min_items >= 0 && n < s->min_items ? "minItems" : "maxItems",
                    "array did not match specified length", v);
    bool addl = false;
    int64_t bad = (s->items || s->items_is_list) ? bad_item(s, v, &addl) : -1;
    if (bad >= 0) {
        bson_iter_t it;
        bson_t arr;
        value_as_doc(v, &arr);
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)bad);
        bson_iter_init_find(&it, &arr, key);
        const bson_value_t *item = bson_iter_value(&it);
        rule_begin(rules, &rule, s, addl ? "additionalItems" : "items", addl);
        if (addl && s->addl_items == ADDL_FALSE) {
            bson_append_utf8(&rule, "reason", -1, "found additional items", -1);
            bson_append_value(&rule, "additionalItems", -1, item);
        } else {
            const schema_t *sub = addl ? s->addl_items_schema
                                       : s->items ? s->items : s->items_list[bad];
            bson_append_utf8(&rule, "reason", -1,
                             "At least one item did not match the sub-schema", -1);
            bson_append_int64(&rule, "itemIndex", -1, bad);
            append_details(&rule, sub, item);
        }
        bson_append_document_end(rules->arr, &rule);
    }
    int64_t dup = s->unique_items ? duplicate_item(v) : -1;
    if (dup >= 0) {
        bson_iter_t it;
        bson_t arr;
        char key[24];
        value_as_doc(v, &arr);
        snprintf(key, sizeof key, "%lld", (long long)dup);
        bson_iter_init_find(&it, &arr, key);
        rule_begin(rules, &rule, s, "uniqueItems", true);
        bson_append_utf8(&rule, "reason", -1, "found a duplicate item", -1);
        bson_append_value(&rule, "consideredValue", -1, v);
        bson_append_value(&rule, "duplicatedValue", -1, bson_iter_value(&it));
        bson_append_document_end(rules->arr, &rule);
    }
}

static void explain_list(const char *kw, schema_t *const *l, size_t n, const bson_value_t *v,
                         bool only_failing, const schema_t *s, arr_builder_t *rules)
{
    bson_t rule, arr;
    rule_begin(rules, &rule, s, kw, false);
    bson_append_array_begin(&rule, only_failing ? "schemasNotSatisfied" : "details", -1, &arr);
    arr_builder_t b = {&arr, 0};
    for (size_t i = 0; i < n; i++) {
        if (only_failing && schema_match(l[i], v))
            continue;
        bson_t d;
        arr_doc_begin(&b, &d);
        bson_append_int32(&d, "index", -1, (int32_t)i);
        append_details(&d, l[i], v);
        bson_append_document_end(&arr, &d);
    }
    bson_append_array_end(&rule, &arr);
    bson_append_document_end(rules->arr, &rule);
}

static void schema_explain(const schema_t *s, const bson_value_t *v, arr_builder_t *rules)
{
    if (!check_type(s, v))
        rule_simple(rules, s, s->has_type ? s->type_kw : "encrypt", "type did not match", v);
    if (!check_enum(s, v))
        rule_simple(rules, s, "enum", "value was not found in enum", v);
    if (!check_min(s, v))
        rule_simple(rules, s, "minimum", "comparison failed", v);
    if (!check_max(s, v))
        rule_simple(rules, s, "maximum", "comparison failed", v);
    if (!check_mult(s, v))
        rule_simple(rules, s, "multipleOf", "considered value is not a multiple of the "
                                            "specified value", v);
    if (!check_min_len(s, v))
        rule_simple(rules, s, "minLength", "specified string length was not satisfied", v);
    if (!check_max_len(s, v))
        rule_simple(rules, s, "maxLength", "specified string length was not satisfied", v);
    if (!check_pattern(s, v))
        rule_simple(rules, s, "pattern", "regular expression did not match", v);
    if (v->value_type == BSON_TYPE_DOCUMENT && !check_object(s, v))
        explain_object(s, v, rules);
    if (v->value_type == BSON_TYPE_ARRAY && !check_array(s, v))
        explain_array(s, v, rules);
    if (s->nall_of && count_matching(s->all_of, s->nall_of, v, SIZE_MAX) != s->nall_of)
        explain_list("allOf", s->all_of, s->nall_of, v, true, s, rules);
    if (s->nany_of && count_matching(s->any_of, s->nany_of, v, 1) == 0)
        explain_list("anyOf", s->any_of, s->nany_of, v, false, s, rules);
    if (s->none_of) {
        size_t c = count_matching(s->one_of, s->none_of, v, SIZE_MAX);
        if (c == 0) {
            explain_list("oneOf", s->one_of, s->none_of, v, false, s, rules);
        } else if (c > 1) {
            bson_t rule, arr;
            arr_builder_t b = {&arr, 0};
            rule_begin(rules, &rule, s, "oneOf", false);
            bson_append_utf8(&rule, "reason", -1, "more than one subschema matched", -1);
            bson_append_array_begin(&rule, "matchingSchemaIndexes", -1, &arr);
            for (size_t i = 0; i < s->none_of; i++) {
                if (schema_match(s->one_of[i], v)) {
                    char key[16];
                    snprintf(key, sizeof key, "%u", b.n++);
                    bson_append_int32(&arr, key, -1, (int32_t)i);
                }
            }
            bson_append_array_end(&rule, &arr);
            bson_append_document_end(rules->arr, &rule);
        }
    }
    if (s->not_schema && schema_match(s->not_schema, v)) {
        bson_t rule;
        rule_begin(rules, &rule, s, "not", false);
        bson_append_utf8(&rule, "reason", -1, "child expression matched", -1);
        bson_append_document_end(rules->arr, &rule);
    }
}

void bq__schema_explain(const void *schema, const bson_value_t *v, bson_t *out)
{
    const schema_t *s = schema;
    bson_iter_t it;
    bson_t arr;
    bson_append_utf8(out, "operatorName", -1, "$jsonSchema", -1);
    if (bson_iter_init_find(&it, s->src, "title") && BSON_ITER_HOLDS_UTF8(&it))
        bson_append_iter(out, "title", -1, &it);
    bson_append_array_begin(out, "schemaRulesNotSatisfied", -1, &arr);
    arr_builder_t rules = {&arr, 0};
    schema_explain(s, v, &rules);
    bson_append_array_end(out, &arr);
}

/* ---------------------------------------------------------------- any filter */

static void node_explain(const bq__mnode_t *n, const bson_value_t *doc, bson_t *out);

static const char *kind_name(enum bq__mkind k)
{
    switch (k) {
    case BQ__M_AND:
        return "$and";
    case BQ__M_OR:
        return "$or";
    case BQ__M_NOR:
        return "$nor";
    case BQ__M_NOT:
        return "$not";
    case BQ__M_TRUE:
        return "$alwaysTrue";
    case BQ__M_FALSE:
        return "$alwaysFalse";
    case BQ__M_EXPR:
        return "$expr";
    case BQ__M_SCHEMA:
        return "$jsonSchema";
    case BQ__M_LEAF:
        break;
    }
    return "$eq";
}

/* A leaf's description: operatorName, specifiedAs {path: {op: arg}}, reason and the first
 * value found at the path (consideredValue), as mongod describes a failed comparison. */
static void leaf_explain(const bq__mnode_t *n, const bson_value_t *doc, bson_t *out)
{
    bson_append_utf8(out, "operatorName", -1, n->op->name, -1);
    if (n->path && n->arg.value_type != BSON_TYPE_EOD) {
        bson_t spec, ops;
        bson_append_document_begin(out, "specifiedAs", -1, &spec);
        bson_append_document_begin(&spec, n->path, -1, &ops);
        bson_append_value(&ops, n->op->name, -1, &n->arg);
        bson_append_document_end(&spec, &ops);
        bson_append_document_end(out, &spec);
    }
    bson_t d;
    bson_value_t v;
    bool found = doc->value_type == BSON_TYPE_DOCUMENT &&
                 bson_init_static(&d, doc->value.v_doc.data, doc->value.v_doc.data_len) &&
                 n->path && bq_path_get(&d, n->path, &v);
    if (!found) {
        bson_append_utf8(out, "reason", -1, n->negate ? "field was present" : "field was missing",
                         -1);
        return;
    }
    const char *reason = "comparison failed";
    if (strcmp(n->op->name, "$type") == 0)
        reason = "type did not match";
    else if (strcmp(n->op->name, "$regex") == 0)
        reason = "regular expression did not match";
    else if (strcmp(n->op->name, "$exists") == 0)
        reason = n->negate ? "path had value" : "path does not exist";
    bson_append_utf8(out, "reason", -1, reason, -1);
    bson_append_value(out, "consideredValue", -1, &v);
    if (strcmp(n->op->name, "$type") == 0)
        bson_append_utf8(out, "consideredType", -1, bq_type_name(v.value_type), -1);
}

static void clauses_explain(const bq__mnode_t *n, const bson_value_t *doc, bson_t *out,
                            bool failing)
{
    bson_t arr;
    arr_builder_t b = {&arr, 0};
    bson_append_utf8(out, "operatorName", -1, kind_name(n->kind), -1);
    bson_append_array_begin(out, failing ? "clausesNotSatisfied" : "clausesSatisfied", -1, &arr);
    for (size_t i = 0; i < n->nkids; i++) {
        if (bq__mnode_eval(n->kids[i], doc) != failing) {
            bson_t d, det;
            arr_doc_begin(&b, &d);
            bson_append_int32(&d, "index", -1, (int32_t)i);
            bson_append_document_begin(&d, "details", -1, &det);
            node_explain(n->kids[i], doc, &det);
            bson_append_document_end(&d, &det);
            bson_append_document_end(&arr, &d);
        }
    }
    bson_append_array_end(out, &arr);
}

static void node_explain(const bq__mnode_t *n, const bson_value_t *doc, bson_t *out)
{
    switch (n->kind) {
    case BQ__M_AND:
        /* one clause reads as itself, several as $and (an implicit top-level $and too) */
        if (n->nkids == 1) {
            node_explain(n->kids[0], doc, out);
            return;
        }
        clauses_explain(n, doc, out, true);
        return;
    case BQ__M_OR:
        clauses_explain(n, doc, out, true);
        return;
    case BQ__M_NOR:
        clauses_explain(n, doc, out, false);
        return;
    case BQ__M_NOT: {
        bson_t det;
        bson_append_utf8(out, "operatorName", -1, "$not", -1);
        bson_append_document_begin(out, "details", -1, &det);
        bson_append_utf8(&det, "reason", -1, "child expression matched", -1);
        bson_append_document_end(out, &det);
        return;
    }
    case BQ__M_SCHEMA:
        bq__schema_explain(n->data, doc, out);
        return;
    case BQ__M_EXPR:
        bson_append_utf8(out, "operatorName", -1, "$expr", -1);
        if (n->arg.value_type != BSON_TYPE_EOD) {
            bson_t spec;
            bson_append_document_begin(out, "specifiedAs", -1, &spec);
            bson_append_value(&spec, "$expr", -1, &n->arg);
            bson_append_document_end(out, &spec);
        }
        bson_append_utf8(out, "reason", -1, "expression did not match", -1);
        bson_append_bool(out, "expressionResult", -1, false);
        return;
    case BQ__M_TRUE:
    case BQ__M_FALSE:
        bson_append_utf8(out, "operatorName", -1, kind_name(n->kind), -1);
        return;
    case BQ__M_LEAF:
        leaf_explain(n, doc, out);
        return;
    }
}

void bq__match_explain_root(const bq__mnode_t *root, const bson_t *doc, bson_t *details)
{
    bson_value_t v;
    v.value_type = BSON_TYPE_DOCUMENT;
    v.value.v_doc.data = (uint8_t *)bson_get_data(doc);
    v.value.v_doc.data_len = doc->len;
    bson_init(details);
    node_explain(root, &v, details);
}
