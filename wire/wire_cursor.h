/*
 * wire_cursor.h: server-side cursors for find, listCollections, listIndexes and aggregate:
 * what a cursor reads from, how batches are cut, and the table of open cursors shared by
 * all connections (drivers may send getMore on any pooled connection).
 */
#ifndef WIRE_CURSOR_H
#define WIRE_CURSOR_H

#include "bq_project.h"
#include "wire_int.h"

#define WIRE_CURSOR_DEFAULT_FIRST_BATCH 101
#define WIRE_CURSOR_IDLE_SECONDS 600
/* A batch stops before its documents pass this many bytes (room is left for the reply's
 * own fields under the 16 MiB maxBsonObjectSize); it always holds at least one. */
#define WIRE_CURSOR_BATCH_BYTES (16 * 1024 * 1024 - 16 * 1024)

typedef struct wire_cursor {
    int64_t id;                 /* 0 until registered */
    char ns[ENG_NS_MAX + 1];    /* "db.coll" as reported in replies */
    /* source 1: a scan of a collection with a filter */
    bool use_scan;
    eng_scan_t scan;
    bq_match_t *match;          /* owned; NULL matches everything */
    /* source 2: documents collected beforehand (sorted results, produced documents) */
    eng_doc_t *docs;
    size_t ndocs, pos;
    bson_t **owned;             /* documents this cursor produced itself, owned */
    size_t nowned;
    /* source 3: a producer pulled on demand (an aggregation pipeline): pull() returns 1
     * with *doc (owned by the caller), 0 at the end, -1 with err; pull_free() releases
     * pull_ctx when the cursor is destroyed. Documents are pulled only as batches need
     * them, so a streaming pipeline never runs ahead of the client. */
    int (*pull)(void *pull_ctx, bson_t **doc, bq_error_t *err);
    void (*pull_free)(void *pull_ctx);
    void *pull_ctx;
    bson_t *pulled;             /* the last document pulled (it may be `held`), owned */
    bool have_error;            /* the look-ahead after a full batch failed: the error is */
    bq_error_t error;           /* reported by the next getMore */
    /* shaping */
    bq_project_t *proj;         /* owned; NULL returns documents as stored */
    bson_t *filter;             /* owned copy of the query, for positional projections */
    int64_t skip;               /* documents still to skip */
    int64_t limit;              /* documents still to return; -1 unlimited */
    bool have_held;             /* a document that did not fit in the previous batch */
    eng_doc_t held;
    /* the table's bookkeeping */
    time_t last_used;
    bool in_use;
} wire_cursor_t;

wire_cursor_t *wire_cursor_new(const char *db, const char *coll);
void wire_cursor_destroy(wire_cursor_t *cur);

/* Adds a document the cursor owns (copied), for produced results. */
void wire_cursor_add_owned(wire_cursor_t *cur, const bson_t *doc);

/* Appends up to `batch` documents (negative: no count limit) to the array `arr` being built,
 * within WIRE_CURSOR_BATCH_BYTES. Returns false with err when a projection fails.
 * *exhausted says whether nothing is left. */
bool wire_cursor_fill(wire_cursor_t *cur, bson_t *arr, int64_t batch, bool *exhausted,
                      bq_error_t *err);

/* Appends {cursor: {<batch_key>: [...], id, ns}} to reply, registering the cursor when
 * documents remain and destroying it otherwise (the caller gives up ownership either
 * way). For a getMore the cursor is already registered: it is released or removed. */
bool wire_cursor_reply(wire_server_t *server, wire_cursor_t *cur, bson_t *reply,
                       const char *batch_key, int64_t batch, bool single_batch,
                       bq_error_t *err);

/* Takes the cursor `id` for a getMore (marks it in use). Errors: CursorNotFound (43). */
wire_cursor_t *wire_cursors_take(struct wire_cursors *t, int64_t id, bq_error_t *err);
/* Gives back a cursor taken for a getMore, or removes and destroys it when `done`. */
void wire_cursors_release(struct wire_cursors *t, wire_cursor_t *cur, bool done);
/* Kills a cursor; false when there is none with that id. */
bool wire_cursors_kill(struct wire_cursors *t, int64_t id);

#endif
