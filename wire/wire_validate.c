/*
 * wire_validate.c: document validation, the one place where a collection's validator is
 * applied to the documents the write commands store (insert, update/replace, upserts and
 * findAndModify, all in cmd_write.c).
 *
 * The validator lives in the collection's options as create or collMod recorded them
 * (cmd_catalog.c; listCollections reports them as given). It is compiled on first use
 * and kept in a small per-thread cache keyed by its bytes, so a batch of inserts compiles
 * it once and a collMod that changes it takes effect at the next write (the options are
 * read at the write's snapshot). A compiled matcher is immutable.
 *
 * A refused document gets DocumentValidationFailure (121) with mongod's errInfo
 * {failingDocumentId, details}; details comes from bq_match_explain. The errInfo cannot
 * travel in a bq_error_t, so it is kept here, per I/O thread (thread-specific data freed
 * when the thread ends), under the command state and
 * the write's index until the write error is built (wire_validate_errinfo_append). A
 * command runs on one I/O thread from start to reply, so the thread-local list sees every
 * one of its failures; entries a command never reports (findAndModify turns its failure
 * into a command error) are bounded by replacing the oldest.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_timeseries.h"
#include "wire_validate.h"

/* ---- options ---- */

static bool option_enum(const char *cmd, const bson_t *opts, const char *key,
                        const char *const *names, bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, opts, key))
        return true;
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field '%s.%s' is the wrong type '%s', expected type 'string'", cmd,
                     key, bq_type_name(bson_iter_type(&it)));
        return false;
    }
    const char *v = bson_iter_utf8(&it, NULL);
    for (size_t i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return true;
    bq_error_set(err, BQ_ERR_BadValue,
                 "Enumeration value '%s' for field '%s.%s' is not a valid value.", v, cmd, key);
    return false;
}

bool wire_validate_options(const char *cmd, const char *db, const char *coll,
                           const bson_t *opts, bq_error_t *err)
{
    static const char *const levels[] = {"off", "strict", "moderate", NULL};
    static const char *const actions[] = {"error", "warn", NULL};
    if (!option_enum(cmd, opts, "validationLevel", levels, err) ||
        !option_enum(cmd, opts, "validationAction", actions, err))
        return false;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, opts, "validator"))
        return true;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field '%s.validator' is the wrong type '%s', expected type 'object'",
                     cmd, bq_type_name(bson_iter_type(&it)));
        return false;
    }
    uint32_t len;
    const uint8_t *data;
    bson_t filter;
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&filter, data, len)) {
        bq_error_set(err, BQ_ERR_InvalidBSON, "invalid BSON in validator");
        return false;
    }
    if (bson_empty(&filter))
        return true; /* no validator: nothing to place or to compile */
    if (!strncmp(coll, "system.", 7) &&
        strncmp(coll, WIRE_TS_BUCKETS_PREFIX, strlen(WIRE_TS_BUCKETS_PREFIX)) != 0) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Document validators not allowed on system collection %s.%s", db, coll);
        return false;
    }
    if (!strcmp(db, "admin") || !strcmp(db, "local") || !strcmp(db, "config")) {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "Document validators are not allowed on collection %s.%s in the %s "
                     "internal database",
                     db, coll, db);
        return false;
    }
    bq_match_t *m = bq_match_compile(&filter, err);
    bq_match_destroy(m);
    return m != NULL;
}

/* ---- per-thread state: compiled validators, errInfo kept for write errors ---- */

#define CACHE_SIZE 16
#define KEPT_MAX 64

typedef struct cached {
    uint8_t *bytes;     /* the validator document, owned */
    uint32_t len;
    bq_match_t *m;
} cached_t;

typedef struct kept {
    const void *owner;
    size_t index;
    bson_t *info;
} kept_t;

typedef struct vstate {
    cached_t cache[CACHE_SIZE];
    unsigned cache_next;
    kept_t kept[KEPT_MAX];
    unsigned kept_next;
} vstate_t;

static pthread_key_t vstate_key;
static pthread_once_t vstate_once = PTHREAD_ONCE_INIT;

static void vstate_free(void *p)
{
    vstate_t *v = p;
    for (unsigned i = 0; i < CACHE_SIZE; i++) {
        bq_match_destroy(v->cache[i].m);
        free(v->cache[i].bytes);
    }
    for (unsigned i = 0; i < KEPT_MAX; i++)
        if (v->kept[i].info)
            bson_destroy(v->kept[i].info);
    free(v);
}

static void vstate_key_create(void)
{
    if (pthread_key_create(&vstate_key, vstate_free) != 0)
        abort();
}

static vstate_t *vstate_get(void)
{
    pthread_once(&vstate_once, vstate_key_create);
    vstate_t *v = pthread_getspecific(vstate_key);
    if (!v) {
        if (!(v = calloc(1, sizeof *v)) || pthread_setspecific(vstate_key, v) != 0)
            abort();
    }
    return v;
}

static const bq_match_t *validator_get(const bson_t *filter, bq_error_t *err)
{
    vstate_t *vs = vstate_get();
    cached_t *cache = vs->cache;
    const uint8_t *data = bson_get_data(filter);
    for (unsigned i = 0; i < CACHE_SIZE; i++)
        if (cache[i].m && cache[i].len == filter->len && memcmp(cache[i].bytes, data, filter->len) == 0)
            return cache[i].m;
    bq_match_t *m = bq_match_compile(filter, err);
    if (!m)
        return NULL;
    cached_t *c = &cache[vs->cache_next++ % CACHE_SIZE];
    bq_match_destroy(c->m);
    free(c->bytes);
    c->bytes = malloc(filter->len);
    if (!c->bytes)
        abort();
    memcpy(c->bytes, data, filter->len);
    c->len = filter->len;
    c->m = m;
    return m;
}

/* ---- errInfo kept until its write error is built ---- */

static void kept_put(const void *owner, size_t index, bson_t *info)
{
    vstate_t *vs = vstate_get();
    kept_t *kept = vs->kept;
    kept_t *slot = NULL;
    for (unsigned i = 0; i < KEPT_MAX && !slot; i++)
        if (kept[i].info && kept[i].owner == owner && kept[i].index == index)
            slot = &kept[i];
    if (!slot)
        slot = &kept[vs->kept_next++ % KEPT_MAX];
    if (slot->info)
        bson_destroy(slot->info);
    slot->owner = owner;
    slot->index = index;
    slot->info = info;
}

void wire_validate_errinfo_append(const void *owner, size_t index, bson_t *write_error)
{
    kept_t *kept = vstate_get()->kept;
    for (unsigned i = 0; i < KEPT_MAX; i++) {
        if (kept[i].info && kept[i].owner == owner && kept[i].index == index) {
            BSON_APPEND_DOCUMENT(write_error, "errInfo", kept[i].info);
            bson_destroy(kept[i].info);
            kept[i].info = NULL;
            return;
        }
    }
}

/* ---- the check ---- */

static const char *option_str(const bson_t *opts, const char *key, const char *dflt)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, opts, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return dflt;
}

bool wire_validate(wire_cmd_ctx_t *ctx, const char *coll, int64_t snap, size_t index,
                   const bson_t *doc, const bson_t *old, bq_error_t *err)
{
    return wire_validate_in(ctx, ctx->db, coll, snap, index, doc, old, err);
}

bool wire_validate_in(wire_cmd_ctx_t *ctx, const char *db, const char *coll, int64_t snap,
                      size_t index, const bson_t *doc, const bson_t *old, bq_error_t *err)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, ctx->cmd, "bypassDocumentValidation") &&
        bson_iter_as_bool(&it))
        return true;
    eng_coll_t *c = eng_coll_get(ctx->server->db, db, coll, snap);
    if (!c)
        return true; /* created by this write: no options, no validator */
    eng_coll_info_t info;
    eng_coll_info(c, &info);
    if (!bson_iter_init_find(&it, info.options, "validator") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return true;
    if (strcmp(option_str(info.options, "validationLevel", "strict"), "off") == 0)
        return true;
    uint32_t len;
    const uint8_t *data;
    bson_t filter;
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&filter, data, len) || bson_empty(&filter))
        return true;
    const bq_match_t *m = validator_get(&filter, err);
    if (!m)
        return false; /* checked by create/collMod: only a changed server could get here */
    if (bq_match_eval(m, doc))
        return true;
    if (old && strcmp(option_str(info.options, "validationLevel", "strict"), "moderate") == 0 &&
        !bq_match_eval(m, old))
        return true; /* moderate: documents that were already invalid may stay so */

    bson_t *errinfo = bson_new(), details;
    if (bson_iter_init_find(&it, doc, "_id"))
        bson_append_iter(errinfo, "failingDocumentId", -1, &it);
    bq_match_explain(m, doc, &details);
    BSON_APPEND_DOCUMENT(errinfo, "details", &details);
    bson_destroy(&details);
    if (strcmp(option_str(info.options, "validationAction", "error"), "warn") == 0) {
        char *json = bson_as_relaxed_extended_json(errinfo, NULL);
        wire_log(0, "Document would fail validation: %s.%s %s", db, coll,
                 json ? json : "");
        bson_free(json);
        bson_destroy(errinfo);
        return true;
    }
    kept_put(ctx->state, index, errinfo);
    bq_error_set(err, BQ_ERR_DocumentValidationFailure, "Document failed validation");
    return false;
}
