/*
 * agg_window_densify.c: the $densify stage of the window family, MongoDB 7.0 semantics:
 *
 *   {$densify: {field, partitionByFields: [...], range: {step, bounds, unit}}}
 *
 * Reads its whole input (charged to the run's memory limit), sorts it by the partition
 * fields and the field (only by the field for bounds "full", as mongod's desugared $sort
 * does) and adds, in every partition, a document for every value of the series
 * lo, lo + step, lo + 2 step, ... that no document of the partition has:
 *   bounds [lo, hi]     the series below hi (hi excluded); documents outside pass through
 *   "full"              lo and hi are the smallest and largest values of the whole input
 *   "partition"         the same per partition
 * A generated document holds the partition fields and the field, nothing else. Documents
 * whose field is null or missing pass through unchanged. Dates step by `unit` ($dateAdd
 * arithmetic in UTC); numbers add step (int + int stays int, widening on overflow).
 *
 * Errors: 5733401 step not a positive number, 6586400 fractional step with a unit, 5733403
 * bounds array not of two, 5733402 descending bounds, 5733409 numeric bounds with a unit,
 * 5733406 / 5733405 mixed bounds, 5733410 date bounds without a unit, 5946800 bounds of
 * another type, 5946802 an unknown bounds string, 5733404 bounds of another type, 5733408
 * "partition" without partitionByFields, 5733201 a field value that is neither a number
 * nor a date, 5897900 more than 500,000 generated documents.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agg_expr_int.h"
#include "agg_window_int.h"

#define DENSIFY_MAX_DOCS 500000

enum { BOUNDS_FULL, BOUNDS_PARTITION, BOUNDS_EXPLICIT };

typedef struct densify_spec {
    char **parts;
    int nparts;
    agg_expr_t *field;
    int npf;
    char ***pf_parts;
    int *pf_nparts;
    agg_expr_t **pf;
    bson_value_t step;
    int unit; /* -1: numeric */
    int bounds;
    bson_value_t lo, hi;
} densify_spec_t;

void agg__densify_free(void *p)
{
    densify_spec_t *s = p;
    if (!s)
        return;
    agg__window_path_free(s->parts, s->nparts);
    agg_expr_destroy(s->field);
    for (int i = 0; i < s->npf; i++) {
        agg__window_path_free(s->pf_parts[i], s->pf_nparts[i]);
        agg_expr_destroy(s->pf[i]);
    }
    free(s->pf_parts);
    free(s->pf_nparts);
    free(s->pf);
    agg_value_cleanup(&s->step);
    agg_value_cleanup(&s->lo);
    agg_value_cleanup(&s->hi);
    free(s);
}

static bool path_expr(const char *path, agg_scope_t *scope, agg_expr_t **out, bq_error_t *err)
{
    size_t n = strlen(path);
    char *p = malloc(n + 2);
    if (!p)
        abort();
    p[0] = '$';
    memcpy(p + 1, path, n + 1);
    bool ok = agg__field_path_parse(p, n + 1, scope, out, err);
    free(p);
    return ok;
}

static bool parse_range(densify_spec_t *s, const bson_value_t *range, bq_error_t *err)
{
    bson_iter_t it;
    bson_value_t step = {0}, bounds = {0}, unit = {0};
    agg__iter_init(&it, range);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "step"))
            step = *bson_iter_value(&it);
        else if (!strcmp(k, "bounds"))
            bounds = *bson_iter_value(&it);
        else if (!strcmp(k, "unit"))
            unit = *bson_iter_value(&it);
        else {
            bq_error_set(err, 40415, "BSON field 'range.%s' is an unknown field.", k);
            return false;
        }
    }
    if (step.value_type == BSON_TYPE_EOD || bounds.value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 40414, "BSON field 'range.%s' is missing but a required field",
                     step.value_type == BSON_TYPE_EOD ? "step" : "bounds");
        return false;
    }
    double d;
    if (!bq_num_is_number(&step) || !bq_num_to_double(&step, &d) || !(d > 0)) {
        bq_error_set(err, 5733401,
                     "The step parameter in a range statement must be a strictly positive "
                     "numeric value");
        return false;
    }
    s->unit = -1;
    if (unit.value_type != BSON_TYPE_EOD) {
        if (unit.value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field 'range.unit' is the wrong type '%s', expected type "
                         "'string'",
                         agg__type_name(&unit));
            return false;
        }
        int64_t i;
        if (!agg__as_int64_exact(&step, &i)) {
            bq_error_set(err, 6586400,
                         "The step parameter in a range statement must be a whole number when "
                         "densifying a date range");
            return false;
        }
        if ((s->unit = agg__window_unit_parse(unit.value.v_utf8.str)) < 0) {
            bq_error_set(err, BQ_ERR_FailedToParse, "unknown time unit value: %s",
                         unit.value.v_utf8.str);
            return false;
        }
    }
    agg_value_copy(&step, &s->step);
    if (bounds.value_type == BSON_TYPE_UTF8) {
        if (!strcmp(bounds.value.v_utf8.str, "full"))
            s->bounds = BOUNDS_FULL;
        else if (!strcmp(bounds.value.v_utf8.str, "partition"))
            s->bounds = BOUNDS_PARTITION;
        else {
            bq_error_set(err, 5946802, "Bounds string must either be 'full' or 'partition'");
            return false;
        }
        return true;
    }
    if (bounds.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 5733404,
                     "The bounds in a range statement must be the string 'full', 'partition', "
                     "or an ascending array of two numbers or two dates");
        return false;
    }
    if (agg__array_len(&bounds) != 2) {
        bq_error_set(err, 5733403,
                     "A bounding array in a range statement must have exactly two elements");
        return false;
    }
    bson_iter_t ai;
    agg__iter_init(&ai, &bounds);
    bson_iter_next(&ai);
    agg_value_copy(bson_iter_value(&ai), &s->lo);
    bson_iter_next(&ai);
    agg_value_copy(bson_iter_value(&ai), &s->hi);
    s->bounds = BOUNDS_EXPLICIT;
    if (agg__value_compare(&s->lo, &s->hi) > 0) {
        bq_error_set(err, 5733402,
                     "A bounding array must be an ascending array of either two dates or two "
                     "numbers");
        return false;
    }
    if (bq_num_is_number(&s->lo)) {
        if (s->unit >= 0) {
            bq_error_set(err, 5733409, "Numeric bounds may not have unit parameter");
            return false;
        }
        if (!bq_num_is_number(&s->hi)) {
            bq_error_set(err, 5733406,
                         "A bounding array must contain either both dates or both numeric "
                         "types");
            return false;
        }
        return true;
    }
    if (s->lo.value_type == BSON_TYPE_DATE_TIME) {
        if (s->hi.value_type != BSON_TYPE_DATE_TIME) {
            bq_error_set(err, 5733405,
                         "A bounding array must contain either both dates or both numeric "
                         "types");
            return false;
        }
        if (s->unit < 0) {
            bq_error_set(err, 5733410, "A bounding array of dates must specify a unit");
            return false;
        }
        return true;
    }
    bq_error_set(err, 5946800, "Explicit bounds must be numeric or dates");
    return false;
}

bool agg__densify_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "The $densify stage specification must be an object, found %s",
                     agg__type_name(spec));
        return false;
    }
    densify_spec_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->unit = -1;
    bson_iter_t it;
    bson_value_t field = {0}, pfs = {0}, range = {0};
    agg__iter_init(&it, spec);
    bool ok = true;
    while (ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        bson_type_t want = BSON_TYPE_EOD;
        if (!strcmp(k, "field")) {
            field = *v;
            want = BSON_TYPE_UTF8;
        } else if (!strcmp(k, "partitionByFields")) {
            pfs = *v;
            want = BSON_TYPE_ARRAY;
        } else if (!strcmp(k, "range")) {
            range = *v;
            want = BSON_TYPE_DOCUMENT;
        } else {
            bq_error_set(err, 40415, "BSON field '$densify.%s' is an unknown field.", k);
            ok = false;
            break;
        }
        if (v->value_type != want) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '$densify.%s' is the wrong type '%s', expected type '%s'",
                         k, agg__type_name(v),
                         want == BSON_TYPE_UTF8    ? "string"
                         : want == BSON_TYPE_ARRAY ? "array"
                                                   : "object");
            ok = false;
        }
    }
    if (ok && (field.value_type == BSON_TYPE_EOD || range.value_type == BSON_TYPE_EOD)) {
        bq_error_set(err, 40414, "BSON field '$densify.%s' is missing but a required field",
                     field.value_type == BSON_TYPE_EOD ? "field" : "range");
        ok = false;
    }
    if (ok)
        ok = parse_range(s, &range, err);
    if (ok) {
        ok = (s->parts = agg__window_path_split(field.value.v_utf8.str, &s->nparts, err)) &&
             path_expr(field.value.v_utf8.str, pc->scope, &s->field, err);
    }
    if (ok && pfs.value_type == BSON_TYPE_ARRAY) {
        uint32_t n = agg__array_len(&pfs);
        s->pf_parts = calloc(n ? n : 1, sizeof *s->pf_parts);
        s->pf_nparts = calloc(n ? n : 1, sizeof *s->pf_nparts);
        s->pf = calloc(n ? n : 1, sizeof *s->pf);
        if (!s->pf_parts || !s->pf_nparts || !s->pf)
            abort();
        bson_iter_t ai;
        agg__iter_init(&ai, &pfs);
        while (ok && bson_iter_next(&ai)) {
            if (!BSON_ITER_HOLDS_UTF8(&ai)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field '$densify.partitionByFields.%s' is the wrong type "
                             "'%s', expected type 'string'",
                             bson_iter_key(&ai), agg__type_name(bson_iter_value(&ai)));
                ok = false;
                break;
            }
            const char *pf = bson_iter_utf8(&ai, NULL);
            int i = s->npf++;
            ok = (s->pf_parts[i] = agg__window_path_split(pf, &s->pf_nparts[i], err)) &&
                 path_expr(pf, pc->scope, &s->pf[i], err);
        }
    }
    if (ok && s->bounds == BOUNDS_PARTITION && s->npf == 0) {
        bq_error_set(err, 5733408,
                     "One cannot specify the bounds as 'partition' without specifying a "
                     "non-empty array of partitionByFields. You may have meant to specify "
                     "'full' bounds.");
        ok = false;
    }
    if (!ok) {
        agg__densify_free(s);
        return false;
    }
    *state = s;
    return true;
}

/* ================================================================ running */

typedef struct drow {
    bson_t *doc;
    bson_value_t *pv; /* npf partition values (EOD when missing) */
    bson_value_t v;   /* the field */
    size_t seq;
} drow_t;

typedef struct densify_iter {
    agg_iter_t base;
    const densify_spec_t *s;
    bool loaded;
    drow_t **out;
    size_t n, pos;
    int64_t mem;
    int64_t generated;
} densify_iter_t;

static int part_cmp(const densify_spec_t *s, const drow_t *a, const drow_t *b)
{
    for (int i = 0; i < s->npf; i++) {
        int c = agg__value_compare(&a->pv[i], &b->pv[i]);
        if (c)
            return c;
    }
    return 0;
}

static int drow_cmp(const densify_spec_t *s, bool by_part, const drow_t *a, const drow_t *b)
{
    int c = by_part ? part_cmp(s, a, b) : 0;
    if (!c)
        c = agg__value_compare(&a->v, &b->v);
    if (!c)
        c = a->seq < b->seq ? -1 : a->seq > b->seq;
    return c;
}

static void drows_sort(const densify_spec_t *s, bool by_part, drow_t **r, drow_t **tmp,
                       size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    drows_sort(s, by_part, r, tmp, h);
    drows_sort(s, by_part, r + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = drow_cmp(s, by_part, r[j], r[i]) < 0 ? r[j++] : r[i++];
    while (i < h)
        tmp[k++] = r[i++];
    while (j < n)
        tmp[k++] = r[j++];
    memcpy(r, tmp, n * sizeof *r);
}

static void drow_free(drow_t *r, int npf)
{
    if (!r)
        return;
    bson_destroy(r->doc);
    for (int i = 0; i < npf; i++)
        agg_value_cleanup(&r->pv[i]);
    free(r->pv);
    agg_value_cleanup(&r->v);
    free(r);
}

/* v + step for numbers, in mongod's widening of int + int. */
static void num_add(const bson_value_t *a, const bson_value_t *step, bson_value_t *out)
{
    bool ai = a->value_type == BSON_TYPE_INT32 || a->value_type == BSON_TYPE_INT64;
    bool si = step->value_type == BSON_TYPE_INT32 || step->value_type == BSON_TYPE_INT64;
    memset(out, 0, sizeof *out);
    if (ai && si) {
        int64_t x = a->value_type == BSON_TYPE_INT32 ? a->value.v_int32 : a->value.v_int64;
        int64_t y = step->value_type == BSON_TYPE_INT32 ? step->value.v_int32
                                                        : step->value.v_int64;
        int64_t r;
        if (__builtin_add_overflow(x, y, &r)) {
            agg__set_double(out, (double)x + (double)y);
        } else if (a->value_type == BSON_TYPE_INT32 && step->value_type == BSON_TYPE_INT32 &&
                   r >= INT32_MIN && r <= INT32_MAX) {
            agg__set_int32(out, (int32_t)r);
        } else {
            agg__set_int64(out, r);
        }
        return;
    }
    double x = 0, y = 0;
    bq_num_to_double(a, &x);
    bq_num_to_double(step, &y);
    agg__set_double(out, x + y);
}

static bool next_value(const densify_spec_t *s, const bson_value_t *cur, bson_value_t *out)
{
    if (s->unit >= 0) {
        int64_t step = 0, ms;
        agg__as_int64_exact(&s->step, &step);
        memset(out, 0, sizeof *out);
        if (!agg__window_date_add(cur->value.v_datetime, s->unit, step, &ms))
            return false;
        agg__set_date(out, ms);
        return true;
    }
    num_add(cur, &s->step, out);
    return true;
}

static drow_t *make_doc(densify_iter_t *di, const bson_value_t *pv, const bson_value_t *v)
{
    const densify_spec_t *s = di->s;
    bson_t *doc = bson_new();
    for (int i = 0; pv && i < s->npf; i++) {
        if (pv[i].value_type == BSON_TYPE_EOD)
            continue;
        bson_t *next = bson_new();
        agg__window_set_path(doc, s->pf_parts[i], s->pf_nparts[i], &pv[i], next);
        bson_destroy(doc);
        doc = next;
    }
    bson_t *next = bson_new();
    agg__window_set_path(doc, s->parts, s->nparts, v, next);
    bson_destroy(doc);
    drow_t *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->doc = next;
    r->pv = calloc(s->npf ? (size_t)s->npf : 1, sizeof *r->pv);
    if (!r->pv)
        abort();
    for (int i = 0; pv && i < s->npf; i++)
        agg_value_copy(&pv[i], &r->pv[i]);
    agg_value_copy(v, &r->v);
    return r;
}

static void out_push(densify_iter_t *di, drow_t *r, size_t *cap)
{
    if (di->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        di->out = realloc(di->out, *cap * sizeof *di->out);
        if (!di->out)
            abort();
    }
    di->out[di->n++] = r;
}

/* Densifies the rows r[0..n) of one partition (sorted by the field; nullish first). */
static bool densify_partition(densify_iter_t *di, drow_t **r, size_t n, const bson_value_t *lo,
                              const bson_value_t *hi, bool hi_inclusive, size_t *cap,
                              bq_error_t *err)
{
    const densify_spec_t *s = di->s;
    const bson_value_t *pv = n ? r[0]->pv : NULL; /* r[0] stays alive: pushed, not freed */
    size_t j = 0;
    while (j < n && agg__nullish(&r[j]->v)) {
        out_push(di, r[j], cap);
        r[j++] = NULL;
    }
    if (lo && hi) {
        bson_value_t g;
        agg_value_copy(lo, &g);
        while (true) {
            int c = agg__value_compare(&g, hi);
            if (c > 0 || (c == 0 && !hi_inclusive))
                break;
            while (j < n && agg__value_compare(&r[j]->v, &g) < 0) {
                out_push(di, r[j], cap);
                r[j++] = NULL;
            }
            if (!(j < n && agg__value_compare(&r[j]->v, &g) == 0)) {
                if (++di->generated > DENSIFY_MAX_DOCS) {
                    agg_value_cleanup(&g);
                    bq_error_set(err, 5897900,
                                 "Generated %d documents in $densify, which is over the limit "
                                 "of %d",
                                 DENSIFY_MAX_DOCS + 1, DENSIFY_MAX_DOCS);
                    return false;
                }
                drow_t *nr = make_doc(di, pv, &g);
                if (!agg_mem_charge(di->base.run, &di->mem, (int64_t)nr->doc->len + 64,
                                    "$densify", err)) {
                    drow_free(nr, s->npf);
                    agg_value_cleanup(&g);
                    return false;
                }
                out_push(di, nr, cap);
            }
            bson_value_t nx;
            bool ok = next_value(s, &g, &nx);
            agg_value_cleanup(&g);
            if (!ok)
                break;
            g = nx;
        }
        agg_value_cleanup(&g);
    }
    while (j < n) {
        out_push(di, r[j], cap);
        r[j++] = NULL;
    }
    return true;
}

static bool check_value(const densify_spec_t *s, const bson_value_t *v, bq_error_t *err)
{
    if (agg__nullish(v))
        return true;
    bool date = v->value_type == BSON_TYPE_DATE_TIME;
    if (!date && !bq_num_is_number(v)) {
        bq_error_set(err, 5733201, "Densify field type must be numeric or a date");
        return false;
    }
    if (date && s->unit < 0) {
        bq_error_set(err, 6053600, "Encountered date densify value without a specified unit");
        return false;
    }
    if (!date && s->unit >= 0) {
        bq_error_set(err, 6053600, "Encountered non-date densify value with a specified unit");
        return false;
    }
    return true;
}

static bool densify_load(densify_iter_t *di, bq_error_t *err)
{
    const densify_spec_t *s = di->s;
    agg_run_t *run = di->base.run;
    size_t n = 0, cap = 64;
    drow_t **rows = calloc(cap, sizeof *rows);
    if (!rows)
        abort();
    bson_t *doc;
    int rc;
    bool ok = true;
    while (ok && (rc = agg_iter_next(di->base.input, &doc, err)) == 1) {
        if (n == cap) {
            rows = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!rows)
                abort();
        }
        drow_t *r = calloc(1, sizeof *r);
        if (!r || !(r->pv = calloc(s->npf ? (size_t)s->npf : 1, sizeof *r->pv)))
            abort();
        rows[n++] = r;
        r->doc = doc;
        r->seq = n;
        ok = agg_mem_charge(run, &di->mem, (int64_t)doc->len + 64, "$densify", err);
        if (ok && (n & 1023) == 0 && agg_run_expired(run, err))
            ok = false;
        agg_env_set_root(&run->env, doc);
        for (int i = 0; ok && i < s->npf; i++)
            ok = agg_expr_eval(s->pf[i], &run->env, &r->pv[i], err);
        if (ok)
            ok = agg_expr_eval(s->field, &run->env, &r->v, err) && check_value(s, &r->v, err);
    }
    if (ok && rc < 0)
        ok = false;
    drow_t **tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!tmp)
        abort();
    if (ok)
        drows_sort(s, true, rows, tmp, n);
    /* the range of "full" */
    const bson_value_t *gmin = NULL, *gmax = NULL;
    for (size_t i = 0; ok && i < n; i++) {
        if (agg__nullish(&rows[i]->v))
            continue;
        if (!gmin || agg__value_compare(&rows[i]->v, gmin) < 0)
            gmin = &rows[i]->v;
        if (!gmax || agg__value_compare(&rows[i]->v, gmax) > 0)
            gmax = &rows[i]->v;
    }
    bson_value_t full_lo = {0}, full_hi = {0};
    if (gmin) {
        agg_value_copy(gmin, &full_lo);
        agg_value_copy(gmax, &full_hi);
    }
    size_t ocap = 0;
    size_t a = 0;
    if (ok && n == 0 && s->bounds == BOUNDS_EXPLICIT && s->npf == 0)
        ok = densify_partition(di, rows, 0, &s->lo, &s->hi, false, &ocap, err);
    while (ok && a < n) {
        size_t b = a + 1;
        while (b < n && part_cmp(s, rows[a], rows[b]) == 0)
            b++;
        const bson_value_t *lo = NULL, *hi = NULL;
        bool incl = true;
        if (s->bounds == BOUNDS_EXPLICIT) {
            lo = &s->lo;
            hi = &s->hi;
            incl = false;
        } else if (s->bounds == BOUNDS_FULL) {
            lo = gmin ? &full_lo : NULL;
            hi = gmin ? &full_hi : NULL;
        } else {
            for (size_t i = a; i < b; i++) {
                if (agg__nullish(&rows[i]->v))
                    continue;
                if (!lo)
                    lo = &rows[i]->v;
                hi = &rows[i]->v;
            }
        }
        bson_value_t lo_c = {0}, hi_c = {0};
        if (lo) {
            agg_value_copy(lo, &lo_c);
            agg_value_copy(hi, &hi_c);
        }
        ok = densify_partition(di, rows + a, b - a, lo ? &lo_c : NULL, lo ? &hi_c : NULL,
                               incl, &ocap, err);
        agg_value_cleanup(&lo_c);
        agg_value_cleanup(&hi_c);
        a = b;
    }
    agg_value_cleanup(&full_lo);
    agg_value_cleanup(&full_hi);
    for (size_t i = 0; i < n; i++)
        drow_free(rows[i], s->npf);
    free(rows);
    free(tmp);
    if (ok && s->bounds == BOUNDS_FULL && s->npf > 0) {
        drow_t **t2 = calloc(di->n ? di->n : 1, sizeof *t2);
        if (!t2)
            abort();
        for (size_t i = 0; i < di->n; i++)
            di->out[i]->seq = i;
        drows_sort(s, false, di->out, t2, di->n);
        free(t2);
    }
    return ok;
}

static int densify_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    densify_iter_t *di = (densify_iter_t *)it;
    if (!di->loaded) {
        di->loaded = true;
        if (!densify_load(di, err))
            return -1;
    }
    if (di->pos >= di->n)
        return 0;
    drow_t *r = di->out[di->pos];
    di->out[di->pos++] = NULL;
    *out = r->doc;
    r->doc = bson_new();
    drow_free(r, di->s->npf);
    return 1;
}

static void densify_close(agg_iter_t *it)
{
    densify_iter_t *di = (densify_iter_t *)it;
    for (size_t i = di->pos; i < di->n; i++)
        drow_free(di->out[i], di->s->npf);
    free(di->out);
    agg_iter_close(it->input);
    free(di);
}

agg_iter_t *agg__densify_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    (void)err;
    densify_iter_t *di = calloc(1, sizeof *di);
    if (!di)
        abort();
    di->s = state;
    di->base.next = densify_next;
    di->base.close = densify_close;
    di->base.input = input;
    di->base.run = run;
    return &di->base;
}
