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

#include "cmd_aggregate.h"
#include "cmd_index.h"
#include "wire_cmd.h"

#define ADMIN WIRE_CMD_ADMIN_ONLY
#define LEGACY WIRE_CMD_OP_QUERY
#define WRITE WIRE_CMD_WRITE
#define API_V1 WIRE_CMD_API_V1 /* MongoDB 7.0's Stable API V1 (its changelog page) */

const wire_command_t wire_commands[] = {
    {"abortTransaction", NULL, ADMIN | API_V1, "abort a multi-document transaction"},
    {"aggregate", cmd_aggregate, API_V1, "run an aggregation pipeline"},
    {"buildInfo", cmd_build_info, LEGACY, "version and build details of this server"},
    {"buildinfo", cmd_build_info, LEGACY, "alias of buildInfo"},
    {"collMod", cmd_coll_mod, WRITE | API_V1, "change a collection's options"},
    {"collStats", cmd_coll_stats, 0, "storage statistics of a collection"},
    {"commitTransaction", NULL, ADMIN | API_V1, "commit a multi-document transaction"},
    {"configureFailPoint", cmd_configure_fail_point, ADMIN | WIRE_CMD_TEST,
     "test only: make commands fail on purpose (failCommand)"},
    {"connectionStatus", cmd_connection_status, 0,
     "authentication state of this connection"},
    {"count", cmd_count, API_V1, "count the documents matching a query"},
    {"create", cmd_create, WRITE | API_V1, "create a collection"},
    {"createIndexes", cmd_create_indexes, WRITE | API_V1, "create indexes on a collection"},
    {"currentOp", cmd_current_op, ADMIN, "operations in progress on this server"},
    {"dataSize", cmd_data_size, 0, "size and number of documents of a namespace"},
    {"dbStats", cmd_db_stats, 0, "storage statistics of a database"},
    {"delete", cmd_delete, WRITE | API_V1, "delete documents"},
    {"distinct", cmd_distinct, 0, "distinct values of a field"},
    {"drop", cmd_drop, WRITE | API_V1, "drop a collection"},
    {"dropDatabase", cmd_drop_database, WRITE | API_V1, "drop a database"},
    {"dropIndexes", cmd_drop_indexes, WRITE | API_V1, "drop indexes of a collection"},
    {"endSessions", cmd_end_sessions, API_V1, "end logical sessions"},
    {"explain", cmd_explain, API_V1, "explain how a command would run"},
    {"find", cmd_find, API_V1, "query a collection"},
    {"findAndModify", cmd_find_and_modify, WRITE | API_V1,
     "update or remove one document and return it"},
    {"fsync", cmd_fsync, ADMIN,
     "wait until every queued write is durable; lock: true holds writes"},
    {"fsyncUnlock", cmd_fsync_unlock, ADMIN,
     "drop one fsync lock; the last lets held writes through"},
    {"getCmdLineOpts", cmd_get_cmd_line_opts, ADMIN, "the server's command line"},
    {"getDefaultRWConcern", cmd_get_default_rw_concern, ADMIN,
     "refused: a standalone has no cluster-wide defaults"},
    {"getLog", cmd_get_log, ADMIN, "recent log lines (startupWarnings, global)"},
    {"getMore", cmd_get_more, API_V1, "next batch of a cursor"},
    {"getParameter", cmd_get_parameter, ADMIN, "server parameters"},
    {"hello", cmd_hello, LEGACY | API_V1, "the handshake: server role, limits and wire versions"},
    {"hostInfo", cmd_host_info, 0, "the host this server runs on"},
    {"insert", cmd_insert, WRITE | API_V1, "insert documents"},
    {"isMaster", cmd_hello, LEGACY, "legacy alias of hello"},
    {"ismaster", cmd_hello, LEGACY, "legacy alias of hello"},
    {"killCursors", cmd_kill_cursors, API_V1, "close cursors"},
    {"killOp", cmd_kill_op, ADMIN, "mark an operation as killed (interrupts a held write)"},
    {"killSessions", cmd_end_sessions, 0, "kill logical sessions"},
    {"listCollections", cmd_list_collections, API_V1, "list the collections of a database"},
    {"listCommands", cmd_list_commands, 0, "list the commands this server knows"},
    {"listDatabases", cmd_list_databases, ADMIN | API_V1, "list the databases"},
    {"listIndexes", cmd_list_indexes, API_V1, "list the indexes of a collection"},
    {"logout", cmd_logout, 0, "end the authenticated session (no-op: no authentication)"},
    {"nedbVerify", cmd_nedb_verify, ADMIN, "walk the hash chain and report whether it verifies"},
    {"ping", cmd_ping, API_V1, "check that the server answers"},
    {"profile", cmd_profile, 0,
     "profiler settings: level 0 only, slowms sets the slow-operation log"},
    {"refreshSessions", cmd_refresh_sessions, API_V1, "keep logical sessions alive"},
    {"renameCollection", cmd_rename_collection, ADMIN | WRITE, "rename a collection"},
    {"replSetGetStatus", cmd_repl_set_get_status, ADMIN, "refused: not a replica set"},
    {"saslContinue", cmd_sasl, LEGACY, "authentication step (authentication is not enabled)"},
    {"saslStart", cmd_sasl, LEGACY, "authentication start (authentication is not enabled)"},
    {"serverStatus", cmd_server_status, 0, "counters and state of this server"},
    {"setParameter", cmd_set_parameter, ADMIN,
     "change a server parameter at runtime (ttlMonitorSleepSecs, ttlMonitorEnabled)"},
    {"startSession", cmd_start_session, 0, "start a logical session"},
    {"top", cmd_top, ADMIN, "time and count of operations per collection"},
    {"update", cmd_update, WRITE | API_V1, "update documents"},
    {"validate", cmd_validate, 0,
     "check a collection's documents, indexes and (full) the hash chain"},
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
