/*
 * test_eng_index.c: secondary indexes in the engine (engine/eng_index.c and the index
 * catalog ops in eng_store.c, eng_seq.c, eng_ckpt.c): createIndexes/dropIndexes as catalog
 * ops visible at every snapshot, conflicts, unique enforcement by the committer (within
 * one batch, multikey, sparse, partial, compound), and index definitions surviving a
 * full replay and a checkpoint.
 */
#include <pthread.h>

#include "eng_db.h"
#include "eng_store.h"
#include "eng_test_util.h"

static const eng_db_options_t manual = {.checkpoint_ops = -1, .checkpoint_seconds = -1,
                                        .no_close_checkpoint = true};
static const eng_db_options_t full_replay = {.checkpoint_ops = -1, .checkpoint_seconds = -1,
                                             .no_close_checkpoint = true,
                                             .ignore_checkpoints = true};

/* createIndexes on test.c with the specs given as JSON ({"indexes": [...]}); fills *op
 * (the caller cleans it up). */
static void create_indexes(eng_db_t *db, const char *json, eng_wop_t *op)
{
    bson_error_t berr;
    eng_wop_init(op, ENG_WOP_CREATE_INDEXES, "test", "c");
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &berr);
    cr_assert(doc, "%s", berr.message);
    bson_concat(&op->doc, doc);
    bson_destroy(doc);
    eng_intent_t in = {.ops = op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(in.err.code, 0, "%s", in.err.message);
}

static void drop_indexes(eng_db_t *db, const char *json, eng_wop_t *op)
{
    bson_error_t berr;
    eng_wop_init(op, ENG_WOP_DROP_INDEXES, "test", "c");
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &berr);
    cr_assert(doc, "%s", berr.message);
    bson_concat(&op->doc, doc);
    bson_destroy(doc);
    eng_intent_t in = {.ops = op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
}

/* Inserts the documents (JSON, each with an int _id) as one unordered intent; writes each
 * op's error code into codes[] (0 when applied). */
static void insert_batch(eng_db_t *db, const char *const *docs, size_t n, int32_t *codes,
                         eng_wop_t *ops)
{
    for (size_t i = 0; i < n; i++) {
        bson_error_t berr;
        eng_wop_init(&ops[i], ENG_WOP_INSERT, "test", "c");
        bson_t *d = bson_new_from_json((const uint8_t *)docs[i], -1, &berr);
        cr_assert(d, "%s", berr.message);
        bson_concat(&ops[i].doc, d);
        bson_destroy(d);
        bson_iter_t it;
        cr_assert(bson_iter_init_find(&it, &ops[i].doc, "_id"));
        bson_value_copy(bson_iter_value(&it), &ops[i].id);
        ops[i].expect = ENG_EXPECT_ABSENT;
    }
    eng_intent_t in = {.ops = ops, .nops = n, .ordered = false};
    t_submit_wait(db, &in);
    cr_assert_eq(in.err.code, 0, "%s", in.err.message);
    for (size_t i = 0; i < n; i++)
        codes[i] = ops[i].err.code;
}

static int32_t insert1(eng_db_t *db, const char *json)
{
    eng_wop_t op;
    int32_t code;
    insert_batch(db, &json, 1, &code, &op);
    eng_wop_cleanup(&op);
    return code;
}

/* Names of the secondary indexes of test.c at snap, comma separated. */
static void index_names(eng_db_t *db, int64_t snap, char *out, size_t size)
{
    out[0] = '\0';
    eng_coll_t *c = eng_coll_get(db, "test", "c", snap);
    if (!c) {
        snprintf(out, size, "(no collection)");
        return;
    }
    const bson_t **specs;
    size_t n = eng_coll_indexes(c, snap, &specs);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        cr_assert(bson_iter_init_find(&it, specs[i], "name"));
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? "," : "",
                                 bson_iter_utf8(&it, NULL));
    }
    free(specs);
}

Test(eng_index, create_and_drop_are_catalog_ops_seen_at_every_snapshot)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\"}]}",
                   &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    cr_assert(op.created_coll, "the collection is created implicitly");
    cr_assert_eq(op.nindexes_before, 1);
    cr_assert_eq(op.nindexes_after, 2);
    int64_t s_create = op.seq;
    cr_assert_eq(s_create, 1, "seq 0 is the implicit create");
    eng_wop_cleanup(&op);
    drop_indexes(db, "{\"index\": \"a_1\"}", &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    cr_assert_eq(op.nindexes_before, 2);
    int64_t s_drop = op.seq;
    eng_wop_cleanup(&op);
    char names[256];
    index_names(db, 0, names, sizeof names);
    cr_assert_str_eq(names, "", "before the createIndexes op");
    index_names(db, s_create, names, sizeof names);
    cr_assert_str_eq(names, "a_1");
    index_names(db, s_drop, names, sizeof names);
    cr_assert_str_eq(names, "", "dropped");
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, recreating_the_same_index_writes_nothing_and_conflicts_are_85_86)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    const char *spec = "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\", "
                       "\"unique\": true}]}";
    create_indexes(db, spec, &op);
    eng_wop_cleanup(&op);
    int64_t head = eng_db_snapshot(db);
    create_indexes(db, spec, &op);
    cr_assert_eq(op.err.code, 0);
    cr_assert_eq(op.seq, -1, "no op for an index that exists");
    cr_assert_eq(op.nindexes_before, 2);
    cr_assert_eq(op.nindexes_after, 2);
    cr_assert_eq(eng_db_snapshot(db), head);
    eng_wop_cleanup(&op);
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"b\": 1}, \"name\": \"a_1\"}]}",
                   &op);
    cr_assert_eq(op.err.code, BQ_ERR_IndexKeySpecsConflict, "same name, other key");
    eng_wop_cleanup(&op);
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"other\"}]}",
                   &op);
    cr_assert_eq(op.err.code, BQ_ERR_IndexOptionsConflict, "same key, other name");
    eng_wop_cleanup(&op);
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\"}]}",
                   &op);
    cr_assert_eq(op.err.code, BQ_ERR_IndexOptionsConflict, "same name and key, not unique");
    eng_wop_cleanup(&op);
    cr_assert_eq(eng_db_snapshot(db), head, "no failed create reached the log");
    drop_indexes(db, "{\"index\": \"_id_\"}", &op);
    cr_assert_eq(op.err.code, BQ_ERR_InvalidOptions);
    eng_wop_cleanup(&op);
    drop_indexes(db, "{\"index\": {\"_id\": 1}}", &op);
    cr_assert_eq(op.err.code, BQ_ERR_InvalidOptions);
    eng_wop_cleanup(&op);
    drop_indexes(db, "{\"index\": \"nope\"}", &op);
    cr_assert_eq(op.err.code, BQ_ERR_IndexNotFound);
    eng_wop_cleanup(&op);
    drop_indexes(db, "{\"index\": {\"a\": 1}}", &op);
    cr_assert_eq(op.err.code, 0, "by key pattern: %s", op.err.message);
    eng_wop_cleanup(&op);
    char names[256];
    index_names(db, eng_db_snapshot(db), names, sizeof names);
    cr_assert_str_eq(names, "");
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, unique_is_enforced_within_one_batch_with_key_pattern_and_value)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\", "
                       "\"unique\": true}]}",
                   &op);
    eng_wop_cleanup(&op);
    const char *docs[] = {
        "{\"_id\": 1, \"a\": 5}",
        "{\"_id\": 2, \"a\": 5.0}",      /* 5.0 == 5 */
        "{\"_id\": 3, \"a\": [6, 5]}",   /* multikey: 5 is taken */
        "{\"_id\": 4, \"a\": [7, 7]}",   /* one document repeating a key is fine */
        "{\"_id\": 5, \"a\": 7}",
        "{\"_id\": 6}",                  /* missing: null */
        "{\"_id\": 7, \"a\": null}",
    };
    int32_t codes[7];
    eng_wop_t ops[7];
    insert_batch(db, docs, 7, codes, ops);
    cr_assert_eq(codes[0], 0);
    cr_assert_eq(codes[1], BQ_ERR_DuplicateKey);
    cr_assert_eq(codes[2], BQ_ERR_DuplicateKey);
    cr_assert_eq(codes[3], 0);
    cr_assert_eq(codes[4], BQ_ERR_DuplicateKey);
    cr_assert_eq(codes[5], 0);
    cr_assert_eq(codes[6], BQ_ERR_DuplicateKey, "missing and null are the same key");
    cr_assert_str_eq(ops[1].err.message,
                     "E11000 duplicate key error collection: test.c index: a_1 dup key: "
                     "{ a: 5.0 }");
    cr_assert(ops[1].dup_key);
    bson_t *want = bson_new_from_json(
        (const uint8_t *)"{\"keyPattern\": {\"a\": 1}, \"keyValue\": {\"a\": 5.0}}", -1, NULL);
    cr_assert(bson_equal(ops[1].dup_key, want));
    bson_destroy(want);
    for (size_t i = 0; i < 7; i++)
        eng_wop_cleanup(&ops[i]);

    /* an update moving document 1 off key 5 frees it; the committer sees its own batch */
    eng_wop_t up[2];
    eng_wop_init(&up[0], ENG_WOP_UPDATE, "test", "c");
    BSON_APPEND_INT32(&up[0].doc, "_id", 1);
    BSON_APPEND_INT32(&up[0].doc, "a", 50);
    up[0].id = (bson_value_t){.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    eng_wop_init(&up[1], ENG_WOP_INSERT, "test", "c");
    BSON_APPEND_INT32(&up[1].doc, "_id", 8);
    BSON_APPEND_INT32(&up[1].doc, "a", 5);
    up[1].id = (bson_value_t){.value_type = BSON_TYPE_INT32, .value.v_int32 = 8};
    eng_intent_t in = {.ops = up, .nops = 2, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(up[0].err.code, 0, "%s", up[0].err.message);
    cr_assert_eq(up[1].err.code, 0, "key 5 was freed earlier in the batch: %s",
                 up[1].err.message);
    eng_wop_cleanup(&up[0]);
    eng_wop_cleanup(&up[1]);
    cr_assert_eq(insert1(db, "{\"_id\": 9, \"a\": 50}"), BQ_ERR_DuplicateKey);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, deleting_a_document_frees_its_keys)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\", "
                       "\"unique\": true}]}",
                   &op);
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"a\": [1, 2]}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"a\": 2}"), BQ_ERR_DuplicateKey);
    eng_wop_init(&op, ENG_WOP_DELETE, "test", "c");
    op.id = (bson_value_t){.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(op.err.code, 0);
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"a\": 2}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"a\": 1}"), 0);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, sparse_partial_and_compound_keys)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    create_indexes(db,
                   "{\"indexes\": ["
                   "{\"v\": 2, \"key\": {\"s\": 1}, \"name\": \"s_1\", \"unique\": true, "
                   "\"sparse\": true},"
                   "{\"v\": 2, \"key\": {\"p\": 1}, \"name\": \"p_1\", \"unique\": true, "
                   "\"partialFilterExpression\": {\"p\": {\"$gt\": 10}}},"
                   "{\"v\": 2, \"key\": {\"x\": 1, \"y\": -1}, \"name\": \"x_1_y_-1\", "
                   "\"unique\": true}]}",
                   &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    cr_assert_eq(op.nindexes_after, 4);
    eng_wop_cleanup(&op);
    /* sparse: documents without s are not indexed */
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"x\": 1, \"y\": 1}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"x\": 1, \"y\": 2}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"s\": 1, \"x\": 2}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 4, \"s\": 1, \"x\": 3}"), BQ_ERR_DuplicateKey);
    /* partial: only p > 10 is constrained */
    cr_assert_eq(insert1(db, "{\"_id\": 5, \"p\": 1, \"x\": 4}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 6, \"p\": 1, \"x\": 5}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 7, \"p\": 20, \"x\": 6}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 8, \"p\": 20, \"x\": 7}"), BQ_ERR_DuplicateKey);
    /* compound: the pair must differ */
    cr_assert_eq(insert1(db, "{\"_id\": 9, \"x\": 1, \"y\": 1}"), BQ_ERR_DuplicateKey);
    cr_assert_eq(insert1(db, "{\"_id\": 10, \"x\": [8, 9], \"y\": [1, 2]}"),
                 BQ_ERR_CannotIndexParallelArrays);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, unique_index_over_duplicates_fails_11000_and_writes_nothing)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"a\": \"x\"}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"a\": \"x\"}"), 0);
    int64_t head = eng_db_snapshot(db);
    eng_wop_t op;
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\", "
                       "\"unique\": true}]}",
                   &op);
    cr_assert_eq(op.err.code, BQ_ERR_DuplicateKey);
    cr_assert(strstr(op.err.message, "index: a_1 dup key: { a: \"x\" }"), "%s",
              op.err.message);
    eng_wop_cleanup(&op);
    cr_assert_eq(eng_db_snapshot(db), head);
    /* not unique: fine */
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\"}]}",
                   &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"a\": \"x\"}"), 0);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, collation_makes_case_variants_duplicates)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\", "
                       "\"unique\": true, \"collation\": {\"locale\": \"en\", \"strength\": 2}}]}",
                   &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"a\": \"Hello\"}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"a\": \"hello\"}"), BQ_ERR_DuplicateKey);
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"a\": \"hellö\"}"), 0, "strength 2 sees accents");
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

/* The indexes of the history above, checked after reopening. */
static void check_history(eng_db_t *db, int64_t s_two, int64_t s_dropped)
{
    char names[256];
    index_names(db, s_two, names, sizeof names);
    cr_assert_str_eq(names, "a_1,b_1");
    index_names(db, s_dropped, names, sizeof names);
    cr_assert_str_eq(names, "a_1");
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"a\": 1}"), BQ_ERR_DuplicateKey,
                 "still enforced after reopening");
    cr_assert_eq(insert1(db, "{\"_id\": 4, \"a\": 2}"), 0);
}

static void history(eng_db_t *db, int64_t *s_two, int64_t *s_dropped)
{
    eng_wop_t op;
    create_indexes(db,
                   "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\", "
                   "\"unique\": true}, {\"v\": 2, \"key\": {\"b\": 1}, \"name\": \"b_1\"}]}",
                   &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    *s_two = op.seq;
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"a\": 1}"), 0);
    drop_indexes(db, "{\"index\": [\"b_1\"]}", &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    *s_dropped = op.seq;
    eng_wop_cleanup(&op);
}

Test(eng_index, definitions_survive_a_full_replay)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    int64_t s_two, s_dropped;
    history(db, &s_two, &s_dropped);
    eng_db_close(db);
    db = t_db_open(path, &full_replay, NULL);
    eng_db_status_t status;
    eng_db_status(db, &status);
    cr_assert_eq(status.checkpoint_seq, -1, "replayed from the log alone");
    check_history(db, s_two, s_dropped);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, definitions_survive_a_checkpoint)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    int64_t s_two, s_dropped;
    history(db, &s_two, &s_dropped);
    bq_error_t err;
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    int64_t ck = eng_db_snapshot(db);
    eng_db_close(db);
    db = t_db_open(path, &manual, NULL);
    eng_db_status_t status;
    eng_db_status(db, &status);
    cr_assert_eq(status.checkpoint_seq, ck, "loaded from the checkpoint");
    cr_assert_eq(status.replayed_ops, 0);
    check_history(db, s_two, s_dropped);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

static void index_mod(eng_db_t *db, const char *json, eng_wop_t *op)
{
    bson_error_t berr;
    eng_wop_init(op, ENG_WOP_INDEX_MOD, "test", "c");
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &berr);
    cr_assert(doc, "%s", berr.message);
    bson_concat(&op->doc, doc);
    bson_destroy(doc);
    eng_intent_t in = {.ops = op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
}

/* Whether field `key` of the current spec of index `name` of test.c is true. */
static bool spec_field(eng_db_t *db, const char *name, const char *key)
{
    int64_t snap = eng_db_snapshot(db);
    eng_coll_t *c = eng_coll_get(db, "test", "c", snap);
    const bson_t **specs;
    size_t n = eng_coll_indexes(c, snap, &specs);
    bool found = false, value = false;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, specs[i], "name") &&
            strcmp(bson_iter_utf8(&it, NULL), name) == 0) {
            found = true;
            value = bson_iter_init_find(&it, specs[i], key) && bson_iter_as_bool(&it);
        }
    }
    free(specs);
    cr_assert(found, "index %s", name);
    return value;
}

Test(eng_index, prepare_unique_then_conversion_to_unique_replays)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"x\": 1}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"x\": 1}"), 0);
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"x\": 1}, \"name\": \"x_1\"}]}",
                   &op);
    eng_wop_cleanup(&op);
    index_mod(db, "{\"index\": {\"name\": \"x_1\", \"unique\": true}}", &op);
    cr_assert_eq(op.err.code, BQ_ERR_InvalidOptions, "not prepared");
    eng_wop_cleanup(&op);
    index_mod(db, "{\"index\": {\"keyPattern\": {\"x\": 1}, \"prepareUnique\": true}}", &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    cr_assert(spec_field(db, "x_1", "prepareUnique"));
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"x\": 1}"), BQ_ERR_DuplicateKey,
                 "prepared: no new duplicates");
    cr_assert_eq(insert1(db, "{\"_id\": 4, \"x\": 2}"), 0);
    int64_t head = eng_db_snapshot(db);
    index_mod(db, "{\"index\": {\"name\": \"x_1\", \"unique\": true}}", &op);
    cr_assert_eq(op.err.code, BQ_ERR_CannotConvertIndexToUnique);
    bson_t *want = bson_new_from_json(
        (const uint8_t *)"{\"violations\": [{\"ids\": [1, 2]}]}", -1, NULL);
    cr_assert(op.info && bson_equal(op.info, want));
    bson_destroy(want);
    eng_wop_cleanup(&op);
    cr_assert_eq(eng_db_snapshot(db), head, "a refused conversion writes nothing");
    /* delete the duplicate, then convert */
    eng_wop_init(&op, ENG_WOP_DELETE, "test", "c");
    op.id = (bson_value_t){.value_type = BSON_TYPE_INT32, .value.v_int32 = 2};
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    eng_wop_cleanup(&op);
    index_mod(db, "{\"index\": {\"name\": \"x_1\", \"unique\": true}}", &op);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    eng_wop_cleanup(&op);
    cr_assert(spec_field(db, "x_1", "unique"));
    cr_assert(!spec_field(db, "x_1", "prepareUnique"));
    eng_db_close(db);
    db = t_db_open(path, &full_replay, NULL);
    cr_assert(spec_field(db, "x_1", "unique"), "replayed");
    cr_assert_eq(insert1(db, "{\"_id\": 5, \"x\": 2}"), BQ_ERR_DuplicateKey);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

/* The _ids (ints) eng_coll_index_lookup returns for a.<path> == v at snap, comma separated;
 * "none" when no index answers. */
static void lookup_ids(eng_db_t *db, int64_t snap, const char *path, int v, char *out,
                       size_t size)
{
    eng_coll_t *c = eng_coll_get(db, "test", "c", snap);
    bson_value_t val = {.value_type = BSON_TYPE_INT32, .value.v_int32 = v};
    eng_doc_t *docs;
    size_t n;
    out[0] = '\0';
    if (!c || !eng_coll_index_lookup(c, snap, path, &val, 1, &docs, &n, NULL)) {
        snprintf(out, size, "none");
        return;
    }
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        bson_t d;
        bson_iter_t it;
        cr_assert(bson_init_static(&d, docs[i].data, docs[i].len));
        cr_assert(bson_iter_init_find(&it, &d, "_id"));
        used += (size_t)snprintf(out + used, size - used, "%s%d", i ? "," : "",
                                 bson_iter_int32(&it));
    }
    free(docs);
}

static int64_t update1(eng_db_t *db, const char *json)
{
    eng_wop_t op;
    bson_error_t berr;
    eng_wop_init(&op, ENG_WOP_UPDATE, "test", "c");
    bson_t *d = bson_new_from_json((const uint8_t *)json, -1, &berr);
    cr_assert(d, "%s", berr.message);
    bson_concat(&op.doc, d);
    bson_destroy(d);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &op.doc, "_id"));
    bson_value_copy(bson_iter_value(&it), &op.id);
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    int64_t seq = op.seq;
    eng_wop_cleanup(&op);
    return seq;
}

/* Several values at once ($in): the union in natural order, each document once, and the
 * number of matching index entries. */
Test(eng_index, lookup_of_several_values)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    eng_wop_t op;
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\"}]}",
                   &op);
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"a\": 5}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"a\": [6, 5]}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"a\": 7}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 4, \"a\": 6.0}"), 0);
    /* long keys (past bq_key_t's inline buffer) as well */
    cr_assert_eq(insert1(db, "{\"_id\": 5, \"a\": \"a string longer than sixty-four bytes, so "
                             "that its key lives on the heap\"}"), 0);
    int64_t snap = eng_db_snapshot(db);
    eng_coll_t *c = eng_coll_get(db, "test", "c", snap);
    cr_assert_not_null(c);
    bson_value_t v[4] = {
        {.value_type = BSON_TYPE_INT64, .value.v_int64 = 6},
        {.value_type = BSON_TYPE_DOUBLE, .value.v_double = 5.0},
        {.value_type = BSON_TYPE_INT32, .value.v_int32 = 99},
        {.value_type = BSON_TYPE_UTF8},
    };
    const char *str = "a string longer than sixty-four bytes, so that its key lives on the heap";
    v[3].value.v_utf8.str = (char *)str;
    v[3].value.v_utf8.len = (uint32_t)strlen(str);
    eng_doc_t *docs;
    size_t n, entries;
    cr_assert(eng_coll_index_lookup(c, snap, "a", v, 4, &docs, &n, &entries));
    int want[] = {1, 2, 4, 5};
    cr_assert_eq(n, 4, "documents 1, 2 (holding 6 and 5), 4 and 5, each once");
    for (size_t i = 0; i < n; i++) {
        bson_t d;
        bson_iter_t it;
        cr_assert(bson_init_static(&d, docs[i].data, docs[i].len));
        cr_assert(bson_iter_init_find(&it, &d, "_id"));
        cr_assert_eq(bson_iter_int32(&it), want[i], "natural order at %zu", i);
    }
    cr_assert_eq(entries, 5, "document 2 matches under two values");
    free(docs);
    cr_assert(eng_coll_index_lookup(c, snap, "a", v, 0, &docs, &n, &entries), "$in: []");
    cr_assert_eq(n, 0);
    cr_assert_eq(entries, 0);
    free(docs);
    bson_value_t bad[2] = {v[0], {.value_type = BSON_TYPE_NULL}};
    cr_assert_not(eng_coll_index_lookup(c, snap, "a", bad, 2, &docs, &n, NULL),
                  "null also matches a missing field: not an index lookup");
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_index, equality_lookup_at_every_snapshot_in_natural_order)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    cr_assert_eq(insert1(db, "{\"_id\": 1, \"a\": 5}"), 0);
    cr_assert_eq(insert1(db, "{\"_id\": 2, \"a\": 6}"), 0);
    int64_t s_before = eng_db_snapshot(db);
    eng_wop_t op;
    create_indexes(db, "{\"indexes\": [{\"v\": 2, \"key\": {\"a\": 1}, \"name\": \"a_1\"}, "
                       "{\"v\": 2, \"key\": {\"b.c\": 1}, \"name\": \"b.c_1\"}]}",
                   &op);
    int64_t s_index = op.seq;
    eng_wop_cleanup(&op);
    cr_assert_eq(insert1(db, "{\"_id\": 3, \"a\": [7, 5], \"b\": [{\"c\": 1}, {\"c\": 2}]}"), 0);
    int64_t s3 = eng_db_snapshot(db);
    int64_t s_up = update1(db, "{\"_id\": 1, \"a\": 6}");
    char ids[128];
    lookup_ids(db, s_before, "a", 5, ids, sizeof ids);
    cr_assert_str_eq(ids, "none", "no index before its createIndexes op");
    lookup_ids(db, s_index, "a", 5, ids, sizeof ids);
    cr_assert_str_eq(ids, "1");
    lookup_ids(db, s3, "a", 5, ids, sizeof ids);
    cr_assert_str_eq(ids, "1,3", "multikey, natural order");
    lookup_ids(db, s_up, "a", 5, ids, sizeof ids);
    cr_assert_str_eq(ids, "3", "document 1 moved to 6");
    lookup_ids(db, s_up, "a", 6, ids, sizeof ids);
    cr_assert_str_eq(ids, "1,2");
    lookup_ids(db, s_up, "b.c", 2, ids, sizeof ids);
    cr_assert_str_eq(ids, "3", "dotted path through an array of documents");
    lookup_ids(db, s_up, "z", 5, ids, sizeof ids);
    cr_assert_str_eq(ids, "none", "no index on z");
    /* after a checkpoint and reopen, postings are rebuilt from the versions in memory:
     * old versions are left in the log (not loaded), so the index answers only from the
     * end of the newest of those (s_up, where document 1's first version ended) and the
     * caller scans before that */
    bq_error_t err;
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    eng_db_close(db);
    db = t_db_open(path, &manual, NULL);
    lookup_ids(db, s3, "a", 5, ids, sizeof ids);
    cr_assert_str_eq(ids, "none", "not covered: the version of _id 1 at s3 is on disk");
    lookup_ids(db, s_up, "a", 5, ids, sizeof ids);
    cr_assert_str_eq(ids, "3");
    lookup_ids(db, s_up, "a", 6, ids, sizeof ids);
    cr_assert_str_eq(ids, "1,2");
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}
