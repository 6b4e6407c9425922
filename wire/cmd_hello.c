/*
 * cmd_hello.c: the handshake and the server's identity: hello (and its legacy spellings
 * isMaster/ismaster), buildInfo, ping, whatsmyuri, connectionStatus, logout, and the SASL
 * commands, which answer that authentication is not enabled.
 *
 * The hello reply carries what drivers check before sending anything else (DESIGN.md
 * section 9): the limits, the wire version range (pymongo 3.11 needs minWireVersion <= 9,
 * node driver 7.8 maxWireVersion >= 9), and logicalSessionTimeoutMinutes, without which
 * drivers disable sessions. NEDB reports the MongoDB 7.0 series, whose behaviour it follows.
 */
#include <string.h>

#include "wire_cmd.h"

/* The MongoDB version whose behaviour NEDB follows, and its wire version. */
#define WIRE_MONGODB_VERSION "7.0.14"
static const int32_t mongodb_version_array[4] = {7, 0, 14, 0};
#define WIRE_MIN_WIRE_VERSION 0
#define WIRE_MAX_WIRE_VERSION 21

static bool cmd_bool_field(const bson_t *cmd, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, cmd, key) && bson_iter_as_bool(&it);
}

bool cmd_hello(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    bson_t *r = ctx->reply;
    if (cmd_bool_field(ctx->cmd, "helloOk"))
        BSON_APPEND_BOOL(r, "helloOk", true);
    /* hello says isWritablePrimary; the legacy spellings say ismaster. */
    BSON_APPEND_BOOL(r, strcmp(ctx->name, "hello") == 0 ? "isWritablePrimary" : "ismaster",
                     true);
    BSON_APPEND_INT32(r, "maxBsonObjectSize", WIRE_MAX_BSON_SIZE);
    BSON_APPEND_INT32(r, "maxMessageSizeBytes", WIRE_MAX_MESSAGE_SIZE);
    BSON_APPEND_INT32(r, "maxWriteBatchSize", WIRE_MAX_WRITE_BATCH);
    wire_append_now(r, "localTime");
    BSON_APPEND_INT32(r, "logicalSessionTimeoutMinutes", WIRE_SESSION_TIMEOUT_MINUTES);
    BSON_APPEND_INT64(r, "connectionId", (int64_t)ctx->conn->id);
    BSON_APPEND_INT32(r, "minWireVersion", WIRE_MIN_WIRE_VERSION);
    BSON_APPEND_INT32(r, "maxWireVersion", WIRE_MAX_WIRE_VERSION);
    BSON_APPEND_BOOL(r, "readOnly", false);

    bson_iter_t it;
    if (!ctx->conn->hello_seen && bson_iter_init_find(&it, ctx->cmd, "client") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t app;
        const char *name = "";
        if (bson_iter_recurse(&it, &app) && bson_iter_find_descendant(&app, "application.name",
                                                                     &app) &&
            BSON_ITER_HOLDS_UTF8(&app))
            name = bson_iter_utf8(&app, NULL);
        wire_log(1, "conn%llu: client metadata from %s: application '%s'",
                 (unsigned long long)ctx->conn->id, ctx->conn->peer, name);
    }
    ctx->conn->hello_seen = true;
    return true;
}

bool cmd_build_info(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    bson_t *r = ctx->reply;
    bson_t arr, env, nedb;
    BSON_APPEND_UTF8(r, "version", WIRE_MONGODB_VERSION);
    BSON_APPEND_UTF8(r, "gitVersion", "nedb-" NEDB_VERSION);
    BSON_APPEND_ARRAY_BEGIN(r, "modules", &arr);
    bson_append_array_end(r, &arr);
    BSON_APPEND_UTF8(r, "allocator", "system");
    BSON_APPEND_UTF8(r, "javascriptEngine", "none");
    BSON_APPEND_UTF8(r, "sysInfo", "deprecated");
    BSON_APPEND_ARRAY_BEGIN(r, "versionArray", &arr);
    for (int i = 0; i < 4; i++) {
        char key[4];
        snprintf(key, sizeof key, "%d", i);
        BSON_APPEND_INT32(&arr, key, mongodb_version_array[i]);
    }
    bson_append_array_end(r, &arr);
    BSON_APPEND_DOCUMENT_BEGIN(r, "buildEnvironment", &env);
    BSON_APPEND_UTF8(&env, "target_os", "linux");
#if defined(__x86_64__)
    BSON_APPEND_UTF8(&env, "target_arch", "x86_64");
#elif defined(__aarch64__)
    BSON_APPEND_UTF8(&env, "target_arch", "aarch64");
#else
    BSON_APPEND_UTF8(&env, "target_arch", "unknown");
#endif
    bson_append_document_end(r, &env);
    BSON_APPEND_INT32(r, "bits", (int32_t)(sizeof(void *) * 8));
    BSON_APPEND_BOOL(r, "debug", false);
    BSON_APPEND_INT32(r, "maxBsonObjectSize", WIRE_MAX_BSON_SIZE);
    BSON_APPEND_ARRAY_BEGIN(r, "storageEngines", &arr);
    BSON_APPEND_UTF8(&arr, "0", "nedb");
    bson_append_array_end(r, &arr);
    BSON_APPEND_DOCUMENT_BEGIN(r, "nedb", &nedb);
    BSON_APPEND_UTF8(&nedb, "version", NEDB_VERSION);
    BSON_APPEND_UTF8(&nedb, "chain", "BLAKE2b-256");
    bson_append_document_end(r, &nedb);
    return true;
}

bool cmd_ping(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)ctx;
    (void)err;
    return true;
}

bool cmd_sasl(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bq_error_set(err, BQ_ERR_AuthenticationFailed,
                 "%s: authentication is not enabled on this server; connect without "
                 "credentials",
                 ctx->name);
    return false;
}

bool cmd_logout(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)ctx;
    (void)err;
    return true;
}

bool cmd_connection_status(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    bson_t info, arr;
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "authInfo", &info);
    BSON_APPEND_ARRAY_BEGIN(&info, "authenticatedUsers", &arr);
    bson_append_array_end(&info, &arr);
    BSON_APPEND_ARRAY_BEGIN(&info, "authenticatedUserRoles", &arr);
    bson_append_array_end(&info, &arr);
    if (cmd_bool_field(ctx->cmd, "showPrivileges")) {
        BSON_APPEND_ARRAY_BEGIN(&info, "authenticatedUserPrivileges", &arr);
        bson_append_array_end(&info, &arr);
    }
    bson_append_document_end(ctx->reply, &info);
    return true;
}

bool cmd_whatsmyuri(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    BSON_APPEND_UTF8(ctx->reply, "you", ctx->conn->peer);
    return true;
}
