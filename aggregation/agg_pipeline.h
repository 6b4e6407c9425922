/*
 * agg_pipeline.h: aggregation pipelines, MongoDB 7.0 semantics.
 *
 * Two phases, as mongod has them:
 *
 *   parse  agg_pipeline_parse() turns the BSON array of stages into an immutable
 *          agg_pipeline_t: every stage validated (MongoDB's codes), every expression
 *          compiled against one scope tree (the command's `let` variables live in its root).
 *          A parsed pipeline may be opened any number of times ($lookup opens its
 *          sub-pipeline once per input document).
 *
 *   run    agg_pipeline_open() chains one iterator per stage over an input iterator (a
 *          collection scan from the source, or nothing for $documents pipelines) and
 *          returns the last one; agg_iter_next() pulls documents through the chain.
 *          Stages that can stream do ($match, $project, $unwind, ...); $sort, $group and
 *          friends buffer, counting bytes against the run's memory limit.
 *
 * Reading other collections ($lookup, $unionWith, $graphLookup), the collection being
 * aggregated, provenance ($trace) and catalog facts ($collStats) all go through the
 * agg_source_t the caller passes in (wire/ for the server, an in-memory source for tests),
 * so this layer never touches engine/ directly (DESIGN.md section 1).
 *
 * $out and $merge are parsed here (they must be last) but the writes are the caller's:
 * agg_pipeline_out() describes the target and the caller writes every document the
 * pipeline yields (wire/ does it through the sequencer, like any other write).
 *
 * Documents move between iterators as heap bson_t (bson_new/bson_copy/bson_new_from_data)
 * and ownership moves with them: whoever receives a document from agg_iter_next frees it
 * with bson_destroy (or passes it on).
 */
#ifndef AGG_PIPELINE_H
#define AGG_PIPELINE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "agg_expr.h"
#include "bq.h"

typedef struct agg_pipeline agg_pipeline_t;
typedef struct agg_iter agg_iter_t;
typedef struct agg_run agg_run_t;
typedef struct agg_source agg_source_t;

/* mongod's default limit for one blocking stage's memory when allowDiskUse is false
 * (internalQueryMaxBlockingSortMemoryUsageBytes / $group's 100 MB). Past it: 292
 * QueryExceededMemoryLimitNoDiskUseAllowed. We never spill; with allowDiskUse the limit is
 * AGG_MEMORY_LIMIT_DISK, a guard against exhausting the machine. */
#define AGG_MEMORY_LIMIT (100 * 1024 * 1024)
#define AGG_MEMORY_LIMIT_DISK ((int64_t)4 * 1024 * 1024 * 1024)

/* Sub-pipelines ($lookup, $facet, $unionWith) may nest this deep (mongod: 20 for
 * $lookup/$unionWith nesting, error 5 is not specified; we use 20 everywhere). */
#define AGG_MAX_DEPTH 20

/* ------------------------------------------------------------------ iterators */

/* A running stage. next() returns 1 with *out set to a document the caller owns, 0 at the
 * end (and on every later call), -1 with err set. close() frees the iterator and, through
 * it, its input. Stages are written as a struct that starts with agg_iter_t. */
struct agg_iter {
    int (*next)(agg_iter_t *it, bson_t **out, bq_error_t *err);
    void (*close)(agg_iter_t *it);
    agg_iter_t *input; /* the upstream iterator, owned (NULL for sources) */
    agg_run_t *run;    /* borrowed */
};

static inline int agg_iter_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    return it->next(it, out, err);
}

/* Closes an iterator chain; NULL is allowed. */
void agg_iter_close(agg_iter_t *it);

/* An iterator over an array of documents it copies now (for $documents, tests, buffered
 * results). */
agg_iter_t *agg_iter_from_docs(agg_run_t *run, bson_t **docs, size_t n);

/* An iterator that yields nothing. */
agg_iter_t *agg_iter_empty(agg_run_t *run);

/* ------------------------------------------------------------------ the source */

/* What a pipeline reads besides its input. Every function gets the source's ctx. A
 * missing collection reads as empty, as in mongod. db is the command's database unless a
 * stage names another ({from: {db, coll}} is refused where mongod refuses it). */
struct agg_source {
    void *ctx;
    /* A scan of db.coll at the command's snapshot, yielding copies of the documents that
     * match `filter` (NULL: all) in natural order. filter_doc is the filter as given (for
     * index use, e.g. an _id equality; NULL under a collation, which the binary _id index
     * cannot honour); evaluate `filter` with
     * bq_match_eval_env(filter, doc, &run->env, err) since a $expr in it may use the
     * run's variables. The iterator's run is `run`. */
    agg_iter_t *(*scan)(void *ctx, agg_run_t *run, const char *db, const char *coll,
                        const bson_t *filter_doc, const bq_match_t *filter, bq_error_t *err);
    /* Number of documents in db.coll at the snapshot ($collStats count); false with err
     * when unavailable: NamespaceNotFound (26) for a missing collection, 166 for a view. */
    bool (*count)(void *ctx, const char *db, const char *coll, int64_t *n, bq_error_t *err);
    /* Provenance for $trace (DESIGN.md section 7). Appends to out the seqs of the ops
     * that the op `seq` names as causes (backward) or that name it (forward), at the
     * snapshot; and fetches the document version an op wrote. NULL when unsupported. */
    bool (*prov_links)(void *ctx, int64_t seq, bool forward, int64_t **out, size_t *n,
                       bq_error_t *err);
    bool (*op_doc)(void *ctx, int64_t seq, char *ns, size_t ns_size, bson_t **doc,
                   bq_error_t *err);
    /* For $trace forward: the seqs of the ops that wrote the versions of the document
     * with this _id in db.coll up to the snapshot, oldest first, into a malloc'ed array
     * (*out, *n; the caller frees it); an unknown _id gives none. NULL when unsupported.
     * prov_links appends the same way: *out is malloc'ed/realloc'ed and freed by the
     * caller; op_doc's *doc is a new bson_t (NULL for an op without a document). */
    bool (*doc_versions)(void *ctx, const char *db, const char *coll, const bson_value_t *id,
                         int64_t **out, size_t *n, bq_error_t *err);
    /* The server's logical sessions for $listLocalSessions, as session records
     * ({_id: {id: <UUID>, uid: <BinData>}, lastUse: <Date>}): *docs is a malloc'ed array
     * of new bson_t the caller frees. NULL when unsupported. */
    bool (*list_sessions)(void *ctx, bson_t ***docs, size_t *n, bq_error_t *err);
    /* The indexes of db.coll at the snapshot as listIndexes gives them ({v, key, name,
     * ...}), for $indexStats: *specs is a malloc'd array of new bson_t the caller frees;
     * none for a missing collection. NULL when unsupported. */
    bool (*indexes)(void *ctx, const char *db, const char *coll, bson_t ***specs, size_t *n,
                    bq_error_t *err);
    /* The storage statistics of db.coll at the snapshot, for $collStats storageStats: the
     * fields the collStats command gives after its ns (size, count, avgObjSize, ...,
     * indexSizes, scaleFactor), sizes divided by scale (>= 1), appended to out. False
     * with err for a missing collection (26 NamespaceNotFound, "Collection [db.coll] not
     * found.") or a view (166); out may then hold fields already appended. NULL when
     * unsupported. */
    bool (*storage_stats)(void *ctx, const char *db, const char *coll, int32_t scale,
                          bson_t *out, bq_error_t *err);
    /* The operations in progress on the server for $currentOp, as its documents ({type:
     * "op", opid, active, op, ns, command, client, connectionId, secs_running, ...});
     * idle_connections asks for idle connections too. *docs is a malloc'ed array of new
     * bson_t the caller frees. NULL when unsupported. */
    bool (*current_ops)(void *ctx, bool idle_connections, bson_t ***docs, size_t *n,
                        bq_error_t *err);
};

/* The scale of $collStats storageStats and of the collStats command, as mongod's
 * StorageStatsSpec reads it: a number (else 14 TypeMismatch naming `path`, e.g.
 * "$collStats.storageStats.scale"), truncated to an int32 (NaN is 0), at least 1 (else
 * 51024). */
bool agg_storage_scale_parse(const bson_iter_t *it, const char *path, int32_t *scale,
                             bq_error_t *err);

/* ------------------------------------------------------------------ run context */

/* The state of one execution of a pipeline (and its sub-pipelines). */
struct agg_run {
    const agg_source_t *source; /* may be NULL: stages that need it fail with 238 */
    const char *db;             /* the command's database */
    agg_env_t env;              /* variables; ROOT/CURRENT set per document by stages */
    int64_t memory_limit;       /* per blocking stage, bytes */
    int64_t deadline_ms;        /* maxTimeMS deadline on the monotonic clock, 0 = none */
    int depth;                  /* sub-pipeline nesting */
};

/* Initializes a run: $$NOW = now_ms, $$CLUSTER_TIME = (t, i), the memory limit from
 * allow_disk_use, and the values of the pipeline's `let` variables (evaluated here, once,
 * as mongod does). Fails only when a let expression fails to evaluate. */
bool agg_run_init(agg_run_t *run, const agg_pipeline_t *p, const agg_source_t *source,
                  const char *db, int64_t now_ms, uint32_t ct_t, uint32_t ct_i,
                  bool allow_disk_use, bq_error_t *err);
void agg_run_cleanup(agg_run_t *run);

/* Sets the run's deadline to max_time_ms from now (0: none), for maxTimeMS. */
void agg_run_set_max_time(agg_run_t *run, int64_t max_time_ms);

/* A run for a sub-pipeline: same source, db, clock, deadline and limits, a copy of the
 * parent's variable values (so $$vars from the outer pipeline and $lookup's let are
 * visible), depth + 1. */
void agg_run_init_sub(agg_run_t *sub, const agg_run_t *parent);

/* True with err set (50 MaxTimeMSExpired) when the run's deadline has passed. Blocking
 * and looping stages call it every so often. */
bool agg_run_expired(agg_run_t *run, bq_error_t *err);

/* ------------------------------------------------------------------ stages */

/* What the parser knows while parsing one pipeline. */
typedef struct agg_parse {
    const char *db;        /* the command's database */
    const char *coll;      /* the collection aggregated; NULL for aggregate: 1 */
    agg_scope_t *scope;    /* where stage expressions are compiled */
    int depth;             /* 0 for the command's pipeline */
    bool in_facet;         /* inside $facet (some stages are refused there) */
    bool in_lookup;        /* inside $lookup / $unionWith sub-pipelines */
    const bq_collation_t *collation; /* the command's collation (NULL: binary): stages
                                        that compare strings ($match, $sort, $group keys,
                                        ...) use it */
    int index;             /* position of the stage being parsed */
    int count;             /* number of stages in this pipeline */
    bool api_strict;       /* the command said apiStrict: true (sub-pipelines inherit it) */
} agg_parse_t;

/* Stage properties that the pipeline parser checks. */
enum {
    AGG_STAGE_FIRST = 1,       /* must be the first stage ($documents, $collStats, ...) */
    AGG_STAGE_LAST = 2,        /* must be the last stage ($out, $merge) */
    AGG_STAGE_NO_FACET = 4,    /* not allowed inside $facet */
    AGG_STAGE_GENERATOR = 8,   /* ignores its input; a pipeline starting with it on
                                  aggregate: 1 needs no collection ($documents) */
    AGG_STAGE_NOT_API_V1 = 16, /* not in the Stable API V1: refused under apiStrict */
};

/* One stage kind. parse() validates spec (the value of the stage's only field) and
 * returns its compiled state; open() creates the iterator reading `input` (which it owns
 * from then on, even on failure); free() releases the state. */
typedef struct agg_stage_kind {
    const char *name; /* "$match" */
    unsigned flags;
    bool (*parse)(const bson_value_t *spec, agg_parse_t *pc, void **state, bq_error_t *err);
    agg_iter_t *(*open)(const void *state, agg_iter_t *input, agg_run_t *run,
                        bq_error_t *err);
    void (*free)(void *state);
} agg_stage_kind_t;

/* The stage table lookup (agg_pipeline.c searches the families agg__stages_* each stage
 * file defines, terminated by a {NULL} entry); NULL for an unknown name. */
const agg_stage_kind_t *agg_stage_find(const char *name);

extern const agg_stage_kind_t agg__stages_basic[];  /* agg_stage_basic.c */
extern const agg_stage_kind_t agg__stages_group[];  /* agg_stage_group.c */
extern const agg_stage_kind_t agg__stages_join[];   /* agg_stage_join.c */
extern const agg_stage_kind_t agg__stages_window[]; /* agg_stage_window.c */

/* ------------------------------------------------------------------ pipelines */

typedef struct agg_pipeline_opts {
    const char *db;
    const char *coll;   /* NULL for aggregate: 1 */
    const bson_t *let;  /* the command's let, or NULL */
    const bq_collation_t *collation; /* the command's collation, or NULL; the pipeline
                                        takes a reference */
    bool api_strict;    /* apiStrict: true: stages outside the Stable API V1 are 323 */
} agg_pipeline_opts_t;

/* Parses the command's pipeline (an array of one-field documents). Errors as mongod:
 * 14 TypeMismatch for a non-array/non-document stage, 40323 a stage with not exactly
 * one field, 40324 unknown stage name, 323 APIStrictError a stage outside API V1 under
 * apiStrict, 40602 $out/$merge not last, 40601/40602-style
 * position errors per stage flags, and each stage's own codes. */
agg_pipeline_t *agg_pipeline_parse(const bson_t *pipeline, const agg_pipeline_opts_t *opts,
                                   bq_error_t *err);

/* Parses a sub-pipeline ($lookup pipeline, $facet branches, $unionWith) inside the parse
 * of an outer stage: its scope is a child of pc->scope (created by the caller when it
 * defines variables such as $lookup's let, else pass pc->scope), depth is pc->depth + 1.
 * coll is the collection the sub-pipeline reads (NULL when none). */
agg_pipeline_t *agg_pipeline_parse_sub(const bson_t *pipeline, const agg_parse_t *pc,
                                       agg_scope_t *scope, const char *coll,
                                       bq_error_t *err);

void agg_pipeline_destroy(agg_pipeline_t *p);

/* Opens the pipeline's iterator chain over `input` (owned from now on; NULL means "the
 * collection the pipeline was parsed for", scanned through run->source, or nothing for a
 * collection-less pipeline). A leading $match is handed to the scan as its filter. */
agg_iter_t *agg_pipeline_open(const agg_pipeline_t *p, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err);

/* Number of stages, and the spec of stage i as given (for explain). */
int agg_pipeline_length(const agg_pipeline_t *p);
void agg_pipeline_explain(const agg_pipeline_t *p, bson_t *stages_array);

/* True when the pipeline's first stage generates its own input (no collection read). */
bool agg_pipeline_is_generator(const agg_pipeline_t *p);

/* The $out / $merge target of a pipeline (its last stage), or NULL. The pipeline's
 * iterator stops before that stage: the caller writes what it yields. */
typedef struct agg_out {
    bool merge;                 /* false: $out (replace the collection) */
    char db[128], coll[256];    /* the target */
    /* $merge only */
    const bson_t *on;           /* array of field names; NULL means _id */
    int when_matched;           /* AGG_MERGE_* */
    const agg_pipeline_t *when_matched_pipeline; /* for AGG_MERGE_PIPELINE */
    const bson_t *let;          /* $merge let (NULL: {new: "$$ROOT"}) */
    int when_not_matched;       /* AGG_MERGE_INSERT / _DISCARD / _FAIL */
} agg_out_t;

enum {
    AGG_MERGE_REPLACE, AGG_MERGE_KEEP_EXISTING, AGG_MERGE_MERGE, AGG_MERGE_FAIL,
    AGG_MERGE_PIPELINE, AGG_MERGE_INSERT, AGG_MERGE_DISCARD,
};

const agg_out_t *agg_pipeline_out(const agg_pipeline_t *p);

/* ------------------------------------------------------------------ helpers for stages */

/* Documents produced by stages are counted against run->memory_limit by blocking stages
 * with this: adds n bytes to *used and fails with 292 past the limit. */
bool agg_mem_charge(agg_run_t *run, int64_t *used, int64_t n, const char *stage,
                    bq_error_t *err);

#endif
