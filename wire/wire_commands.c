/*
 * wire_commands.c: the command table. Every command NEDB knows is declared here once:
 * name, handler, flags, one line of help. listCommands and the per-command counters of
 * serverStatus are built from this table. A command that is not built yet has a NULL
 * handler and answers NotImplemented (238).
 *
 * Keep the table sorted by name (strcmp order): wire_command_find() bisects it, and a unit
 * test checks the order.
 */
#include <stdlib.h>
#include <string.h>

#include "wire_cmd.h"

#define ADMIN WIRE_CMD_ADMIN_ONLY
#define LEGACY WIRE_CMD_OP_QUERY
#define WRITE WIRE_CMD_WRITE

const wire_command_t wire_commands[] = {
    {"abortTransaction", NULL, ADMIN, "abort a multi-document transaction"},
    {"aggregate", NULL, 0, "run an aggregation pipeline"},
    {"buildInfo", cmd_build_info, LEGACY, "version and build details of this server"},
    {"buildinfo", cmd_build_info, LEGACY, "alias of buildInfo"},
    {"collMod", NULL, WRITE, "change a collection's options"},
    {"collStats", NULL, 0, "storage statistics of a collection"},
    {"commitTransaction", NULL, ADMIN, "commit a multi-document transaction"},
    {"connectionStatus", cmd_connection_status, 0,
     "authentication state of this connection"},
    {"count", NULL, 0, "count the documents matching a query"},
    {"create", NULL, WRITE, "create a collection"},
    {"createIndexes", NULL, WRITE, "create indexes on a collection"},
    {"dbStats", NULL, 0, "storage statistics of a database"},
    {"delete", NULL, WRITE, "delete documents"},
    {"distinct", NULL, 0, "distinct values of a field"},
    {"drop", NULL, WRITE, "drop a collection"},
    {"dropDatabase", NULL, WRITE, "drop a database"},
    {"dropIndexes", NULL, WRITE, "drop indexes of a collection"},
    {"endSessions", cmd_end_sessions, 0, "end logical sessions"},
    {"explain", NULL, 0, "explain how a command would run"},
    {"find", NULL, 0, "query a collection"},
    {"findAndModify", NULL, WRITE, "update or remove one document and return it"},
    {"getCmdLineOpts", cmd_get_cmd_line_opts, ADMIN, "the server's command line"},
    {"getLog", cmd_get_log, ADMIN, "recent log lines (startupWarnings, global)"},
    {"getMore", NULL, 0, "next batch of a cursor"},
    {"getParameter", cmd_get_parameter, ADMIN, "server parameters"},
    {"hello", cmd_hello, LEGACY, "the handshake: server role, limits and wire versions"},
    {"hostInfo", cmd_host_info, 0, "the host this server runs on"},
    {"insert", NULL, WRITE, "insert documents"},
    {"isMaster", cmd_hello, LEGACY, "legacy alias of hello"},
    {"ismaster", cmd_hello, LEGACY, "legacy alias of hello"},
    {"killCursors", NULL, 0, "close cursors"},
    {"killSessions", cmd_end_sessions, 0, "kill logical sessions"},
    {"listCollections", NULL, 0, "list the collections of a database"},
    {"listCommands", cmd_list_commands, 0, "list the commands this server knows"},
    {"listDatabases", NULL, ADMIN, "list the databases"},
    {"listIndexes", NULL, 0, "list the indexes of a collection"},
    {"logout", cmd_logout, 0, "end the authenticated session (no-op: no authentication)"},
    {"nedbVerify", NULL, ADMIN, "walk the hash chain and report whether it verifies"},
    {"ping", cmd_ping, 0, "check that the server answers"},
    {"refreshSessions", cmd_refresh_sessions, 0, "keep logical sessions alive"},
    {"renameCollection", NULL, ADMIN | WRITE, "rename a collection"},
    {"saslContinue", cmd_sasl, LEGACY, "authentication step (authentication is not enabled)"},
    {"saslStart", cmd_sasl, LEGACY, "authentication start (authentication is not enabled)"},
    {"serverStatus", cmd_server_status, 0, "counters and state of this server"},
    {"startSession", cmd_start_session, 0, "start a logical session"},
    {"update", NULL, WRITE, "update documents"},
    {"whatsmyuri", cmd_whatsmyuri, 0, "this connection's client address"},
};

const size_t wire_commands_count = sizeof wire_commands / sizeof wire_commands[0];

static int command_cmp(const void *key, const void *entry)
{
    return strcmp(key, ((const wire_command_t *)entry)->name);
}

const wire_command_t *wire_command_find(const char *name)
{
    return bsearch(name, wire_commands, wire_commands_count, sizeof wire_commands[0],
                   command_cmp);
}
