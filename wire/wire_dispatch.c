/*
 * wire_dispatch.c: from a parsed request to a reply document. The checks every command
 * shares run here, once (Redis's processCommand() is the model): the body names a command
 * as its first key, `$db` is present and valid, the command is in the table, admin-only
 * commands run on admin, and the legacy OP_QUERY path only carries the handshake.
 * Handlers never repeat these checks. This is also the only place where a bq_error_t
 * becomes {ok: 0, errmsg, code, codeName}, and where per-command counters and the
 * command log lines (levels 1 to 3) are kept.
 */
#include <string.h>

#include "wire_int.h"

/* Slow-operation threshold for log level 2, as mongod's slowms default. */
#define WIRE_SLOW_MS 100

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

/* The shared checks. On success fills ctx->name, ctx->db and *cmdp. */
static bool dispatch_prepare(wire_cmd_ctx_t *ctx, const wire_msg_t *msg,
                             const wire_command_t **cmdp, char *dbbuf, size_t dbsize,
                             bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, ctx->cmd) || !bson_iter_next(&it)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "empty command document");
        return false;
    }
    ctx->name = bson_iter_key(&it);

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

    const wire_command_t *cmd = wire_command_find(ctx->name);
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

void wire_dispatch(wire_server_t *server, wire_conn_t *conn, const wire_msg_t *msg,
                   bson_t *reply, int32_t *reply_flags)
{
    wire_cmd_ctx_t ctx = {
        .server = server,
        .conn = conn,
        .cmd = &msg->body,
        .name = "",
        .db = "",
        .legacy = msg->hdr.opcode == WIRE_OP_QUERY,
        .reply = reply,
    };
    const wire_command_t *cmd = NULL;
    char dbbuf[64];
    bq_error_t err;
    bq_error_clear(&err);
    uint64_t t0 = wire_server_uptime_micros(server);

    bson_init(reply);
    atomic_fetch_add(&server->opcounters.command, 1);
    bool ok = dispatch_prepare(&ctx, msg, &cmd, dbbuf, sizeof dbbuf, &err) &&
              cmd->fn(&ctx, &err);
    if (ok) {
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    } else {
        if (err.code == 0) /* a handler that failed without saying why is our bug */
            bq_error_set(&err, BQ_ERR_InternalError, "%s failed without an error", ctx.name);
        bson_reinit(reply);
        wire_reply_error(reply, &err);
        if (ctx.legacy && !strstr(msg->ns, ".$cmd")) {
            BSON_APPEND_UTF8(reply, "$err", err.message);
            *reply_flags |= WIRE_REPLY_QUERY_FAILURE;
        }
    }

    uint64_t us = wire_server_uptime_micros(server) - t0;
    if (cmd) {
        wire_cmd_stats_t *st = &server->cmd_stats[cmd - wire_commands];
        atomic_fetch_add(&st->calls, 1);
        atomic_fetch_add(&st->micros, us);
        if (!ok)
            atomic_fetch_add(&st->failed, 1);
    }
    if (!ok)
        wire_log(1, "conn%llu: %s.%s failed: %s (%d %s)", (unsigned long long)conn->id,
                 ctx.db, ctx.name, err.message, err.code, err.code_name);
    else if (us >= WIRE_SLOW_MS * 1000)
        wire_log(2, "conn%llu: slow %s.%s: %llu ms", (unsigned long long)conn->id, ctx.db,
                 ctx.name, (unsigned long long)(us / 1000));
    else
        wire_log(3, "conn%llu: %s.%s ok in %llu us", (unsigned long long)conn->id, ctx.db,
                 ctx.name, (unsigned long long)us);
}
