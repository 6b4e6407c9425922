/*
 * agg_pipeline.c: parsing a pipeline into stages, opening it into a chain of iterators,
 * the run context, the generic iterators, and the $match stage (kept here because the
 * pipeline hands a leading $match to the collection scan).
 *
 * Stage kinds live in families, one array per file (agg__stages_basic, ..._group,
 * ..._join, ..._window, see agg_pipeline.h); agg_stage_find() looks a name up in them.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg_pipeline.h"

/* One parsed stage. */
typedef struct stage {
    const agg_stage_kind_t *kind;
    void *state;
    bson_t *spec; /* {"$name": spec} as given, for explain */
} stage_t;

struct agg_pipeline {
    stage_t *stages;
    int n;
    agg_scope_t *scope;      /* owned by a top-level pipeline; borrowed by sub-pipelines */
    bool own_scope;
    char *db, *coll;         /* coll NULL: no collection (aggregate: 1, $documents) */
    /* the command's let: one compiled expression per variable, and its slot */
    int nlet;
    agg_expr_t **let_exprs;
    int *let_slots;
    const agg_out_t *out;    /* the state of a final $out/$merge, or NULL */
    bq_collation_t *collation; /* a reference (the command's, sub-pipelines too), or NULL */
};

/* ================================================================ the clock */

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ generic iterators */

void agg_iter_close(agg_iter_t *it)
{
    if (it)
        it->close(it);
}

typedef struct docs_iter {
    agg_iter_t base;
    bson_t **docs;
    size_t n, pos;
} docs_iter_t;

static int docs_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    (void)err;
    docs_iter_t *d = (docs_iter_t *)it;
    if (d->pos >= d->n)
        return 0;
    *out = d->docs[d->pos];
    d->docs[d->pos++] = NULL;
    return 1;
}

static void docs_close(agg_iter_t *it)
{
    docs_iter_t *d = (docs_iter_t *)it;
    for (size_t i = d->pos; i < d->n; i++)
        bson_destroy(d->docs[i]);
    free(d->docs);
    agg_iter_close(it->input);
    free(d);
}

agg_iter_t *agg_iter_from_docs(agg_run_t *run, bson_t **docs, size_t n)
{
    docs_iter_t *d = calloc(1, sizeof *d);
    if (!d || !(d->docs = calloc(n ? n : 1, sizeof *d->docs)))
        abort();
    for (size_t i = 0; i < n; i++)
        d->docs[i] = bson_copy(docs[i]);
    d->n = n;
    d->base.next = docs_next;
    d->base.close = docs_close;
    d->base.run = run;
    return &d->base;
}

agg_iter_t *agg_iter_empty(agg_run_t *run)
{
    return agg_iter_from_docs(run, NULL, 0);
}

/* ================================================================ run context */

bool agg_run_init(agg_run_t *run, const agg_pipeline_t *p, const agg_source_t *source,
                  const char *db, int64_t now_ms, uint32_t ct_t, uint32_t ct_i,
                  bool allow_disk_use, bq_error_t *err)
{
    memset(run, 0, sizeof *run);
    run->source = source;
    run->db = db;
    run->memory_limit = allow_disk_use ? AGG_MEMORY_LIMIT_DISK : AGG_MEMORY_LIMIT;
    agg_env_init(&run->env);
    agg_env_set_now(&run->env, now_ms);
    agg_env_set_cluster_time(&run->env, ct_t, ct_i);
    for (int i = 0; p && i < p->nlet; i++) {
        bson_value_t v;
        if (!agg_expr_eval(p->let_exprs[i], &run->env, &v, err)) {
            agg_value_cleanup(&v);
            return false;
        }
        agg_env_set_var(&run->env, p->let_slots[i], &v);
        agg_value_cleanup(&v);
    }
    return true;
}

void agg_run_set_max_time(agg_run_t *run, int64_t max_time_ms)
{
    run->deadline_ms = max_time_ms > 0 ? monotonic_ms() + max_time_ms : 0;
}

void agg_run_cleanup(agg_run_t *run)
{
    agg_env_cleanup(&run->env);
}

void agg_run_init_sub(agg_run_t *sub, const agg_run_t *parent)
{
    memset(sub, 0, sizeof *sub);
    sub->source = parent->source;
    sub->db = parent->db;
    sub->memory_limit = parent->memory_limit;
    sub->deadline_ms = parent->deadline_ms;
    sub->depth = parent->depth + 1;
    agg_env_init(&sub->env);
    for (int i = AGG_VAR_NOW; i < parent->env.nvars; i++)
        if (parent->env.vars[i].value_type != BSON_TYPE_EOD)
            agg_env_set_var(&sub->env, i, &parent->env.vars[i]);
}

bool agg_run_expired(agg_run_t *run, bq_error_t *err)
{
    if (run->deadline_ms && monotonic_ms() > run->deadline_ms) {
        bq_error_set(err, BQ_ERR_MaxTimeMSExpired, "operation exceeded time limit");
        return true;
    }
    return false;
}

bool agg_mem_charge(agg_run_t *run, int64_t *used, int64_t n, const char *stage,
                    bq_error_t *err)
{
    *used += n;
    if (*used > run->memory_limit) {
        bq_error_set(err, BQ_ERR_QueryExceededMemoryLimitNoDiskUseAllowed,
                     "%s exceeded its memory limit of %lld bytes; NEDB does not spill "
                     "to disk%s",
                     stage, (long long)run->memory_limit,
                     run->memory_limit == AGG_MEMORY_LIMIT
                         ? ": pass allowDiskUse: true to allow more memory"
                         : "");
        return false;
    }
    return true;
}

/* ================================================================ $match */

typedef struct match_state {
    bq_match_t *m;
    bson_t *filter;
} match_state_t;

static void match_free(void *state)
{
    match_state_t *s = state;
    if (!s)
        return;
    bq_match_destroy(s->m);
    if (s->filter)
        bson_destroy(s->filter);
    free(s);
}

static bool match_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 15959, "the match filter must be an expression in "
                                                "an object");
        return false;
    }
    match_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->filter = bson_new_from_data(spec->value.v_doc.data, spec->value.v_doc.data_len);
    if (!s->filter) {
        free(s);
        bq_error_set(err, BQ_ERR_FailedToParse, "$match filter is not valid BSON");
        return false;
    }
    bq_match_opts_t opts = {.expr_scope = pc->scope, .collation = pc->collation};
    if (!(s->m = bq_match_compile_opts(s->filter, &opts, err))) {
        match_free(s);
        return false;
    }
    *state = s;
    return true;
}

typedef struct match_iter {
    agg_iter_t base;
    const match_state_t *s;
} match_iter_t;

static int match_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    match_iter_t *mi = (match_iter_t *)it;
    for (;;) {
        bson_t *doc;
        int r = agg_iter_next(it->input, &doc, err);
        if (r <= 0)
            return r;
        int ok = bq_match_eval_env(mi->s->m, doc, &it->run->env, err);
        if (ok > 0) {
            *out = doc;
            return 1;
        }
        bson_destroy(doc);
        if (ok < 0)
            return -1;
    }
}

static void simple_close(agg_iter_t *it)
{
    agg_iter_close(it->input);
    free(it);
}

static agg_iter_t *match_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    (void)err;
    match_iter_t *mi = calloc(1, sizeof *mi);
    if (!mi)
        abort();
    mi->base.next = match_next;
    mi->base.close = simple_close;
    mi->base.input = input;
    mi->base.run = run;
    mi->s = state;
    return &mi->base;
}

static const agg_stage_kind_t stage_match = {"$match", 0, match_parse, match_open, match_free};

/* ================================================================ the stage table */

const agg_stage_kind_t *agg_stage_find(const char *name)
{
    static const agg_stage_kind_t *const families[] = {
        agg__stages_basic, agg__stages_group, agg__stages_join, agg__stages_window,
    };
    if (!strcmp(name, "$match"))
        return &stage_match;
    for (size_t f = 0; f < sizeof families / sizeof *families; f++)
        for (const agg_stage_kind_t *k = families[f]; k->name; k++)
            if (!strcmp(k->name, name))
                return k;
    return NULL;
}

/* ================================================================ parsing */

void agg_pipeline_destroy(agg_pipeline_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        if (p->stages[i].kind && p->stages[i].kind->free)
            p->stages[i].kind->free(p->stages[i].state);
        if (p->stages[i].spec)
            bson_destroy(p->stages[i].spec);
    }
    free(p->stages);
    for (int i = 0; i < p->nlet; i++)
        agg_expr_destroy(p->let_exprs[i]);
    free(p->let_exprs);
    free(p->let_slots);
    if (p->own_scope)
        agg_scope_destroy(p->scope);
    bq_collation_destroy(p->collation);
    free(p->db);
    free(p->coll);
    free(p);
}

/* Parses the stages of `pipeline` into p, with pc describing the context. */
static bool parse_stages(agg_pipeline_t *p, const bson_t *pipeline, agg_parse_t *pc,
                         bq_error_t *err)
{
    bson_iter_t it;
    int n = 0;
    if (!bson_iter_init(&it, pipeline)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "the pipeline is not valid BSON");
        return false;
    }
    while (bson_iter_next(&it))
        n++;
    p->stages = calloc(n ? (size_t)n : 1, sizeof *p->stages);
    if (!p->stages)
        abort();
    pc->count = n;
    bson_iter_init(&it, pipeline);
    for (int i = 0; bson_iter_next(&it); i++) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "Each element of the 'pipeline' array must be an object");
            return false;
        }
        bson_t stage_doc;
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        bson_iter_t sit;
        if (!bson_init_static(&stage_doc, data, len) || bson_count_keys(&stage_doc) != 1 ||
            !bson_iter_init(&sit, &stage_doc) || !bson_iter_next(&sit)) {
            bq_error_set(err, 40323,
                         "A pipeline stage specification object must contain exactly one "
                         "field.");
            return false;
        }
        const char *name = bson_iter_key(&sit);
        const agg_stage_kind_t *kind = agg_stage_find(name);
        if (!kind) {
            bq_error_set(err, 40324, "Unrecognized pipeline stage name: '%s'",
                         name);
            return false;
        }
        if ((kind->flags & AGG_STAGE_NOT_API_V1) && pc->api_strict) {
            bq_error_set(err, BQ_ERR_APIStrictError,
                         "%s is not allowed with 'apiStrict: true' in API Version 1", name);
            return false;
        }
        if ((kind->flags & AGG_STAGE_FIRST) && i != 0) {
            bq_error_set(err, 40602,
                         "%s is only valid as the first stage in a pipeline", name);
            return false;
        }
        if ((kind->flags & AGG_STAGE_LAST) && i != n - 1) {
            bq_error_set(err, 40601,
                         "%s can only be the final stage in the pipeline", name);
            return false;
        }
        if ((kind->flags & AGG_STAGE_NO_FACET) && pc->in_facet) {
            bq_error_set(err, 40600,
                         "%s is not allowed to be used within a $facet stage", name);
            return false;
        }
        pc->index = i;
        stage_t *st = &p->stages[p->n];
        st->kind = kind;
        st->spec = bson_copy(&stage_doc);
        p->n++;
        if (!kind->parse(bson_iter_value(&sit), pc, &st->state, err))
            return false;
        if (!kind->open) /* $out / $merge: the caller writes what the pipeline yields */
            p->out = st->state;
    }
    return true;
}

/* Compiles the command's let ({name: expression}) into p: names defined in p's scope,
 * expressions compiled in a scope of their own (they cannot see each other). */
static bool parse_let(agg_pipeline_t *p, const bson_t *let, bq_error_t *err)
{
    uint32_t n = bson_count_keys(let);
    p->let_exprs = calloc(n ? n : 1, sizeof *p->let_exprs);
    p->let_slots = calloc(n ? n : 1, sizeof *p->let_slots);
    if (!p->let_exprs || !p->let_slots)
        abort();
    agg_scope_t *own = agg_scope_new(NULL);
    bson_iter_t it;
    bson_iter_init(&it, let);
    bool ok = true;
    while (ok && bson_iter_next(&it)) {
        const char *name = bson_iter_key(&it);
        ok = agg_var_name_check(name, err) &&
             (p->let_exprs[p->nlet] = agg_expr_compile(bson_iter_value(&it), own, err));
        if (ok)
            p->let_slots[p->nlet++] = agg_scope_define(p->scope, name);
    }
    agg_scope_destroy(own);
    return ok;
}

static agg_pipeline_t *pipeline_new(const char *db, const char *coll)
{
    agg_pipeline_t *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->db = strdup(db ? db : "");
    p->coll = coll ? strdup(coll) : NULL;
    return p;
}

agg_pipeline_t *agg_pipeline_parse(const bson_t *pipeline, const agg_pipeline_opts_t *opts,
                                   bq_error_t *err)
{
    agg_pipeline_t *p = pipeline_new(opts->db, opts->coll);
    p->scope = agg_scope_new(NULL);
    p->own_scope = true;
    if (opts->let && !parse_let(p, opts->let, err)) {
        agg_pipeline_destroy(p);
        return NULL;
    }
    p->collation = bq_collation_ref(opts->collation);
    agg_parse_t pc = {.db = p->db, .coll = p->coll, .scope = p->scope,
                      .collation = p->collation, .api_strict = opts->api_strict};
    if (!parse_stages(p, pipeline, &pc, err)) {
        agg_pipeline_destroy(p);
        return NULL;
    }
    return p;
}

agg_pipeline_t *agg_pipeline_parse_sub(const bson_t *pipeline, const agg_parse_t *pc,
                                       agg_scope_t *scope, const char *coll,
                                       bq_error_t *err)
{
    if (pc->depth + 1 > AGG_MAX_DEPTH) {
        bq_error_set(err, BQ_ERR_MaxSubPipelineDepthExceeded,
                     "Maximum number of nested sub-pipelines exceeded. Limit is %d",
                     AGG_MAX_DEPTH);
        return NULL;
    }
    agg_pipeline_t *p = pipeline_new(pc->db, coll);
    p->scope = scope;
    /* the command's collation: its leading $match is compiled with it, so the source gets
     * no filter document either (agg_pipeline_open) */
    p->collation = bq_collation_ref(pc->collation);
    agg_parse_t sub = *pc;
    sub.coll = p->coll;
    sub.scope = scope;
    sub.depth = pc->depth + 1;
    if (!parse_stages(p, pipeline, &sub, err)) {
        agg_pipeline_destroy(p);
        return NULL;
    }
    return p;
}

/* ================================================================ running */

int agg_pipeline_length(const agg_pipeline_t *p)
{
    return p->n;
}

void agg_pipeline_explain(const agg_pipeline_t *p, bson_t *stages_array)
{
    char key[16];
    for (int i = 0; i < p->n; i++) {
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_DOCUMENT(stages_array, k, p->stages[i].spec);
    }
}

bool agg_pipeline_is_generator(const agg_pipeline_t *p)
{
    return p->n > 0 && (p->stages[0].kind->flags & AGG_STAGE_GENERATOR);
}

const agg_out_t *agg_pipeline_out(const agg_pipeline_t *p)
{
    return p->out;
}

agg_iter_t *agg_pipeline_open(const agg_pipeline_t *p, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    int first = 0;
    if (!input) {
        if (!p->coll || agg_pipeline_is_generator(p)) {
            input = agg_iter_empty(run);
        } else if (!run->source || !run->source->scan) {
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "this pipeline needs a collection source and none was given");
            return NULL;
        } else {
            const match_state_t *lead = NULL;
            if (p->n > 0 && p->stages[0].kind == &stage_match) {
                lead = p->stages[0].state;
                first = 1;
            }
            /* under a collation the filter document is not handed over: the source's
             * _id index compares strings bytewise */
            input = run->source->scan(run->source->ctx, run, p->db, p->coll,
                                      lead && !p->collation ? lead->filter : NULL,
                                      lead ? lead->m : NULL, err);
            if (!input)
                return NULL;
        }
    }
    for (int i = first; i < p->n; i++) {
        const stage_t *st = &p->stages[i];
        if (!st->kind->open)
            break; /* $out / $merge */
        input = st->kind->open(st->state, input, run, err);
        if (!input)
            return NULL;
    }
    return input;
}
