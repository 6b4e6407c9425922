/*
 * agg_stage_basic.c: the basic family of pipeline stages (see agg_pipeline.h) and its
 * table, agg__stages_basic. This file holds the stages that reshape or reorder a stream:
 * $replaceRoot / $replaceWith, $sort, $limit, $skip, $count, $unwind, $sample, and the
 * refusals of stages NEDB does not run. $project / $addFields / $set / $unset live in
 * agg_stage_project.c; $documents, $redact, $facet, $collStats, $indexStats and $trace in
 * agg_stage_misc.c.
 *
 * Streaming stages pull one document at a time. $sort and $sample buffer their input and
 * count its bytes against the run's memory limit (agg_mem_charge, error 292). A $limit
 * that reads from a $sort (directly or through a $skip) tells the sort to keep only the
 * top skip + limit documents, as mongod coalesces them, so memory stays bounded.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg_expr_int.h"
#include "agg_stage_basic_int.h"
#include "bq_sort.h"

/* ================================================================ $replaceRoot, $replaceWith */

typedef struct replace_state {
    agg_expr_t *e;
    const char *what; /* "newRoot" or "replacement document" */
} replace_state_t;

static void replace_free(void *state)
{
    replace_state_t *s = state;
    if (s) {
        agg_expr_destroy(s->e);
        free(s);
    }
}

static bool replace_make(const bson_value_t *expr, agg_parse_t *pc, const char *what,
                         void **state, bq_error_t *err)
{
    agg_expr_t *e = agg_expr_compile(expr, pc->scope, err);
    if (!e)
        return false;
    replace_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->e = e;
    s->what = what;
    *state = s;
    return true;
}

static bool replace_root_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                               bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40229,
                     "expected an object as specification for $replaceRoot stage, got %s",
                     agg__type_name(spec));
        return false;
    }
    bson_iter_t it;
    agg__iter_init(&it, spec);
    const bson_value_t *root = NULL;
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "newRoot") != 0) {
            bq_error_set(err, 40415, "BSON field '$replaceRoot.%s' is an unknown field.",
                         bson_iter_key(&it));
            return false;
        }
        root = bson_iter_value(&it);
    }
    if (!root) {
        bq_error_set(err, 40414, "BSON field '$replaceRoot.newRoot' is missing but a "
                                 "required field");
        return false;
    }
    bson_value_t r = *root;
    return replace_make(&r, pc, "newRoot", state, err);
}

static bool replace_with_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                               bq_error_t *err)
{
    return replace_make(spec, pc, "replacement document", state, err);
}

typedef struct replace_iter {
    agg_iter_t base;
    const replace_state_t *s;
} replace_iter_t;

static int replace_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    const replace_state_t *s = ((replace_iter_t *)it)->s;
    bson_t *doc;
    int r = agg_iter_next(it->input, &doc, err);
    if (r <= 0)
        return r;
    agg_env_set_root(&it->run->env, doc);
    bson_value_t v;
    bool ok = agg_expr_eval(s->e, &it->run->env, &v, err);
    if (ok && v.value_type != BSON_TYPE_DOCUMENT) {
        char *vj = NULL, *dj = bson_as_relaxed_extended_json(doc, NULL);
        if (v.value_type == BSON_TYPE_EOD) {
            vj = bson_strdup("MISSING");
        } else {
            bson_t tmp = BSON_INITIALIZER;
            agg_value_append(&tmp, "v", 1, &v);
            char *tj = bson_as_relaxed_extended_json(&tmp, NULL);
            /* strip the {"v" : ...} wrapper */
            const char *colon = strchr(tj, ':');
            size_t l = strlen(tj);
            vj = bson_strndup(colon ? colon + 2 : tj,
                              colon ? l - (size_t)(colon + 2 - tj) - 2 : l);
            bson_free(tj);
            bson_destroy(&tmp);
        }
        bq_error_set(err, 40228,
                     "'%s' must evaluate to an object, but resulting value was: %s. Type of "
                     "resulting value: '%s'. Input document: %s",
                     s->what, vj, agg__type_name(&v), dj);
        bson_free(vj);
        bson_free(dj);
        ok = false;
    }
    bson_t *res = NULL;
    if (ok)
        res = bson_new_from_data(v.value.v_doc.data, v.value.v_doc.data_len);
    agg_value_cleanup(&v);
    bson_destroy(doc);
    if (!ok)
        return -1;
    *out = res ? res : bson_new();
    return 1;
}

static agg_iter_t *replace_open(const void *state, agg_iter_t *input, agg_run_t *run,
                                bq_error_t *err)
{
    (void)err;
    replace_iter_t *ri = calloc(1, sizeof *ri);
    if (!ri)
        abort();
    ri->base.next = replace_next;
    ri->base.close = agg__simple_close;
    ri->base.input = input;
    ri->base.run = run;
    ri->s = state;
    return &ri->base;
}

/* ================================================================ $limit, $skip */

/* An integral number that fits int64 (mongod's parseIntegerElementToNonNegativeLong). */
static bool parse_count(const bson_value_t *spec, const char *stage, int code, int64_t *n,
                        bq_error_t *err)
{
    bool exact = false;
    if (!bq_num_is_number(spec)) {
        bq_error_set(err, code, "invalid argument to %s stage: Expected an integer: %s: %s",
                     stage, stage, agg__type_name(spec));
        return false;
    }
    if (!bq_num_to_int64(spec, n, &exact) || !exact) {
        bq_error_set(err, code,
                     "invalid argument to %s stage: Expected an integer value for %s",
                     stage, stage);
        return false;
    }
    if (*n < 0) {
        bq_error_set(err, code,
                     "invalid argument to %s stage: Expected a non-negative number in: "
                     "%s: %lld",
                     stage, stage, (long long)*n);
        return false;
    }
    return true;
}

static void int_free(void *state)
{
    free(state);
}

static bool limit_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    (void)pc;
    int64_t n;
    if (!parse_count(spec, "$limit", 5107201, &n, err))
        return false;
    if (n == 0) {
        bq_error_set(err, 15958, "the limit must be positive");
        return false;
    }
    int64_t *s = malloc(sizeof *s);
    if (!s)
        abort();
    *s = n;
    *state = s;
    return true;
}

static bool skip_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                       bq_error_t *err)
{
    (void)pc;
    int64_t n;
    if (!parse_count(spec, "$skip", 5107200, &n, err))
        return false;
    int64_t *s = malloc(sizeof *s);
    if (!s)
        abort();
    *s = n;
    *state = s;
    return true;
}

typedef struct count_iter {
    agg_iter_t base;
    int64_t n, seen;
} count_iter_t;

static int limit_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    count_iter_t *ci = (count_iter_t *)it;
    if (ci->seen >= ci->n)
        return 0;
    int r = agg_iter_next(it->input, out, err);
    if (r > 0)
        ci->seen++;
    return r;
}

static int skip_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    count_iter_t *ci = (count_iter_t *)it;
    for (;;) {
        int r = agg_iter_next(it->input, out, err);
        if (r <= 0 || ci->seen >= ci->n)
            return r;
        ci->seen++;
        bson_destroy(*out);
        *out = NULL;
    }
}

static void sort_set_limit(agg_iter_t *it, int64_t k);
static bool is_sort_iter(const agg_iter_t *it);

static agg_iter_t *count_iter_new(agg_iter_t *input, agg_run_t *run, int64_t n,
                                  int (*next)(agg_iter_t *, bson_t **, bq_error_t *))
{
    count_iter_t *ci = calloc(1, sizeof *ci);
    if (!ci)
        abort();
    ci->base.next = next;
    ci->base.close = agg__simple_close;
    ci->base.input = input;
    ci->base.run = run;
    ci->n = n;
    return &ci->base;
}

static agg_iter_t *limit_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    (void)err;
    int64_t n = *(const int64_t *)state;
    /* $sort + $limit (+ $skip between): the sort keeps only what can come out */
    if (is_sort_iter(input)) {
        sort_set_limit(input, n);
    } else if (input->next == skip_next && is_sort_iter(input->input)) {
        int64_t skip = ((count_iter_t *)input)->n;
        if (skip <= INT64_MAX - n)
            sort_set_limit(input->input, skip + n);
    }
    return count_iter_new(input, run, n, limit_next);
}

static agg_iter_t *skip_open(const void *state, agg_iter_t *input, agg_run_t *run,
                             bq_error_t *err)
{
    (void)err;
    return count_iter_new(input, run, *(const int64_t *)state, skip_next);
}

/* ================================================================ $sort */

static bool sort_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                       bq_error_t *err)
{
    (void)pc;
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 15973, "the $sort key specification must be an object");
        return false;
    }
    if (agg__array_len(spec) == 0) {
        bq_error_set(err, 15976, "$sort stage must have at least one sort key");
        return false;
    }
    bson_t doc;
    if (!bson_init_static(&doc, spec->value.v_doc.data, spec->value.v_doc.data_len)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "$sort specification is not valid BSON");
        return false;
    }
    bson_iter_t it;
    bson_iter_init(&it, &doc);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "$natural") != 0 && !agg__field_path_check(k, err))
            return false;
    }
    bq_sort_t *s = bq_sort_compile(&doc, err);
    if (!s)
        return false;
    bq_sort_set_collation(s, pc->collation);
    *state = s;
    return true;
}

static void sort_free(void *state)
{
    bq_sort_destroy(state);
}

typedef struct sort_iter {
    agg_iter_t base;
    const bq_sort_t *s;
    bson_t **docs;
    size_t n, cap, pos;
    int64_t limit;   /* keep only the first `limit` (0: all) */
    int64_t used;    /* bytes charged */
    bool loaded;
} sort_iter_t;

static bool is_sort_iter(const agg_iter_t *it);

/* Sorts the buffer and drops what is past the limit. */
static bool sort_trim(sort_iter_t *si)
{
    if (!bq_sort_docs(si->s, (const bson_t **)si->docs, si->n))
        abort();
    if (si->limit > 0 && si->n > (size_t)si->limit) {
        for (size_t i = (size_t)si->limit; i < si->n; i++) {
            si->used -= si->docs[i]->len;
            bson_destroy(si->docs[i]);
        }
        si->n = (size_t)si->limit;
    }
    return true;
}

static int sort_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    sort_iter_t *si = (sort_iter_t *)it;
    if (!si->loaded) {
        si->loaded = true;
        for (uint64_t count = 0;; count++) {
            bson_t *d;
            int r = agg_iter_next(it->input, &d, err);
            if (r < 0)
                return -1;
            if (r == 0)
                break;
            if (si->n == si->cap) {
                si->cap = si->cap ? si->cap * 2 : 64;
                si->docs = realloc(si->docs, si->cap * sizeof *si->docs);
                if (!si->docs)
                    abort();
            }
            si->docs[si->n++] = d;
            if (!agg_mem_charge(it->run, &si->used, d->len, "$sort", err))
                return -1;
            if (si->limit > 0 && si->n >= 2 * (size_t)si->limit + 16)
                sort_trim(si);
            if ((count & 1023) == 1023 && agg_run_expired(it->run, err))
                return -1;
        }
        sort_trim(si);
    }
    if (si->pos >= si->n)
        return 0;
    *out = si->docs[si->pos];
    si->docs[si->pos++] = NULL;
    return 1;
}

static void sort_close(agg_iter_t *it)
{
    sort_iter_t *si = (sort_iter_t *)it;
    for (size_t i = si->pos; i < si->n; i++)
        bson_destroy(si->docs[i]);
    free(si->docs);
    agg_iter_close(it->input);
    free(si);
}

static bool is_sort_iter(const agg_iter_t *it)
{
    return it && it->next == sort_next;
}

static void sort_set_limit(agg_iter_t *it, int64_t k)
{
    sort_iter_t *si = (sort_iter_t *)it;
    if (si->limit == 0 || k < si->limit)
        si->limit = k;
}

static agg_iter_t *sort_open(const void *state, agg_iter_t *input, agg_run_t *run,
                             bq_error_t *err)
{
    (void)err;
    sort_iter_t *si = calloc(1, sizeof *si);
    if (!si)
        abort();
    si->base.next = sort_next;
    si->base.close = sort_close;
    si->base.input = input;
    si->base.run = run;
    si->s = state;
    return &si->base;
}

/* ================================================================ $count */

static bool count_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    (void)pc;
    if (spec->value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, 40156, "the count field must be a non-empty string");
        return false;
    }
    const char *name = spec->value.v_utf8.str;
    if (spec->value.v_utf8.len == 0) {
        bq_error_set(err, 40157, "the count field must be a non-empty string");
        return false;
    }
    if (name[0] == '$') {
        bq_error_set(err, 40158, "the count field cannot be a $-prefixed path");
        return false;
    }
    if (strlen(name) != spec->value.v_utf8.len) {
        bq_error_set(err, 40159, "the count field cannot contain a null byte");
        return false;
    }
    if (strchr(name, '.')) {
        bq_error_set(err, 40160, "the count field cannot contain '.'");
        return false;
    }
    *state = bson_strdup(name);
    return true;
}

static void str_free(void *state)
{
    bson_free(state);
}

typedef struct cnt_iter {
    agg_iter_t base;
    const char *name;
    bool done;
} cnt_iter_t;

static int cnt_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    cnt_iter_t *ci = (cnt_iter_t *)it;
    if (ci->done)
        return 0;
    ci->done = true;
    int64_t n = 0;
    for (;;) {
        bson_t *d;
        int r = agg_iter_next(it->input, &d, err);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        bson_destroy(d);
        n++;
        if ((n & 4095) == 0 && agg_run_expired(it->run, err))
            return -1;
    }
    if (n == 0)
        return 0; /* $group over no documents outputs nothing */
    bson_t *res = bson_new();
    if (n <= INT32_MAX)
        BSON_APPEND_INT32(res, ci->name, (int32_t)n);
    else
        BSON_APPEND_INT64(res, ci->name, n);
    *out = res;
    return 1;
}

static agg_iter_t *count_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    (void)err;
    cnt_iter_t *ci = calloc(1, sizeof *ci);
    if (!ci)
        abort();
    ci->base.next = cnt_next;
    ci->base.close = agg__simple_close;
    ci->base.input = input;
    ci->base.run = run;
    ci->name = state;
    return &ci->base;
}

/* ================================================================ $unwind */

typedef struct unwind_state {
    char **parts;
    int nparts;
    char *path;
    char **idx_parts; /* includeArrayIndex, NULL when not asked */
    int nidx;
    bool preserve;
} unwind_state_t;

static void unwind_free(void *state)
{
    unwind_state_t *s = state;
    if (!s)
        return;
    agg__path_free(s->parts, s->nparts);
    if (s->idx_parts)
        agg__path_free(s->idx_parts, s->nidx);
    bson_free(s->path);
    free(s);
}

static bool unwind_path(unwind_state_t *s, const char *path, bq_error_t *err)
{
    if (path[0] != '$') {
        bq_error_set(err, 28818,
                     "path option to $unwind stage should be prefixed with a '$': %s", path);
        return false;
    }
    if (!agg__field_path_check(path + 1, err))
        return false;
    s->path = bson_strdup(path + 1);
    s->parts = agg__path_split(path + 1, &s->nparts);
    return true;
}

static bool unwind_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                         bq_error_t *err)
{
    (void)pc;
    unwind_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    bool ok = true;
    if (spec->value_type == BSON_TYPE_UTF8) {
        ok = unwind_path(s, spec->value.v_utf8.str, err);
    } else if (spec->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t it;
        agg__iter_init(&it, spec);
        bool have_path = false;
        while (ok && bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            const bson_value_t *v = bson_iter_value(&it);
            if (!strcmp(k, "path")) {
                if (v->value_type != BSON_TYPE_UTF8) {
                    bq_error_set(err, 28808,
                                 "expected a string as the path for $unwind stage, got %s",
                                 agg__type_name(v));
                    ok = false;
                } else {
                    ok = !have_path || (bq_error_set(err, 28808, "path given twice"), false);
                    ok = ok && unwind_path(s, v->value.v_utf8.str, err);
                    have_path = true;
                }
            } else if (!strcmp(k, "includeArrayIndex")) {
                if (v->value_type != BSON_TYPE_UTF8 || v->value.v_utf8.len == 0) {
                    bq_error_set(err, 28810,
                                 "expected a non-empty string for the includeArrayIndex "
                                 " option to $unwind stage");
                    ok = false;
                } else if (v->value.v_utf8.str[0] == '$') {
                    bq_error_set(err, 28822,
                                 "includeArrayIndex option to $unwind stage should not be "
                                 "prefixed with a '$': %s",
                                 v->value.v_utf8.str);
                    ok = false;
                } else if ((ok = agg__field_path_check(v->value.v_utf8.str, err))) {
                    if (s->idx_parts)
                        agg__path_free(s->idx_parts, s->nidx);
                    s->idx_parts = agg__path_split(v->value.v_utf8.str, &s->nidx);
                }
            } else if (!strcmp(k, "preserveNullAndEmptyArrays")) {
                if (v->value_type != BSON_TYPE_BOOL) {
                    bq_error_set(err, 28809,
                                 "expected a boolean for the preserveNullAndEmptyArrays option "
                                 "to $unwind stage, got %s",
                                 agg__type_name(v));
                    ok = false;
                } else {
                    s->preserve = v->value.v_bool;
                }
            } else {
                bq_error_set(err, 28811, "unrecognized option to $unwind stage: %s", k);
                ok = false;
            }
        }
        if (ok && !have_path) {
            bq_error_set(err, 28812, "no path specified to $unwind stage");
            ok = false;
        }
    } else {
        bq_error_set(err, 15981,
                     "expected either a string or an object as specification for $unwind "
                     "stage, got %s",
                     agg__type_name(spec));
        ok = false;
    }
    if (!ok) {
        unwind_free(s);
        return false;
    }
    *state = s;
    return true;
}

typedef struct unwind_iter {
    agg_iter_t base;
    const unwind_state_t *s;
    bson_t *doc;        /* the document being unwound */
    bson_value_t arr;   /* its array (borrowed from doc) */
    bson_iter_t ai;
    int64_t idx;
} unwind_iter_t;

/* The value at the path through documents only (arrays stop the walk: missing). */
static bool unwind_get(const bson_t *doc, char *const *parts, int n, bson_value_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return false;
    for (int i = 0; i < n; i++) {
        if (!bson_iter_find(&it, parts[i]))
            return false;
        if (i == n - 1) {
            *out = *bson_iter_value(&it);
            return true;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            return false;
        bson_iter_t sub;
        bson_iter_recurse(&it, &sub);
        it = sub;
    }
    return false;
}

/* A copy of doc with the path set to v and the index field (when asked) set to idx. */
static bson_t *unwind_emit(const unwind_state_t *s, const bson_t *doc, const bson_value_t *v,
                           const bson_value_t *idx)
{
    bson_t *res = bson_new();
    agg__doc_set_path(bson_get_data(doc), doc->len, s->parts, s->nparts, v, res);
    if (s->idx_parts) {
        bson_t *res2 = bson_new();
        agg__doc_set_path(bson_get_data(res), res->len, s->idx_parts, s->nidx, idx, res2);
        bson_destroy(res);
        res = res2;
    }
    return res;
}

static int unwind_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    unwind_iter_t *ui = (unwind_iter_t *)it;
    const unwind_state_t *s = ui->s;
    bson_value_t null_v = {.value_type = BSON_TYPE_NULL};
    for (;;) {
        if (ui->doc) {
            if (bson_iter_next(&ui->ai)) {
                bson_value_t idx = {.value_type = BSON_TYPE_INT64};
                idx.value.v_int64 = ui->idx++;
                *out = unwind_emit(s, ui->doc, bson_iter_value(&ui->ai), &idx);
                return 1;
            }
            bson_destroy(ui->doc);
            ui->doc = NULL;
        }
        bson_t *doc;
        int r = agg_iter_next(it->input, &doc, err);
        if (r <= 0)
            return r;
        bson_value_t v;
        bool found = unwind_get(doc, s->parts, s->nparts, &v);
        if (found && v.value_type == BSON_TYPE_ARRAY) {
            bson_iter_t ai;
            if (bson_iter_init_from_data(&ai, v.value.v_doc.data, v.value.v_doc.data_len)) {
                bson_iter_t probe = ai;
                if (bson_iter_next(&probe)) {
                    ui->doc = doc;
                    /* re-find: the iterator must point into ui->doc, which is doc */
                    ui->ai = ai;
                    ui->idx = 0;
                    continue;
                }
            }
            /* an empty array */
            if (!s->preserve) {
                bson_destroy(doc);
                continue;
            }
            bson_value_t missing = {.value_type = BSON_TYPE_EOD};
            *out = unwind_emit(s, doc, &missing, &null_v);
            bson_destroy(doc);
            return 1;
        }
        if (!found || v.value_type == BSON_TYPE_NULL || v.value_type == BSON_TYPE_UNDEFINED) {
            if (!s->preserve) {
                bson_destroy(doc);
                continue;
            }
            if (!s->idx_parts) {
                *out = doc;
                return 1;
            }
            bson_t *res = bson_new();
            agg__doc_set_path(bson_get_data(doc), doc->len, s->idx_parts, s->nidx, &null_v,
                              res);
            bson_destroy(doc);
            *out = res;
            return 1;
        }
        /* a non-array value is unwound as itself, with a null index */
        if (!s->idx_parts) {
            *out = doc;
            return 1;
        }
        bson_t *res = bson_new();
        agg__doc_set_path(bson_get_data(doc), doc->len, s->idx_parts, s->nidx, &null_v, res);
        bson_destroy(doc);
        *out = res;
        return 1;
    }
}

static void unwind_close(agg_iter_t *it)
{
    unwind_iter_t *ui = (unwind_iter_t *)it;
    if (ui->doc)
        bson_destroy(ui->doc);
    agg_iter_close(it->input);
    bson_free(ui);
}

static agg_iter_t *unwind_open(const void *state, agg_iter_t *input, agg_run_t *run,
                               bq_error_t *err)
{
    (void)err;
    /* bson_iter_t is over-aligned: not calloc */
    unwind_iter_t *ui = BSON_ALIGNED_ALLOC0(unwind_iter_t);
    ui->base.next = unwind_next;
    ui->base.close = unwind_close;
    ui->base.input = input;
    ui->base.run = run;
    ui->s = state;
    return &ui->base;
}

/* ================================================================ $sample */

static bool sample_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                         bq_error_t *err)
{
    (void)pc;
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 28745, "the $sample stage specification must be an object");
        return false;
    }
    bson_iter_t it;
    agg__iter_init(&it, spec);
    bool have = false;
    int64_t size = 0;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "size") != 0) {
            bq_error_set(err, 28748, "unrecognized option to $sample: %s", k);
            return false;
        }
        if (!bq_num_is_number(v)) {
            bq_error_set(err, 28746, "size argument to $sample must be a number");
            return false;
        }
        double d = 0;
        bq_num_to_double(v, &d);
        if (d < 0) {
            bq_error_set(err, 28747, "size argument to $sample must not be negative");
            return false;
        }
        bool exact;
        if (!bq_num_to_int64(v, &size, &exact))
            size = INT64_MAX;
        have = true;
    }
    if (!have) {
        bq_error_set(err, 28749, "$sample stage must specify a size");
        return false;
    }
    int64_t *s = malloc(sizeof *s);
    if (!s)
        abort();
    *s = size;
    *state = s;
    return true;
}

typedef struct sample_iter {
    agg_iter_t base;
    int64_t size;
    bson_t **docs;
    size_t n, cap, pos;
    int64_t used;
    bool loaded;
    uint64_t rng;
} sample_iter_t;

static uint64_t sample_rand(sample_iter_t *si)
{
    uint64_t x = si->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    si->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static int sample_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    sample_iter_t *si = (sample_iter_t *)it;
    if (!si->loaded) {
        si->loaded = true;
        /* reservoir sampling: at most `size` documents are kept */
        uint64_t seen = 0;
        for (;;) {
            bson_t *d;
            int r = agg_iter_next(it->input, &d, err);
            if (r < 0)
                return -1;
            if (r == 0)
                break;
            seen++;
            if ((seen & 1023) == 0 && agg_run_expired(it->run, err)) {
                bson_destroy(d);
                return -1;
            }
            if (si->n < (uint64_t)si->size) {
                if (si->n == si->cap) {
                    si->cap = si->cap ? si->cap * 2 : 64;
                    si->docs = realloc(si->docs, si->cap * sizeof *si->docs);
                    if (!si->docs)
                        abort();
                }
                si->docs[si->n++] = d;
                if (!agg_mem_charge(it->run, &si->used, d->len, "$sample", err))
                    return -1;
                continue;
            }
            uint64_t j = sample_rand(si) % seen;
            if (j < si->n) {
                si->used += (int64_t)d->len - (int64_t)si->docs[j]->len;
                bson_destroy(si->docs[j]);
                si->docs[j] = d;
            } else {
                bson_destroy(d);
            }
        }
        /* random order */
        for (size_t i = si->n; i > 1; i--) {
            size_t j = (size_t)(sample_rand(si) % i);
            bson_t *t = si->docs[i - 1];
            si->docs[i - 1] = si->docs[j];
            si->docs[j] = t;
        }
    }
    if (si->pos >= si->n)
        return 0;
    *out = si->docs[si->pos];
    si->docs[si->pos++] = NULL;
    return 1;
}

static void sample_close(agg_iter_t *it)
{
    sample_iter_t *si = (sample_iter_t *)it;
    for (size_t i = si->pos; i < si->n; i++)
        bson_destroy(si->docs[i]);
    free(si->docs);
    agg_iter_close(it->input);
    free(si);
}

static agg_iter_t *sample_open(const void *state, agg_iter_t *input, agg_run_t *run,
                               bq_error_t *err)
{
    (void)err;
    sample_iter_t *si = calloc(1, sizeof *si);
    if (!si)
        abort();
    si->base.next = sample_next;
    si->base.close = sample_close;
    si->base.input = input;
    si->base.run = run;
    si->size = *(const int64_t *)state;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    si->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)si ^
              0x9e3779b97f4a7c15ULL;
    if (!si->rng)
        si->rng = 1;
    return &si->base;
}

/* ================================================================ $currentOp */

/* {$currentOp: {allUsers, idleConnections, idleCursors, idleSessions, localOps,
 * truncateOps, backtrace, targetAllNodes}}: the server's operations in progress, through
 * run->source->current_ops, on admin with {aggregate: 1} only (73 otherwise, as mongod).
 * Every option is a boolean (14 otherwise); NEDB has no users, so allUsers changes
 * nothing, and only idleConnections reaches the source. */
static bool current_op_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                             bq_error_t *err)
{
    static const char *const opts[] = {"allUsers",    "idleConnections", "idleCursors",
                                       "idleSessions", "localOps",        "truncateOps",
                                       "backtrace",   "targetAllNodes"};
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$currentOp options must be specified in an object, but found: %s",
                     bq_type_name(spec->value_type));
        return false;
    }
    bson_iter_t it;
    bool idle = false;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        size_t i = 0;
        while (i < sizeof opts / sizeof opts[0] && strcmp(k, opts[i]))
            i++;
        if (i == sizeof opts / sizeof opts[0]) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Unrecognized option '%s' in $currentOp stage.", k);
            return false;
        }
        if (!BSON_ITER_HOLDS_BOOL(&it)) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "The '%s' parameter of the $currentOp stage must be a boolean value, "
                         "but found: %s",
                         k, bq_type_name(bson_iter_type(&it)));
            return false;
        }
        if (!strcmp(k, "idleConnections"))
            idle = bson_iter_bool(&it);
    }
    if (pc->coll || !pc->db || strcmp(pc->db, "admin") != 0) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "$currentOp must be run against the 'admin' database with "
                     "{aggregate: 1}");
        return false;
    }
    bool *st = malloc(sizeof *st);
    if (!st)
        abort();
    *st = idle;
    *state = st;
    return true;
}

static agg_iter_t *current_op_open(const void *state, agg_iter_t *input, agg_run_t *run,
                                   bq_error_t *err)
{
    agg_iter_close(input);
    if (!run->source || !run->source->current_ops) {
        bq_error_set(err, BQ_ERR_NotImplemented,
                     "$currentOp needs the server's operations and none were given");
        return NULL;
    }
    bson_t **docs = NULL;
    size_t n = 0;
    if (!run->source->current_ops(run->source->ctx, *(const bool *)state, &docs, &n, err))
        return NULL;
    agg_iter_t *it = agg_iter_from_docs(run, docs, n);
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
    return it;
}

static void current_op_free(void *state)
{
    free(state);
}

/* ================================================================ refusals */

/* Stages mongod has that NEDB does not run. A standalone mongod refuses some of them with
 * its own code (change streams need a replica set: 40573); the rest answer 238. */
static bool refuse_parse(const char *name, int code, const char *why, bq_error_t *err)
{
    bq_error_set(err, code, "%s is not supported by NEDB: %s", name, why);
    return false;
}

#define REFUSE(fn, name, code, why)                                                       \
    static bool fn(const bson_value_t *spec, agg_parse_t *pc, void **state,               \
                   bq_error_t *err)                                                       \
    {                                                                                     \
        (void)spec;                                                                       \
        (void)pc;                                                                         \
        (void)state;                                                                      \
        return refuse_parse(name, code, why, err);                                        \
    }

REFUSE(refuse_change_stream, "$changeStream", 40573,
       "The $changeStream stage is only supported on replica sets")
REFUSE(refuse_list_sessions, "$listSessions", BQ_ERR_NotImplemented,
       "there is no config.system.sessions collection")
REFUSE(refuse_search, "$search", BQ_ERR_NotImplemented, "Atlas Search is not available")
REFUSE(refuse_search_meta, "$searchMeta", BQ_ERR_NotImplemented,
       "Atlas Search is not available")
REFUSE(refuse_vector_search, "$vectorSearch", BQ_ERR_NotImplemented,
       "Atlas Vector Search is not available")
REFUSE(refuse_geo_near, "$geoNear", BQ_ERR_NotImplemented, "geospatial indexes are not built")
REFUSE(refuse_plan_cache, "$planCacheStats", BQ_ERR_NotImplemented, "there is no plan cache")
REFUSE(refuse_list_search_indexes, "$listSearchIndexes", BQ_ERR_NotImplemented,
       "Atlas Search is not available")
REFUSE(refuse_list_sampled, "$listSampledQueries", BQ_ERR_NotImplemented,
       "query sampling is not available")
REFUSE(refuse_list_cached, "$listCatalog", BQ_ERR_NotImplemented,
       "the catalog is not listed through a pipeline")
REFUSE(refuse_shard_dist, "$shardedDataDistribution", BQ_ERR_NotImplemented,
       "NEDB is not sharded")
REFUSE(refuse_query_stats, "$queryStats", BQ_ERR_NotImplemented,
       "query statistics are not collected")

/* ================================================================ the family table */


#define FAMILY(name, x, flags) {name, flags, agg__##x##_parse, agg__##x##_open, agg__##x##_free}
#define REFUSED(name, fn) {name, 0, fn, NULL, NULL}
/* refused, and outside the Stable API V1 (under apiStrict that is the error) */
#define REFUSED_NOT_V1(name, fn) {name, AGG_STAGE_NOT_API_V1, fn, NULL, NULL}

const agg_stage_kind_t agg__stages_basic[] = {
    FAMILY("$project", project, 0),
    FAMILY("$addFields", add_fields, 0),
    FAMILY("$set", set, 0),
    FAMILY("$unset", unset, 0),
    {"$replaceRoot", 0, replace_root_parse, replace_open, replace_free},
    {"$replaceWith", 0, replace_with_parse, replace_open, replace_free},
    {"$sort", 0, sort_parse, sort_open, sort_free},
    {"$limit", 0, limit_parse, limit_open, int_free},
    {"$skip", 0, skip_parse, skip_open, int_free},
    {"$count", 0, count_parse, count_open, str_free},
    {"$unwind", 0, unwind_parse, unwind_open, unwind_free},
    {"$sample", 0, sample_parse, sample_open, int_free},
    FAMILY("$documents", documents, AGG_STAGE_FIRST | AGG_STAGE_GENERATOR),
    FAMILY("$redact", redact, 0),
    FAMILY("$facet", facet, AGG_STAGE_NO_FACET),
    FAMILY("$collStats", coll_stats, AGG_STAGE_FIRST | AGG_STAGE_GENERATOR | AGG_STAGE_NO_FACET),
    FAMILY("$indexStats", index_stats,
           AGG_STAGE_FIRST | AGG_STAGE_GENERATOR | AGG_STAGE_NO_FACET | AGG_STAGE_NOT_API_V1),
    FAMILY("$trace", trace, AGG_STAGE_NOT_API_V1), /* NEDB's own */
    REFUSED("$changeStream", refuse_change_stream),
    REFUSED_NOT_V1("$listSessions", refuse_list_sessions),
    FAMILY("$listLocalSessions", list_local_sessions,
           AGG_STAGE_FIRST | AGG_STAGE_GENERATOR | AGG_STAGE_NO_FACET | AGG_STAGE_NOT_API_V1),
    {"$currentOp", AGG_STAGE_FIRST | AGG_STAGE_GENERATOR | AGG_STAGE_NO_FACET |
     AGG_STAGE_NOT_API_V1, current_op_parse, current_op_open, current_op_free},
    REFUSED_NOT_V1("$search", refuse_search),
    REFUSED_NOT_V1("$searchMeta", refuse_search_meta),
    REFUSED_NOT_V1("$vectorSearch", refuse_vector_search),
    REFUSED("$geoNear", refuse_geo_near),
    REFUSED_NOT_V1("$planCacheStats", refuse_plan_cache),
    REFUSED_NOT_V1("$listSearchIndexes", refuse_list_search_indexes),
    REFUSED_NOT_V1("$listSampledQueries", refuse_list_sampled),
    REFUSED_NOT_V1("$listCatalog", refuse_list_cached),
    REFUSED_NOT_V1("$shardedDataDistribution", refuse_shard_dist),
    REFUSED_NOT_V1("$queryStats", refuse_query_stats),
    {NULL, 0, NULL, NULL, NULL},
};
