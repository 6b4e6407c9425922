/*
 * wire_dispatch.c: from a parsed request to a reply document. The checks every command
 * shares run here, once (Redis's processCommand() is the model): the body names a command
 * as its first key, `$db` is present and valid, the command is in the table, admin-only
 * commands run on admin, and the legacy OP_QUERY path only carries the handshake.
 * Handlers never repeat these checks. This is also the only place where a bq_error_t
 * becomes {ok: 0, errmsg, code, codeName}, and where per-command counters and the
 * command log lines (levels 1 to 3) are kept.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire_int.h"

void wire_reply_error(bson_t *reply, const bq_error_t *err)
{
    char name[64];
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", err->message);
    BSON_APPEND_INT32(reply, "code", err->code);
    BSON_APPEND_UTF8(reply, "codeName", bq_code_name_write(err->code, name, sizeof name));
}

/* Database names as MongoDB accepts them: non-empty, < 64 bytes, none of / \ . " $ space
 * or NUL. */
static bool db_name_valid(const char *db, uint32_t len)
{
    if (len == 0 || len >= 64)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (db[i] == '\0' || strchr("/\\. \"$", db[i]))
            return false;
    return true;
}

/* The Stable API parameters (MongoDB's "Stable API" page): apiVersion, when given, must be
 * the string "1" (else 322 APIVersionError); apiStrict and apiDeprecationErrors are
 * booleans and need an apiVersion (4886600); with apiStrict: true a command outside API
 * V1 is 323 APIStrictError, and the handlers learn it through ctx->api_strict (aggregate
 * refuses the stages outside V1). NEDB deprecates nothing, so apiDeprecationErrors only
 * gets its type checked. */
static bool api_check(wire_cmd_ctx_t *ctx, const wire_command_t *cmd, bq_error_t *err)
{
    static const char *const flags[] = {"apiStrict", "apiDeprecationErrors"};
    /* one walk of the command's fields (this runs for every command) */
    bson_iter_t it, version, strict_it, deprecation_it; /* bson_iter_t cannot be an array */
    bson_iter_t *flag[2] = {&strict_it, &deprecation_it};
    bool has_version = false, has_flag[2] = {false, false};
    bson_iter_init(&it, ctx->cmd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strncmp(k, "api", 3) != 0)
            continue;
        if (!has_version && !strcmp(k, "apiVersion")) {
            version = it;
            has_version = true;
        }
        for (size_t i = 0; i < 2; i++) {
            if (!has_flag[i] && !strcmp(k, flags[i])) {
                *flag[i] = it;
                has_flag[i] = true;
            }
        }
    }
    if (has_version && !BSON_ITER_HOLDS_UTF8(&version)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'apiVersion' is the wrong type '%s', expected type 'string'",
                     bq_type_name(bson_iter_type(&version)));
        return false;
    }
    if (has_version && strcmp(bson_iter_utf8(&version, NULL), "1") != 0) {
        bq_error_set(err, BQ_ERR_APIVersionError, "API version must be \"1\"");
        return false;
    }
    for (size_t i = 0; i < 2; i++) {
        if (!has_flag[i])
            continue;
        if (!BSON_ITER_HOLDS_BOOL(flag[i])) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '%s' is the wrong type '%s', expected type 'bool'",
                         flags[i], bq_type_name(bson_iter_type(flag[i])));
            return false;
        }
        if (!has_version) {
            bq_error_set(err, 4886600,
                         "Provided apiStrict and/or apiDeprecationErrors without passing "
                         "apiVersion");
            return false;
        }
    }
    bool strict = has_flag[0] && bson_iter_bool(&strict_it);
    if (strict && !(cmd->flags & WIRE_CMD_API_V1)) {
        bq_error_set(err, BQ_ERR_APIStrictError,
                     "Provided apiStrict:true, but the command %s is not in API Version 1. "
                     "Information on supported commands and migrations in API Version 1 can "
                     "be found at https://dochub.mongodb.org/core/manual-versioning",
                     cmd->name);
        return false;
    }
    ctx->api_strict = strict;
    return true;
}

/* The shared checks. On success fills ctx->name, ctx->db and *cmdp. */
static bool dispatch_prepare(wire_cmd_ctx_t *ctx, const wire_msg_t *msg,
                             const wire_command_t **cmdp, char *dbbuf, size_t dbsize,
                             bq_error_t *err)
{
    bson_iter_t it;
    if (ctx->legacy) {
        /* OP_QUERY: the namespace must be <db>.$cmd and only the handshake may use it. */
        const char *dot = strchr(msg->ns, '.');
        if (!dot || strcmp(dot, ".$cmd") != 0) {
            bq_error_set(err, 5739101,
                         "OP_QUERY is no longer supported. The client driver may require an "
                         "upgrade. For more details see "
                         "https://dochub.mongodb.org/core/legacy-opcode-removal");
            return false;
        }
        size_t n = (size_t)(dot - msg->ns);
        if (n >= dbsize || !db_name_valid(msg->ns, (uint32_t)n)) {
            bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid database name: '%.*s'",
                         (int)n, msg->ns);
            return false;
        }
        memcpy(dbbuf, msg->ns, n);
        dbbuf[n] = '\0';
        ctx->db = dbbuf;
    } else {
        if (!bson_iter_init_find(&it, ctx->cmd, "$db")) {
            bq_error_set(err, 40571, "OP_MSG requests require a $db argument");
            return false;
        }
        if (!BSON_ITER_HOLDS_UTF8(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch, "$db is not a string");
            return false;
        }
        uint32_t len;
        const char *db = bson_iter_utf8(&it, &len);
        if (!db_name_valid(db, len)) {
            bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid database name: '%s'", db);
            return false;
        }
        ctx->db = db;
    }

    if (!bson_iter_init(&it, ctx->cmd) || !bson_iter_next(&it)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "empty command document");
        return false;
    }
    ctx->name = bson_iter_key(&it);
    const wire_command_t *cmd = wire_command_find(ctx->name);
    if (cmd && (cmd->flags & WIRE_CMD_TEST) && !wire_test_commands_enabled)
        cmd = NULL; /* as mongod: test commands do not exist unless enabled */
    if (!cmd) {
        bq_error_set(err, BQ_ERR_CommandNotFound, "no such command: '%s'", ctx->name);
        return false;
    }
    *cmdp = cmd;
    if (ctx->legacy && !(cmd->flags & WIRE_CMD_OP_QUERY)) {
        bq_error_set(err, BQ_ERR_UnsupportedOpQueryCommand,
                     "Unsupported OP_QUERY command: %s. The client driver may require an "
                     "upgrade. For more details see "
                     "https://dochub.mongodb.org/core/legacy-opcode-removal",
                     ctx->name);
        return false;
    }
    if (!api_check(ctx, cmd, err))
        return false;
    if ((cmd->flags & WIRE_CMD_ADMIN_ONLY) && strcmp(ctx->db, "admin") != 0) {
        bq_error_set(err, BQ_ERR_Unauthorized,
                     "%s may only be run against the admin database.", cmd->name);
        return false;
    }
    if (bson_iter_init_find(&it, ctx->cmd, "lsid") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_t lsid;
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&lsid, data, len) &&
            !wire_sessions_touch(ctx->server->sessions, &lsid, err))
            return false;
    }
    if (!cmd->fn) {
        bq_error_set(err, BQ_ERR_NotImplemented, "command %s is not implemented yet in NEDB",
                     cmd->name);
        return false;
    }
    return true;
}

/* A snapshot read's reply says when it read: cursor.atClusterTime for a cursor reply,
 * atClusterTime at the top otherwise (distinct), as mongod answers snapshot reads. */
static void reply_add_at_cluster_time(bson_t *reply, uint32_t t, uint32_t i)
{
    bson_t out = BSON_INITIALIZER, child;
    bson_iter_t it, sub;
    bool cursor = false;
    bson_iter_init(&it, reply);
    while (bson_iter_next(&it)) {
        if (!cursor && strcmp(bson_iter_key(&it), "cursor") == 0 &&
            BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub)) {
            cursor = true;
            BSON_APPEND_DOCUMENT_BEGIN(&out, "cursor", &child);
            while (bson_iter_next(&sub))
                bson_append_iter(&child, bson_iter_key(&sub), -1, &sub);
            bson_append_timestamp(&child, "atClusterTime", -1, t, i);
            bson_append_document_end(&out, &child);
        } else {
            bson_append_iter(&out, bson_iter_key(&it), -1, &it);
        }
    }
    if (!cursor)
        bson_append_timestamp(&out, "atClusterTime", -1, t, i);
    bson_reinit(reply);
    bson_concat(reply, &out);
    bson_destroy(&out);
}

/* Ends a request: turns the handler's outcome into the reply, counts and logs it. */
static void request_finish(wire_request_t *req, bool ok, bq_error_t *err)
{
    wire_cmd_ctx_t *ctx = &req->ctx;
    wire_server_t *server = ctx->server;
    bson_t *reply = &req->reply;
    if (ok) {
        if (ctx->snapshot_read)
            reply_add_at_cluster_time(reply, ctx->snapshot_t, ctx->snapshot_i);
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    } else {
        if (err->code == 0) /* a handler that failed without saying why is our bug */
            bq_error_set(err, BQ_ERR_InternalError, "%s failed without an error", ctx->name);
        bson_reinit(reply);
        wire_reply_error(reply, err);
        if (ctx->legacy && !strstr(req->msg.ns, ".$cmd")) {
            BSON_APPEND_UTF8(reply, "$err", err->message);
            req->reply_flags |= WIRE_REPLY_QUERY_FAILURE;
        }
    }
    /* Every reply carries the cluster time of the newest committed op, so a client can
     * come back to this moment (DESIGN.md section 5). */
    if (server->db) {
        uint32_t t, i;
        eng_db_cluster_time(server->db, eng_db_snapshot(server->db), &t, &i);
        bson_append_timestamp(reply, "operationTime", -1, t, i);
    }

    if (req->reply_extra) {
        bson_concat(reply, req->reply_extra);
        bson_destroy(req->reply_extra);
        req->reply_extra = NULL;
    }

    uint64_t us = wire_server_uptime_micros(server) - req->t0;
    wire_admin_op_end(server, req, us);
    if (req->cmd) {
        wire_cmd_stats_t *st = &server->cmd_stats[req->cmd - wire_commands];
        atomic_fetch_add(&st->calls, 1);
        atomic_fetch_add(&st->micros, us);
        if (!ok)
            atomic_fetch_add(&st->failed, 1);
    }
    unsigned long long cid = (unsigned long long)ctx->conn->id;
    if (!ok)
        wire_log(1, "conn%llu: %s.%s failed: %s (%d %s)", cid, ctx->db, ctx->name, err->message,
                 err->code, err->code_name);
    else if (us >= (uint64_t)wire_admin_slow_ms(server) * 1000) /* profile's slowms */
        wire_log(2, "conn%llu: slow %s.%s: %llu ms", cid, ctx->db, ctx->name,
                 (unsigned long long)(us / 1000));
    else
        wire_log(3, "conn%llu: %s.%s ok in %llu us", cid, ctx->db, ctx->name,
                 (unsigned long long)us);
    if (ctx->state_free && ctx->state)
        ctx->state_free(ctx->state);
    ctx->state = NULL;
    ctx->pending = false;
}

/* Runs a handler step (the first call or a resume) and finishes the request unless the
 * handler went pending. */
static void request_step(wire_request_t *req, wire_cmd_fn fn)
{
    bq_error_t err;
    bq_error_clear(&err);
    req->ctx.pending = false;
    bool ok = fn(&req->ctx, &err);
    if (ok && req->ctx.pending)
        return;
    request_finish(req, ok, &err);
}

/* Applies the failCommand fail point's data to a request it fired for: false with err
 * set when the command must fail without running (errorCode, closeConnection). */
static bool failpoint_apply(wire_request_t *req, const bson_t *data, bq_error_t *err)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, data, "blockConnection") && bson_iter_as_bool(&it) &&
        bson_iter_init_find(&it, data, "blockTimeMS") && BSON_ITER_HOLDS_NUMBER(&it)) {
        int64_t ms = bson_iter_as_int64(&it);
        if (ms > 0) {
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (bson_iter_init_find(&it, data, "closeConnection") && bson_iter_as_bool(&it)) {
        /* a closing connection gets no reply and is freed once its output drains */
        req->ctx.conn->closing = true;
        bq_error_set(err, BQ_ERR_HostUnreachable, "connection closed by the failCommand "
                                                  "fail point");
        return false;
    }
    req->reply_extra = bson_new();
    if (bson_iter_init_find(&it, data, "errorLabels") && BSON_ITER_HOLDS_ARRAY(&it))
        bson_append_value(req->reply_extra, "errorLabels", -1, bson_iter_value(&it));
    if (bson_iter_init_find(&it, data, "errorCode") && BSON_ITER_HOLDS_NUMBER(&it)) {
        bq_error_set(err, (int32_t)bson_iter_as_int64(&it),
                     "Failing command %s via 'failCommand' failpoint", req->ctx.name);
        return false;
    }
    if (bson_iter_init_find(&it, data, "writeConcernError") && BSON_ITER_HOLDS_DOCUMENT(&it))
        bson_append_value(req->reply_extra, "writeConcernError", -1, bson_iter_value(&it));
    return true;
}

wire_request_t *wire_request_start(wire_server_t *server, wire_conn_t *conn, wire_msg_t *msg)
{
    /* it embeds bson_t, which must keep libbson's alignment */
    wire_request_t *req = BSON_ALIGNED_ALLOC0(wire_request_t);
    /* take the message over; a bson_t must not be copied by value (an allocated one
     * points into itself), so its body is moved with bson_steal */
    req->msg = *msg;
    bson_steal(&req->msg.body, &msg->body);
    bson_init(&msg->body);
    bson_init(&req->reply);
    req->legacy = req->msg.hdr.opcode == WIRE_OP_QUERY;
    req->t0 = wire_server_uptime_micros(server);
    req->ctx = (wire_cmd_ctx_t){
        .server = server,
        .conn = conn,
        .cmd = &req->msg.body,
        .name = "",
        .db = "",
        .legacy = req->legacy,
        .reply = &req->reply,
        .req = req,
    };
    atomic_fetch_add(&server->opcounters.command, 1);
    bq_error_t err;
    bq_error_clear(&err);
    if (!dispatch_prepare(&req->ctx, &req->msg, &req->cmd, req->dbbuf, sizeof req->dbbuf,
                          &err)) {
        request_finish(req, false, &err);
        return req;
    }
    wire_admin_op_begin(server, req);
    bson_t *fp_data;
    if (wire_failpoint_hit(req->ctx.name, &fp_data)) {
        bool run = failpoint_apply(req, fp_data, &err);
        bson_destroy(fp_data);
        if (!run) {
            request_finish(req, false, &err);
            return req;
        }
    }
    request_step(req, req->cmd->fn);
    return req;
}

void wire_request_resume(wire_request_t *req)
{
    request_step(req, req->ctx.resume);
}

bool wire_request_finished(const wire_request_t *req)
{
    return !req->ctx.pending;
}

void wire_request_free(wire_request_t *req)
{
    if (!req)
        return;
    wire_admin_op_end(req->ctx.server, req, 0);
    if (req->ctx.state_free && req->ctx.state)
        req->ctx.state_free(req->ctx.state);
    bson_destroy(&req->reply);
    if (req->reply_extra)
        bson_destroy(req->reply_extra);
    wire_msg_cleanup(&req->msg);
    bson_free(req);
}

void wire_cmd_submit(wire_cmd_ctx_t *ctx, eng_intent_t *intent, wire_cmd_fn resume)
{
    ctx->pending = true;
    ctx->resume = resume;
    intent->done = wire_server_intent_done;
    intent->owner = ctx->req;
    if (wire_admin_hold_write(ctx->server, intent))
        return; /* fsync-locked: submitted at the last fsyncUnlock */
    eng_submit(ctx->server->db, intent);
}
