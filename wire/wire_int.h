/*
 * wire_int.h: what the files of wire/ share and nobody else sees: the server and
 * connection objects, the command context, and the command table.
 *
 * Flow of one request (see wire_server.c for the threads):
 *   bytes -> wire_frame_peek/parse (wire_frame.c, pure)
 *         -> wire_dispatch (wire_dispatch.c: the checks every command shares, run once)
 *         -> cmd_<name> handler (cmd_*.c: fills the reply body, or fails with a bq_error_t)
 *         -> wire_dispatch turns success or error into the reply document
 *         -> wire_frame_build_msg/_reply -> bytes.
 */
#ifndef WIRE_INT_H
#define WIRE_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "eng.h"
#include "eng_db.h"
#include "wire.h"
#include "wire_frame.h"
#include "bq_type.h"

typedef struct wire_server wire_server_t;
typedef struct wire_conn wire_conn_t;
typedef struct wire_request wire_request_t;
typedef struct wire_cmd_ctx wire_cmd_ctx_t;

/* ---- commands ---- */

/* Command flags. */
#define WIRE_CMD_ADMIN_ONLY (1u << 0) /* must run on the admin database */
#define WIRE_CMD_OP_QUERY (1u << 1)   /* may arrive as legacy OP_QUERY (the handshake) */
#define WIRE_CMD_WRITE (1u << 2)      /* changes data: refused in read-only mode */
#define WIRE_CMD_TEST (1u << 3)       /* exists only with enableTestCommands */
#define WIRE_CMD_API_V1 (1u << 4)     /* part of the Stable API, version 1 (apiStrict) */

/* A handler appends its reply fields to ctx->reply and returns true, or returns false with
 * err set (and whatever it appended is discarded). A handler that must wait for a write
 * calls wire_cmd_submit() and returns true: the command is then pending, and `resume` is
 * called on the same I/O thread when the write completes, with the same contract. */
typedef bool (*wire_cmd_fn)(wire_cmd_ctx_t *ctx, bq_error_t *err);

struct wire_cmd_ctx {
    wire_server_t *server;
    wire_conn_t *conn;
    const bson_t *cmd;     /* the whole command document */
    const char *name;      /* the command's name as the client spelled it (first key) */
    const char *db;        /* $db, or the OP_QUERY namespace's database */
    bool legacy;           /* arrived as OP_QUERY */
    bool api_strict;       /* the command declared apiVersion "1" with apiStrict: true */
    /* readConcern level "snapshot" (wire_read_snapshot): the reply says which cluster
     * time it read at, in cursor.atClusterTime (or at the top for distinct), so that a
     * driver's snapshot session reads every later command at the same moment */
    bool snapshot_read;
    uint32_t snapshot_t, snapshot_i;
    bson_t *reply;         /* the handler appends its fields; "ok" is added by dispatch */
    /* asynchronous commands */
    bool pending;          /* set by wire_cmd_submit */
    wire_cmd_fn resume;
    void *state;           /* the handler's state across resumes */
    void (*state_free)(void *state); /* called when the request ends, if set */
    wire_request_t *req;
};

/* Queues a write intent for the engine's committer and marks the command pending: the
 * handler returns true right after, and `resume` runs when the intent is done. */
void wire_cmd_submit(wire_cmd_ctx_t *ctx, eng_intent_t *intent, wire_cmd_fn resume);

typedef struct wire_command {
    const char *name;
    wire_cmd_fn fn;
    unsigned flags;
    const char *help;
} wire_command_t;

/* Per-command counters, one slot per table entry, updated by every I/O thread. */
typedef struct wire_cmd_stats {
    _Atomic uint64_t calls;
    _Atomic uint64_t failed;
    _Atomic uint64_t micros;
} wire_cmd_stats_t;

/* The table (wire_commands.c), sorted by name. */
extern const wire_command_t wire_commands[];
extern const size_t wire_commands_count;
const wire_command_t *wire_command_find(const char *name);

/* ---- dispatch (wire_dispatch.c) ---- */

/* One request from a parsed frame to its reply; it outlives one event when the command
 * waits for a write. */
struct wire_request {
    wire_msg_t msg;        /* owned */
    bson_t reply;
    int32_t reply_flags;   /* OP_REPLY responseFlags (QueryFailure for a legacy error) */
    bool legacy;           /* answer with OP_REPLY */
    wire_cmd_ctx_t ctx;
    const wire_command_t *cmd;
    uint64_t t0;
    char dbbuf[64];
    wire_request_t *next;  /* completion queue of the I/O thread */
    bson_t *reply_extra;   /* fields appended to the reply (errorLabels, writeConcernError
                              of a test fail point), or NULL */
    /* the operation in progress (cmd_admin.c: currentOp, killOp, top) */
    int64_t opid;          /* 0 until listed */
    int64_t started_ms;    /* wall clock when it started */
    _Atomic bool killed;   /* killOp named it */
    bool held;             /* its write waits for fsyncUnlock (under the admin lock) */
    wire_request_t *op_prev, *op_next;
};

/* Starts a request for `msg`, whose contents it takes over (msg is left cleaned up).
 * Returns the request; wire_request_finished() says whether its reply is ready. */
wire_request_t *wire_request_start(wire_server_t *server, wire_conn_t *conn, wire_msg_t *msg);
/* Continues a pending request after its write completed. */
void wire_request_resume(wire_request_t *req);
bool wire_request_finished(const wire_request_t *req);
void wire_request_free(wire_request_t *req);

/* ---- test fail points (wire_failpoint.c) ---- */

/* True when the failCommand fail point fires for command `cmd`; *data gets a copy of the
 * fail point's data (the caller destroys it). */
bool wire_failpoint_hit(const char *cmd, bson_t **data);

/* Builds the error reply {ok: 0, errmsg, code, codeName} into an initialized document. */
void wire_reply_error(bson_t *reply, const bq_error_t *err);

/* ---- administration (cmd_admin.c) ---- */

/* The server's list of operations in progress, the per-namespace counters of top, the
 * profiler settings and the fsync lock; created with the server. */
struct wire_admin;
struct wire_admin *wire_admin_new(void);
void wire_admin_destroy(struct wire_admin *a);
/* Lists a request that passed dispatch's checks as an operation in progress (an opid for
 * currentOp and killOp). */
void wire_admin_op_begin(wire_server_t *server, wire_request_t *req);
/* Unlists it and adds its time to top's counters of its namespace; a request never
 * listed is ignored, and a second call does nothing. */
void wire_admin_op_end(wire_server_t *server, wire_request_t *req, uint64_t micros);
/* The slow-operation threshold of the command log (profile's slowms), in ms. */
int64_t wire_admin_slow_ms(const wire_server_t *server);
/* While the server is fsync-locked, takes an intent with ops (owner set) and holds it
 * until the last fsyncUnlock, returning true; false when writes go through. */
bool wire_admin_hold_write(wire_server_t *server, eng_intent_t *intent);
/* The operations in progress as $currentOp and currentOp list them: *docs is a malloc'ed
 * array of new documents the caller destroys (and frees). */
void wire_admin_current_ops(wire_server_t *server, bool idle_connections, bson_t ***docs,
                            size_t *n);
/* Submits every held write and drops the fsync lock (shutdown must not wait for an
 * fsyncUnlock that will never come). */
void wire_admin_release_writes(wire_server_t *server);
/* True while an fsync lock is held (the TTL monitor then does not delete). */
bool wire_admin_fsync_locked(wire_server_t *server);

/* ---- the TTL monitor (wire_ttl.c) ---- */

/* Starts the monitor thread: a pass every sleep_secs seconds (<= 0: 60) while enabled.
 * NULL with InternalError when the thread cannot start. */
struct wire_ttl *wire_ttl_start(wire_server_t *server, int32_t sleep_secs, bool enabled,
                                bq_error_t *err);
/* Stops it, letting a pass's deletes in flight finish; before eng_db_close. NULL: no-op. */
void wire_ttl_stop(struct wire_ttl *t);
/* ttlMonitorSleepSecs and ttlMonitorEnabled, read and set at runtime (setParameter); a
 * change wakes the monitor so that the new interval counts from its last pass. */
int32_t wire_ttl_sleep_secs(const struct wire_ttl *t);
bool wire_ttl_enabled(const struct wire_ttl *t);
void wire_ttl_set_sleep_secs(struct wire_ttl *t, int32_t secs);
void wire_ttl_set_enabled(struct wire_ttl *t, bool on);
/* serverStatus metrics.ttl: documents deleted and passes run since start. */
void wire_ttl_metrics(const struct wire_ttl *t, int64_t *deleted, int64_t *passes);

/* ---- the server (wire_server.c) ---- */

typedef struct wire_opcounters {
    _Atomic uint64_t insert, query, update, del, getmore, command;
} wire_opcounters_t;

struct wire_server {
    const wire_config_t *cfg;
    time_t started;                    /* wall clock at start, for uptime */
    struct timespec started_mono;
    char host[256];                    /* "hostname:port" */
    _Atomic uint64_t next_conn_id;
    _Atomic int64_t conns_current;
    _Atomic uint64_t conns_total;
    wire_opcounters_t opcounters;
    wire_cmd_stats_t *cmd_stats;       /* wire_commands_count entries */
    struct wire_sessions *sessions;
    eng_db_t *db;                      /* the store */
    struct wire_cursors *cursors;      /* open cursors (wire_cursor.c) */
    struct wire_admin *admin;          /* operations in progress, top, fsync lock
                                          (cmd_admin.c); NULL: none kept */
    struct wire_ttl *ttl;              /* the TTL monitor (wire_ttl.c); NULL: none */
    /* ...threads and listener: private to wire_server.c */
    struct wire_server_impl *impl;
};

struct wire_conn {
    wire_server_t *server;
    uint64_t id;                       /* connectionId, unique per server */
    char peer[64];                     /* "127.0.0.1:54321" */
    char local[64];
    bool hello_seen;
    struct wire_io_thread *thread;
    bool closing;                      /* close once the output buffer drains */
    wire_request_t *inflight;          /* a command waiting for its write, or NULL */
    wire_conn_t *prev, *next;          /* the owning I/O thread's list */
};

/* Hands a completed write back to its connection's I/O thread (called by the committer). */
void wire_server_intent_done(eng_intent_t *intent);

/* Microseconds since the server started (monotonic). */
uint64_t wire_server_uptime_micros(const wire_server_t *server);

/* ---- sessions (wire_session.c) ---- */

/* Logical sessions by lsid (a UUID). Sessions are only tracked for now: commands that
 * carry an lsid refresh it; they expire after logicalSessionTimeoutMinutes idle. */
#define WIRE_SESSION_TIMEOUT_MINUTES 30

struct wire_sessions *wire_sessions_new(void);
void wire_sessions_destroy(struct wire_sessions *s);
/* Records use of the session whose id document is `lsid` ({id: UUID}). False with err
 * (BadValue / InvalidUUID-like codes) when lsid is malformed. */
bool wire_sessions_touch(struct wire_sessions *s, const bson_t *lsid, bq_error_t *err);
bool wire_sessions_end(struct wire_sessions *s, const bson_t *lsid);
size_t wire_sessions_count(struct wire_sessions *s);
/* The live sessions as $listLocalSessions reports them: {_id: {id: UUID, uid: the
 * SHA-256 of the empty user name}, lastUse: Date}. *docs is a malloc'ed array of new
 * documents the caller frees (with the array). */
void wire_sessions_list(struct wire_sessions *s, bson_t ***docs, size_t *n);
/* Starts a new session: appends {id: UUID} to `out` as field `key`. */
void wire_sessions_start(struct wire_sessions *s, bson_t *out, const char *key);

/* ---- cursors (wire_cursor.c) ---- */

struct wire_cursors *wire_cursors_new(void);
void wire_cursors_destroy(struct wire_cursors *c);

/* ---- log (wire_log.c) ---- */

/* Appends {totalLinesWritten, log: [the most recent lines]} for getLog "global". */
void wire_log_append_recent(bson_t *reply);

/* ---- small helpers (wire_util.c) ---- */

/* The wall-clock time in milliseconds since the epoch; appended as a BSON date. */
int64_t wire_now_ms(void);
void wire_append_now(bson_t *doc, const char *key);

/* Checks a collection name in `db` as MongoDB does (InvalidNamespace, 73). */
bool wire_ns_check(const char *db, const char *coll, bq_error_t *err);

/* The collection named by the command's first field; for_write also refuses system.*
 * names outside MongoDB's allow list. Errors: InvalidNamespace. */
bool wire_arg_coll(wire_cmd_ctx_t *ctx, bool for_write, const char **coll, bq_error_t *err);

/* Optional typed arguments of the command. Absent (or null) leaves *present false (and
 * the default). Present with the wrong type: TypeMismatch naming '<command>.<key>'.
 * wire_arg_doc's *out borrows from the command (always initialized). */
bool wire_arg_doc(wire_cmd_ctx_t *ctx, const char *key, bson_t *out, bool *present,
                  bq_error_t *err);
bool wire_arg_array(wire_cmd_ctx_t *ctx, const char *key, bson_iter_t *arr, bool *present,
                    bq_error_t *err);
bool wire_arg_int64(wire_cmd_ctx_t *ctx, const char *key, int64_t *out, bool *present,
                    bq_error_t *err);
bool wire_arg_bool(wire_cmd_ctx_t *ctx, const char *key, bool dflt, bool *out,
                   bq_error_t *err);

/* True when filter is {_id: <plain value>} (not an operator document, regex or array), the
 * form the _id index answers (mongod's IDHACK); *id is a shallow copy borrowing from
 * filter. NULL is allowed (false). */
bool wire_filter_id_eq(const bson_t *filter, bson_value_t *id);

/* How a secondary index answers a filter (wire_ixscan_run). */
typedef struct wire_ixscan {
    const bson_t *spec;     /* the index's spec as listIndexes shows it (borrowed, valid
                               until eng_db_close) */
    const char *field;      /* its one field (borrowed from the filter) */
    uint32_t pred;          /* the place of that field's predicate among the filter's
                               top-level fields */
    bool descending;        /* the key is {field: -1} (points are then in descending order) */
    bson_value_t *points;   /* the values looked up, in index order, each key once; shallow,
                               borrowing from the filter */
    size_t npoints;
    int64_t keys;           /* index entries read: the documents found under every point */
    eng_doc_t *docs;        /* the candidates: each document once, in natural order */
    size_t ndocs;
} wire_ixscan_t;

/* The one decision of which reads use a secondary index, shared by the reads (cmd_find.c:
 * find, count, distinct and the writes' reads through wire_collect) and by explain: the
 * first top-level field of `filter` (not _id, not an operator) whose predicate is an
 * equality with a value an index can look up ({f: v}, {f: {$eq: v}}) or {f: {$in: [v...]}}
 * of such values (no null, regex or array), on a field with a single-field index visible
 * at snap that is not hidden and has no collation or partial filter, and whose lookups the
 * engine answers (eng_coll_index_lookup). Fills ix with the index, the points and the
 * union of the candidates (not yet filtered: the caller matches them against the whole
 * filter) and returns true; false when the read must scan (ix is then empty). The caller
 * passes no filter when a collation is in force (the indexes compare binary). Always
 * wire_ixscan_cleanup(ix). */
bool wire_ixscan_run(eng_coll_t *c, int64_t snap, const bson_t *filter, wire_ixscan_t *ix);
void wire_ixscan_cleanup(wire_ixscan_t *ix);

/* Compiles a query filter with the command's `let` variables visible to $expr, comparing
 * strings by `collation` (NULL: binary). */
bq_match_t *wire_match_compile(wire_cmd_ctx_t *ctx, const bson_t *filter,
                               const bq_collation_t *collation, bq_error_t *err);

/* Compiles a projection with the command's `let` variables visible to its expressions. */
struct bq_project;
struct bq_project *wire_project_compile(wire_cmd_ctx_t *ctx, const bson_t *projection,
                                        bq_error_t *err);

/* The `collation` field of holder (the command, or one write statement): *out NULL when
 * absent or {locale: "simple"}; else a new collation the caller destroys. */
bool wire_collation(const bson_t *holder, bq_collation_t **out, bq_error_t *err);

/* True for the arguments any command may carry besides its own (mongod's generic
 * arguments: $db, lsid, writeConcern, readConcern, comment, maxTimeMS, the Stable API's,
 * ...): handlers that copy or check their own fields skip these. */
bool wire_generic_arg(const char *key);

/* The `hint` of holder (a command, or one update/delete statement), checked as mongod
 * checks it: an index name (string) or key pattern (document) of an index of c at snap,
 * or {$natural: 1 | -1}. *natural_dir (may be NULL) gets the $natural direction, 0 for
 * any other hint or none. A hint naming no index is BadValue (2) "hint provided does not
 * correspond to an existing index"; another type is 2 too. A missing collection (c NULL)
 * accepts any well-formed hint, as mongod's empty plan does. NEDB plans by itself: an
 * existing index's hint changes nothing but is checked. */
bool wire_hint_check(const bson_t *holder, eng_coll_t *c, int64_t snap, int *natural_dir,
                     bq_error_t *err);

/* After eng_scan_next returned false: true at the real end, false with err when an old
 * version could not be read back from the log (eng_db.h), so a read never passes a
 * document it failed to load off as absent. */
bool wire_scan_done(const eng_scan_t *scan, bq_error_t *err);

/* The snapshot a read runs at: the newest committed op, or the one chosen by asOf: <seq>
 * or readConcern.atClusterTime (DESIGN.md section 5). With readConcern level "snapshot"
 * it marks the command so the dispatcher adds atClusterTime to the reply (the one asked
 * for, else the newest op's). */
bool wire_read_snapshot(wire_cmd_ctx_t *ctx, int64_t *snap, bq_error_t *err);

#endif
