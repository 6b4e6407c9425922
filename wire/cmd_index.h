/*
 * cmd_index.h: the index commands (cmd_index.c), registered in wire_commands.c.
 */
#ifndef CMD_INDEX_H
#define CMD_INDEX_H

#include "wire_int.h"

bool cmd_create_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_drop_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err);

#endif
