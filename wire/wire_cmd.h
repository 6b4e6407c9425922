/*
 * wire_cmd.h: the command handlers, one declaration per handler, grouped by file. A
 * handler runs after wire_dispatch() has done the shared checks (wire_dispatch.c): it
 * appends its reply fields to ctx->reply, or returns false with err set.
 */
#ifndef WIRE_CMD_H
#define WIRE_CMD_H

#include "wire_int.h"

/* cmd_hello.c: the handshake and server identity */
bool cmd_hello(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_build_info(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_ping(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_sasl(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_logout(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_connection_status(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_whatsmyuri(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* cmd_diag.c: diagnostics */
bool cmd_get_parameter(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_get_cmd_line_opts(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_get_log(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_host_info(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_server_status(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_list_commands(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* cmd_session.c: logical sessions */
bool cmd_start_session(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_end_sessions(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_refresh_sessions(wire_cmd_ctx_t *ctx, bq_error_t *err);

#endif
