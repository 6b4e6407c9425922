/*
 * bq_update_doc.c: the mutable document an update is applied to (bq_update_int.h) and
 * the short value renderings mongod uses in update error messages.
 *
 * The document is a tree of nodes expanded only where the update goes, so untouched
 * subdocuments go to the output as the input's bytes. A node never owns its value: values
 * are borrowed from the input document or the compiled update, or are plain scalars.
 * Nothing here knows about operators.
 */
#include <stdlib.h>
#include <string.h>

#include "bq_update_int.h"

/* ---------------------------------------------------------------- mutable document */

bq__mnode_t *bq__mn_new(const char *key, const bson_value_t *v)
{
    bq__mnode_t *m = bson_malloc0(sizeof *m);
    m->key = key ? bson_strdup(key) : NULL;
    if (v)
        m->val = *v;
    else
        m->val.value_type = BSON_TYPE_NULL;
    return m;
}

bq__mnode_t *bq__mn_new_container(const char *key, bson_type_t type)
{
    bq__mnode_t *m = bq__mn_new(key, NULL);
    m->val.value_type = type;
    m->expanded = true;
    return m;
}

void bq__mn_clear_kids(bq__mnode_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        bq__mn_free(m->kids[i]);
    bson_free(m->kids);
    m->kids = NULL;
    m->n = m->cap = 0;
}

void bq__mn_free(bq__mnode_t *m)
{
    if (!m)
        return;
    bq__mn_clear_kids(m);
    bson_free(m->key);
    bson_free(m);
}

bool bq__mn_is_container(const bq__mnode_t *m)
{
    return m->val.value_type == BSON_TYPE_DOCUMENT || m->val.value_type == BSON_TYPE_ARRAY;
}

void bq__mn_insert(bq__mnode_t *m, size_t pos, bq__mnode_t *kid)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->kids = bson_realloc(m->kids, sizeof *m->kids * m->cap);
    }
    if (pos > m->n)
        pos = m->n;
    memmove(m->kids + pos + 1, m->kids + pos, sizeof *m->kids * (m->n - pos));
    m->kids[pos] = kid;
    m->n++;
}

bq__mnode_t *bq__mn_detach(bq__mnode_t *m, size_t pos)
{
    bq__mnode_t *k = m->kids[pos];
    memmove(m->kids + pos, m->kids + pos + 1, sizeof *m->kids * (m->n - pos - 1));
    m->n--;
    return k;
}

void bq__mn_expand(bq__mnode_t *m)
{
    if (m->expanded || !bq__mn_is_container(m))
        return;
    bson_t d;
    bson_iter_t it;
    bool arr = m->val.value_type == BSON_TYPE_ARRAY;
    m->expanded = true;
    if (!bson_init_static(&d, m->val.value.v_doc.data, m->val.value.v_doc.data_len) ||
        !bson_iter_init(&it, &d))
        return;
    while (bson_iter_next(&it))
        bq__mn_insert(m, m->n, bq__mn_new(arr ? NULL : bson_iter_key(&it),
                                          bson_iter_value(&it)));
}

ssize_t bq__mn_find(const bq__mnode_t *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->kids[i]->key && strcmp(m->kids[i]->key, key) == 0)
            return (ssize_t)i;
    return -1;
}

void bq__mn_set(bq__mnode_t *m, const bson_value_t *v)
{
    bq__mn_clear_kids(m);
    m->expanded = false;
    m->val = *v;
}

static void mn_build_kids(const bq__mnode_t *m, bson_t *dst)
{
    bool arr = m->val.value_type == BSON_TYPE_ARRAY;
    for (size_t i = 0; i < m->n; i++) {
        char ibuf[16];
        const char *k = m->kids[i]->key;
        if (arr) {
            bson_uint32_to_string((uint32_t)i, &k, ibuf, sizeof ibuf);
        }
        bq__mn_build(m->kids[i], dst, k);
    }
}

void bq__mn_build(const bq__mnode_t *m, bson_t *dst, const char *key)
{
    if (!m->expanded) {
        bson_append_value(dst, key, -1, &m->val);
        return;
    }
    bson_t child;
    if (m->val.value_type == BSON_TYPE_ARRAY) {
        bson_append_array_begin(dst, key, -1, &child);
        mn_build_kids(m, &child);
        bson_append_array_end(dst, &child);
    } else {
        bson_append_document_begin(dst, key, -1, &child);
        mn_build_kids(m, &child);
        bson_append_document_end(dst, &child);
    }
}

void bq__mn_value(const bq__mnode_t *m, bson_t *scratch, bson_value_t *out)
{
    bson_init(scratch);
    if (!m->expanded) {
        *out = m->val;
        return;
    }
    bq__mn_build(m, scratch, "v");
    bson_iter_t it;
    bson_iter_init_find(&it, scratch, "v");
    *out = *bson_iter_value(&it);
}

/* ---------------------------------------------------------------- messages */

static void fmt_append(char *buf, size_t size, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n >= size) {
        n = *len + 1 < size ? size - *len - 1 : 0;
    }
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

static void fmt_value_into(const bson_value_t *v, char *buf, size_t size, size_t *len,
                           int depth);

static void fmt_container(const bson_value_t *v, char *buf, size_t size, size_t *len,
                          int depth)
{
    bool arr = v->value_type == BSON_TYPE_ARRAY;
    bson_t d;
    bson_iter_t it;
    if (!bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        fmt_append(buf, size, len, arr ? "[]" : "{}");
        return;
    }
    bool first = true;
    fmt_append(buf, size, len, arr ? "[" : "{");
    while (bson_iter_next(&it)) {
        fmt_append(buf, size, len, first ? " " : ", ");
        first = false;
        if (!arr) {
            fmt_append(buf, size, len, bson_iter_key(&it));
            fmt_append(buf, size, len, ": ");
        }
        fmt_value_into(bson_iter_value(&it), buf, size, len, depth + 1);
    }
    fmt_append(buf, size, len, first ? (arr ? "]" : "}") : (arr ? " ]" : " }"));
}

static void fmt_value_into(const bson_value_t *v, char *buf, size_t size, size_t *len,
                           int depth)
{
    char tmp[128];
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        snprintf(tmp, sizeof tmp, "%d", v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->value.v_int64);
        break;
    case BSON_TYPE_DOUBLE: {
        double d = v->value.v_double;
        if (d == (double)(long long)d && d > -1e15 && d < 1e15) {
            snprintf(tmp, sizeof tmp, "%.1f", d);
        } else {
            /* the shortest form that reads back as the same double */
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(tmp, sizeof tmp, "%.*g", prec, d);
                if (strtod(tmp, NULL) == d)
                    break;
            }
        }
        break;
    }
    case BSON_TYPE_DECIMAL128: {
        char s[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, s);
        snprintf(tmp, sizeof tmp, "NumberDecimal(\"%s\")", s);
        break;
    }
    case BSON_TYPE_UTF8:
        fmt_append(buf, size, len, "\"");
        fmt_append(buf, size, len, v->value.v_utf8.str);
        fmt_append(buf, size, len, "\"");
        return;
    case BSON_TYPE_BOOL:
        snprintf(tmp, sizeof tmp, "%s", v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_NULL:
        snprintf(tmp, sizeof tmp, "null");
        break;
    case BSON_TYPE_UNDEFINED:
        snprintf(tmp, sizeof tmp, "undefined");
        break;
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(&v->value.v_oid, hex);
        snprintf(tmp, sizeof tmp, "ObjectId('%s')", hex);
        break;
    }
    case BSON_TYPE_DATE_TIME:
        snprintf(tmp, sizeof tmp, "new Date(%lld)", (long long)v->value.v_datetime);
        break;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        if (depth > 8) {
            snprintf(tmp, sizeof tmp, "...");
            break;
        }
        fmt_container(v, buf, size, len, depth);
        return;
    default: {
        bson_t b = BSON_INITIALIZER;
        bson_append_value(&b, "v", 1, v);
        char *json = bson_as_relaxed_extended_json(&b, NULL);
        const char *colon = json ? strstr(json, " : ") : NULL;
        if (colon) {
            size_t vl = strlen(colon + 3);
            snprintf(tmp, sizeof tmp, "%.*s", (int)(vl >= 2 ? vl - 2 : vl), colon + 3);
        } else {
            tmp[0] = '\0';
        }
        bson_free(json);
        bson_destroy(&b);
        break;
    }
    }
    fmt_append(buf, size, len, tmp);
}

void bq__upd_fmt_value(const bson_value_t *v, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    fmt_value_into(v, buf, size, &len, 0);
}

void bq__upd_fmt_id(const bq__uctx_t *c, char *buf, size_t size)
{
    bson_iter_t it;
    if (c->doc && bson_iter_init_find(&it, c->doc, "_id")) {
        char v[256];
        bq__upd_fmt_value(bson_iter_value(&it), v, sizeof v);
        snprintf(buf, size, "{_id: %s}", v);
    } else {
        snprintf(buf, size, "{}");
    }
}

void bq__upd_fmt_node(const bq__mnode_t *m, const char *key, char *buf, size_t size)
{
    bson_t scratch;
    bson_value_t v;
    char vb[256];
    bq__mn_value(m, &scratch, &v);
    bq__upd_fmt_value(&v, vb, sizeof vb);
    bson_destroy(&scratch);
    snprintf(buf, size, "{%s: %s}", key, vb);
}
