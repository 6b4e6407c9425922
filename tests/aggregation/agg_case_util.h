/*
 * agg_case_util.h: what the data-driven aggregation tests share: reading a file of
 * Extended JSON cases (hiding "$type" keys from libbson's legacy-binary parsing and
 * restoring them), and strict comparison of values (same BSON type at every level, NaN
 * equal to NaN, same field names in order). Static functions, included by each test file.
 * What the fields of a case mean (pipeline, let, collation, result, ...) is each runner's
 * header: test_agg_pipeline.c for stages/, test_agg_expr.c for expr/.
 */
#ifndef AGG_CASE_UTIL_H
#define AGG_CASE_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bq.h"

static inline bool strict_equal(const bson_value_t *a, const bson_value_t *b);

static inline bool strict_iter_equal(const bson_value_t *a, const bson_value_t *b, bool keys)
{
    bson_iter_t ia, ib;
    if (!bson_iter_init_from_data(&ia, a->value.v_doc.data, a->value.v_doc.data_len) ||
        !bson_iter_init_from_data(&ib, b->value.v_doc.data, b->value.v_doc.data_len))
        return false;
    for (;;) {
        bool na = bson_iter_next(&ia), nb = bson_iter_next(&ib);
        if (na != nb)
            return false;
        if (!na)
            return true;
        if (keys && strcmp(bson_iter_key(&ia), bson_iter_key(&ib)) != 0)
            return false;
        bson_value_t va = *bson_iter_value(&ia), vb = *bson_iter_value(&ib);
        if (!strict_equal(&va, &vb))
            return false;
    }
}

static inline bool strict_equal(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type != b->value_type)
        return false;
    switch (a->value_type) {
    case BSON_TYPE_EOD:
        return true;
    case BSON_TYPE_DOUBLE:
        if (isnan(a->value.v_double) || isnan(b->value.v_double))
            return isnan(a->value.v_double) && isnan(b->value.v_double);
        return a->value.v_double == b->value.v_double;
    case BSON_TYPE_DOCUMENT:
        return strict_iter_equal(a, b, true);
    case BSON_TYPE_ARRAY:
        return strict_iter_equal(a, b, false);
    default:
        return bq_value_compare(a, b) == 0;
    }
}

static inline char *value_json(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_EOD)
        return bson_strdup("<missing>");
    bson_t d = BSON_INITIALIZER;
    bson_append_value(&d, "v", 1, v);
    char *s = bson_as_canonical_extended_json(&d, NULL);
    bson_destroy(&d);
    return s;
}

#define TYPE_ALIAS "$__agg_type"

/* Copies src into dst, renaming TYPE_ALIAS keys and string values back to "$type" at
 * every level. */
static inline void rename_type_keys(const bson_t *src, bson_t *dst, bool array)
{
    bson_iter_t it;
    bson_iter_init(&it, src);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!array && strcmp(k, TYPE_ALIAS) == 0)
            k = "$type";
        if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            bool is_arr = BSON_ITER_HOLDS_ARRAY(&it);
            uint32_t len;
            const uint8_t *data;
            if (is_arr)
                bson_iter_array(&it, &len, &data);
            else
                bson_iter_document(&it, &len, &data);
            bson_t sub, child;
            bson_init_static(&sub, data, len);
            if (is_arr)
                bson_append_array_begin(dst, k, -1, &child);
            else
                bson_append_document_begin(dst, k, -1, &child);
            rename_type_keys(&sub, &child, is_arr);
            if (is_arr)
                bson_append_array_end(dst, &child);
            else
                bson_append_document_end(dst, &child);
        } else if (BSON_ITER_HOLDS_UTF8(&it) && !strcmp(bson_iter_utf8(&it, NULL), TYPE_ALIAS)) {
            /* the string value "$type" (a field path) was hidden too: restore it */
            BSON_APPEND_UTF8(dst, k, "$type");
        } else {
            bson_append_value(dst, k, -1, bson_iter_value(&it));
        }
    }
}

/* The file's text with every "$type" key replaced by TYPE_ALIAS. */
static inline char *read_case_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    bson_string_t *s = bson_string_new("");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
        buf[n] = '\0';
        bson_string_append(s, buf);
    }
    fclose(f);
    bson_string_t *o = bson_string_new("");
    const char *p = s->str, *hit;
    while ((hit = strstr(p, "\"$type\""))) {
        char *head = bson_strndup(p, (size_t)(hit - p));
        bson_string_append(o, head);
        bson_free(head);
        bson_string_append(o, "\"" TYPE_ALIAS "\"");
        p = hit + 7;
    }
    bson_string_append(o, p);
    bson_string_free(s, true);
    *len = o->len;
    return bson_string_free(o, false);
}


/* Strict equality of two documents. */
static inline bool strict_doc_equal(const bson_t *a, const bson_t *b)
{
    bson_value_t va = {.value_type = BSON_TYPE_DOCUMENT}, vb = {.value_type = BSON_TYPE_DOCUMENT};
    va.value.v_doc.data = (uint8_t *)bson_get_data(a);
    va.value.v_doc.data_len = a->len;
    vb.value.v_doc.data = (uint8_t *)bson_get_data(b);
    vb.value.v_doc.data_len = b->len;
    return strict_equal(&va, &vb);
}

/* Case statistics of one file or of a whole folder. */
typedef struct case_stats {
    int run, failed, skipped;
} case_stats_t;

/* Runs one case: counts it in *st (run, failed or skipped). idx counts from 1. */
typedef void (*case_fn)(const char *file, int idx, const bson_t *c, case_stats_t *st);

static inline int case_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs fn over every case of every .json file of the folder `sub` next to the source
 * file `src` (pass __FILE__), files in name order, printing a line per file; a JSON
 * syntax error counts as a failed case. Returns the folder's totals; run is -1 when the
 * folder cannot be read. */
static inline case_stats_t run_case_folder(const char *src, const char *sub, case_fn fn)
{
    case_stats_t total = {0, 0, 0};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", src);
    char *slash = strrchr(dir, '/');
    DIR *d = NULL;
    if (slash) {
        snprintf(slash + 1, sizeof dir - (size_t)(slash + 1 - dir), "%s", sub);
        d = opendir(dir);
    }
    if (!d) {
        fprintf(stderr, "cannot open the case folder %s next to %s\n", sub, src);
        total.run = -1;
        return total;
    }
    char *names[512];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0)
            names[n++] = bson_strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], case_name_cmp);
    for (int i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        case_stats_t st = {0, 0, 0};
        size_t len;
        char *text = read_case_file(path, &len);
        if (!text) {
            fprintf(stderr, "FAIL cannot read %s\n", path);
            st.failed++;
        } else {
            bson_json_reader_t *r = bson_json_data_reader_new(false, 0);
            bson_json_data_reader_ingest(r, (const uint8_t *)text, len);
            bson_t raw = BSON_INITIALIZER;
            bson_error_t jerr;
            int rc, idx = 0;
            while ((rc = bson_json_reader_read(r, &raw, &jerr)) == 1) {
                bson_t c = BSON_INITIALIZER;
                rename_type_keys(&raw, &c, false);
                fn(names[i], ++idx, &c, &st);
                bson_destroy(&c);
                bson_reinit(&raw);
            }
            if (rc < 0) {
                fprintf(stderr, "FAIL %s: JSON error after case %d: %s\n", names[i], idx,
                        jerr.message);
                st.failed++;
            }
            bson_destroy(&raw);
            bson_json_reader_destroy(r);
            bson_free(text);
        }
        printf("%-28s %5d cases, %d failed, %d skipped\n", names[i], st.run, st.failed,
               st.skipped);
        total.run += st.run;
        total.failed += st.failed;
        total.skipped += st.skipped;
        bson_free(names[i]);
    }
    return total;
}

#endif
