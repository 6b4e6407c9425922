/*
 * cmd_session.c: startSession, endSessions, killSessions and refreshSessions. Sessions are
 * tracked by wire_session.c; these commands only start, forget or refresh them.
 */
#include "wire_cmd.h"

bool cmd_start_session(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    wire_sessions_start(ctx->server->sessions, ctx->reply, "id");
    BSON_APPEND_INT32(ctx->reply, "timeoutMinutes", WIRE_SESSION_TIMEOUT_MINUTES);
    return true;
}

/* Applies fn to every lsid of the array {<command>: [lsid, ...]}. */
static bool each_lsid(wire_cmd_ctx_t *ctx, bool end, bq_error_t *err)
{
    bson_iter_t it, arr;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field '%s.%s' is the wrong type '%s', expected type 'array'",
                     ctx->name, ctx->name, bq_type_name(bson_iter_type(&it)));
        return false;
    }
    bson_iter_recurse(&it, &arr);
    while (bson_iter_next(&arr)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '%s.%s' is the wrong type '%s', expected type 'object'",
                         ctx->name, bson_iter_key(&arr), bq_type_name(bson_iter_type(&arr)));
            return false;
        }
        uint32_t len;
        const uint8_t *data;
        bson_t lsid;
        bson_iter_document(&arr, &len, &data);
        if (!bson_init_static(&lsid, data, len))
            continue;
        if (end)
            wire_sessions_end(ctx->server->sessions, &lsid);
        else if (!wire_sessions_touch(ctx->server->sessions, &lsid, err))
            return false;
    }
    return true;
}

bool cmd_end_sessions(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    return each_lsid(ctx, true, err);
}

bool cmd_refresh_sessions(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    return each_lsid(ctx, false, err);
}
