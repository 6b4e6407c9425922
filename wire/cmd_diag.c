/*
 * cmd_diag.c: diagnostic commands: getParameter, setParameter, getCmdLineOpts, getLog,
 * hostInfo, serverStatus and listCommands. They only read server state (setParameter
 * changes the TTL monitor's two parameters, nothing else); serverStatus and
 * listCommands are built from the command table (wire_commands.c) and its counters.
 */
#include <string.h>
#include <sys/utsname.h>
#include <sys/resource.h>
#include <unistd.h>

#include "wire_cmd.h"

/* ---- getParameter ---- */

typedef void (*param_append_fn)(const wire_server_t *s, bson_t *out, const char *key);

static void param_fcv(const wire_server_t *s, bson_t *out, const char *key)
{
    (void)s;
    bson_t d;
    BSON_APPEND_DOCUMENT_BEGIN(out, key, &d);
    BSON_APPEND_UTF8(&d, "version", "7.0");
    bson_append_document_end(out, &d);
}

static void param_log_level(const wire_server_t *s, bson_t *out, const char *key)
{
    (void)s;
    BSON_APPEND_INT32(out, key, wire_log_level);
}

static void param_quiet(const wire_server_t *s, bson_t *out, const char *key)
{
    (void)s;
    BSON_APPEND_BOOL(out, key, false);
}

static void param_ttl_enabled(const wire_server_t *s, bson_t *out, const char *key)
{
    BSON_APPEND_BOOL(out, key, wire_ttl_enabled(s->ttl));
}

static void param_ttl_sleep(const wire_server_t *s, bson_t *out, const char *key)
{
    BSON_APPEND_INT32(out, key, wire_ttl_sleep_secs(s->ttl));
}

/* setParameter of one parameter: validates `v`, and when `apply`, appends was: <the old
 * value> to reply and sets it. NULL: the parameter cannot be changed at runtime. */
typedef bool (*param_set_fn)(wire_server_t *s, const bson_iter_t *v, bool apply,
                             bson_t *reply, bq_error_t *err);

static bool param_set_ttl_enabled(wire_server_t *s, const bson_iter_t *v, bool apply,
                                  bson_t *reply, bq_error_t *err)
{
    bool on;
    if (BSON_ITER_HOLDS_BOOL(v) || BSON_ITER_HOLDS_NUMBER(v))
        on = bson_iter_as_bool(v);
    else if (BSON_ITER_HOLDS_UTF8(v) && !strcmp(bson_iter_utf8(v, NULL), "true"))
        on = true;
    else if (BSON_ITER_HOLDS_UTF8(v) && !strcmp(bson_iter_utf8(v, NULL), "false"))
        on = false;
    else {
        bq_error_set(err, BQ_ERR_BadValue,
                     "Invalid value for ttlMonitorEnabled: expected a boolean, found %s",
                     bq_type_name(bson_iter_type(v)));
        return false;
    }
    if (!apply)
        return true;
    param_ttl_enabled(s, reply, "was");
    wire_ttl_set_enabled(s->ttl, on);
    wire_log(0, "setParameter ttlMonitorEnabled: %s", on ? "true" : "false");
    return true;
}

static bool param_set_ttl_sleep(wire_server_t *s, const bson_iter_t *v, bool apply,
                                bson_t *reply, bq_error_t *err)
{
    double d = BSON_ITER_HOLDS_NUMBER(v) ? bson_iter_as_double(v) : 0;
    if (!BSON_ITER_HOLDS_NUMBER(v) || d != (double)(int64_t)d || d > INT32_MAX) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "Invalid value for ttlMonitorSleepSecs: expected a 32-bit integer");
        return false;
    }
    if (d < 1) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "Invalid value for ttlMonitorSleepSecs: %lld is not greater than or equal "
                     "to 1",
                     (long long)d);
        return false;
    }
    if (!apply)
        return true;
    param_ttl_sleep(s, reply, "was");
    wire_ttl_set_sleep_secs(s->ttl, (int32_t)d);
    wire_log(0, "setParameter ttlMonitorSleepSecs: %d", (int)d);
    return true;
}

/* Sorted by name. `append` NULL: known (setParameter answers that it cannot change at
 * runtime) but not reported by getParameter. enableTestCommands is such a one: the spec
 * runner reads it to pick the tests that need mongod's test commands, most of which
 * (testVersion2, ...) NEDB does not have. */
static const struct {
    const char *name;
    param_append_fn append;
    param_set_fn set;
} params[] = {
    {"enableTestCommands", NULL, NULL},
    {"featureCompatibilityVersion", param_fcv, NULL},
    {"logLevel", param_log_level, NULL},
    {"quiet", param_quiet, NULL},
    {"ttlMonitorEnabled", param_ttl_enabled, param_set_ttl_enabled},
    {"ttlMonitorSleepSecs", param_ttl_sleep, param_set_ttl_sleep},
};
#define NPARAMS (sizeof params / sizeof params[0])

/* {getParameter: 1 | "*" | {showDetails, allParameters}, <name>: <any>, ...} */
bool cmd_get_parameter(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    bool all = false;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "*") == 0)
        all = true;
    else if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t opt;
        if (bson_iter_recurse(&it, &opt) && bson_iter_find(&opt, "allParameters") &&
            bson_iter_as_bool(&opt))
            all = true;
    }
    size_t found = 0;
    for (size_t i = 0; i < NPARAMS; i++) {
        if (params[i].append && (all || bson_has_field(ctx->cmd, params[i].name))) {
            params[i].append(ctx->server, ctx->reply, params[i].name);
            found++;
        }
    }
    if (found == 0) {
        bq_error_set(err, BQ_ERR_InvalidOptions, "no option found to get");
        return false;
    }
    return true;
}

/* {setParameter: 1, <name>: <value>, ...}: every named parameter is checked first (none
 * is set when one is wrong), then each is set and its old value appended as `was`, as
 * mongod answers (one `was` per parameter). Errors as mongod 7.0: InvalidOptions (72) for a name it does
 * not know or no name at all, IllegalOperation (20) for one it knows that cannot change
 * at runtime, BadValue (2) for a value of the wrong type or range. */
bool cmd_set_parameter(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    size_t found = 0;
    for (int round = 0; round < 2; round++) {
        bson_iter_init(&it, ctx->cmd);
        bson_iter_next(&it); /* the command name */
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (wire_generic_arg(k))
                continue;
            size_t i = 0;
            while (i < NPARAMS && strcmp(params[i].name, k))
                i++;
            if (i == NPARAMS) {
                bq_error_set(err, BQ_ERR_InvalidOptions,
                             "attempted to set unrecognized parameter [%s], use help:true to "
                             "see options ",
                             k);
                return false;
            }
            if (!params[i].set) {
                bq_error_set(err, BQ_ERR_IllegalOperation,
                             "not allowed to change [%s] at runtime", k);
                return false;
            }
            if (!params[i].set(ctx->server, &it, round == 1, ctx->reply, err))
                return false;
            found++;
        }
        if (round == 0 && found == 0) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "no option found to set, use help:true to see options ");
            return false;
        }
    }
    return true;
}

/* ---- getCmdLineOpts ---- */

bool cmd_get_cmd_line_opts(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    const wire_config_t *cfg = ctx->server->cfg;
    bson_t arr, parsed, sub;
    BSON_APPEND_ARRAY_BEGIN(ctx->reply, "argv", &arr);
    for (int i = 0; i < cfg->argc; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        BSON_APPEND_UTF8(&arr, key, cfg->argv[i]);
    }
    bson_append_array_end(ctx->reply, &arr);
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "parsed", &parsed);
    BSON_APPEND_DOCUMENT_BEGIN(&parsed, "net", &sub);
    BSON_APPEND_UTF8(&sub, "bindIp", cfg->bind);
    BSON_APPEND_INT32(&sub, "port", cfg->port);
    bson_append_document_end(&parsed, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&parsed, "storage", &sub);
    BSON_APPEND_UTF8(&sub, "dbPath", cfg->dbpath);
    bson_append_document_end(&parsed, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&parsed, "systemLog", &sub);
    BSON_APPEND_INT32(&sub, "verbosity", wire_log_level);
    bson_append_document_end(&parsed, &sub);
    bson_append_document_end(ctx->reply, &parsed);
    return true;
}

/* ---- getLog ---- */

/* {getLog: "*" | "global" | "startupWarnings"}. NEDB raises no startup warnings; "global"
 * returns the most recent log lines the server kept (wire_log.c). */
bool cmd_get_log(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, ctx->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "Argument to getLog must be of type String; found %s",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    const char *which = bson_iter_utf8(&it, NULL);
    bson_t arr;
    if (strcmp(which, "*") == 0) {
        BSON_APPEND_ARRAY_BEGIN(ctx->reply, "names", &arr);
        BSON_APPEND_UTF8(&arr, "0", "global");
        BSON_APPEND_UTF8(&arr, "1", "startupWarnings");
        bson_append_array_end(ctx->reply, &arr);
        return true;
    }
    if (strcmp(which, "startupWarnings") == 0) {
        BSON_APPEND_INT32(ctx->reply, "totalLinesWritten", 0);
        BSON_APPEND_ARRAY_BEGIN(ctx->reply, "log", &arr);
        bson_append_array_end(ctx->reply, &arr);
        return true;
    }
    if (strcmp(which, "global") == 0) {
        wire_log_append_recent(ctx->reply);
        return true;
    }
    bq_error_set(err, BQ_ERR_OperationFailed, "No log named '%s'", which);
    return false;
}

/* ---- hostInfo ---- */

bool cmd_host_info(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    struct utsname u;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t mem_mb = pages > 0 && page > 0 ? (int64_t)pages * page / (1024 * 1024) : 0;
    char hn[256] = "";
    gethostname(hn, sizeof hn - 1);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);

    bson_t sys, os, extra;
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "system", &sys);
    wire_append_now(&sys, "currentTime");
    BSON_APPEND_UTF8(&sys, "hostname", hn);
    BSON_APPEND_INT32(&sys, "cpuAddrSize", (int32_t)(sizeof(void *) * 8));
    BSON_APPEND_INT64(&sys, "memSizeMB", mem_mb);
    BSON_APPEND_INT64(&sys, "memLimitMB", mem_mb);
    BSON_APPEND_INT32(&sys, "numCores", (int32_t)cores);
    BSON_APPEND_UTF8(&sys, "cpuArch", u.machine);
    BSON_APPEND_BOOL(&sys, "numaEnabled", false);
    bson_append_document_end(ctx->reply, &sys);
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "os", &os);
    BSON_APPEND_UTF8(&os, "type", u.sysname);
    BSON_APPEND_UTF8(&os, "name", u.sysname);
    BSON_APPEND_UTF8(&os, "version", u.release);
    bson_append_document_end(ctx->reply, &os);
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "extra", &extra);
    char vs[600];
    snprintf(vs, sizeof vs, "%s %s %s %s", u.sysname, u.release, u.version, u.machine);
    BSON_APPEND_UTF8(&extra, "versionString", vs);
    BSON_APPEND_INT64(&extra, "pageSize", page);
    BSON_APPEND_INT64(&extra, "numPages", pages);
    BSON_APPEND_INT64(&extra, "maxOpenFiles", (int64_t)rl.rlim_cur);
    bson_append_document_end(ctx->reply, &extra);
    return true;
}

/* ---- serverStatus ---- */

bool cmd_server_status(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    wire_server_t *s = ctx->server;
    bson_t *r = ctx->reply;
    uint64_t up_us = wire_server_uptime_micros(s);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int64_t current = atomic_load(&s->conns_current);

    BSON_APPEND_UTF8(r, "host", s->host);
    BSON_APPEND_UTF8(r, "version", "7.0.14");
    BSON_APPEND_UTF8(r, "process", "nedbd");
    BSON_APPEND_INT64(r, "pid", (int64_t)getpid());
    BSON_APPEND_DOUBLE(r, "uptime", (double)(up_us / 1000000));
    BSON_APPEND_INT64(r, "uptimeMillis", (int64_t)(up_us / 1000));
    BSON_APPEND_INT64(r, "uptimeEstimate", (int64_t)(up_us / 1000000));
    wire_append_now(r, "localTime");

    bson_t d, cmds, one;
    BSON_APPEND_DOCUMENT_BEGIN(r, "connections", &d);
    BSON_APPEND_INT32(&d, "current", (int32_t)current);
    BSON_APPEND_INT32(&d, "available", (int32_t)((int64_t)rl.rlim_cur - current));
    BSON_APPEND_INT64(&d, "totalCreated", (int64_t)atomic_load(&s->conns_total));
    BSON_APPEND_INT32(&d, "active", (int32_t)current);
    bson_append_document_end(r, &d);

    BSON_APPEND_DOCUMENT_BEGIN(r, "opcounters", &d);
    BSON_APPEND_INT64(&d, "insert", (int64_t)atomic_load(&s->opcounters.insert));
    BSON_APPEND_INT64(&d, "query", (int64_t)atomic_load(&s->opcounters.query));
    BSON_APPEND_INT64(&d, "update", (int64_t)atomic_load(&s->opcounters.update));
    BSON_APPEND_INT64(&d, "delete", (int64_t)atomic_load(&s->opcounters.del));
    BSON_APPEND_INT64(&d, "getmore", (int64_t)atomic_load(&s->opcounters.getmore));
    BSON_APPEND_INT64(&d, "command", (int64_t)atomic_load(&s->opcounters.command));
    bson_append_document_end(r, &d);

    /* metrics.commands.<name>: {failed, total} as mongod reports them, plus the time spent. */
    BSON_APPEND_DOCUMENT_BEGIN(r, "metrics", &d);
    BSON_APPEND_DOCUMENT_BEGIN(&d, "commands", &cmds);
    for (size_t i = 0; i < wire_commands_count; i++) {
        const wire_cmd_stats_t *st = &s->cmd_stats[i];
        BSON_APPEND_DOCUMENT_BEGIN(&cmds, wire_commands[i].name, &one);
        BSON_APPEND_INT64(&one, "failed", (int64_t)atomic_load(&st->failed));
        BSON_APPEND_INT64(&one, "total", (int64_t)atomic_load(&st->calls));
        BSON_APPEND_INT64(&one, "timeMicros", (int64_t)atomic_load(&st->micros));
        bson_append_document_end(&cmds, &one);
    }
    bson_append_document_end(&d, &cmds);
    /* metrics.ttl: what the TTL monitor did (wire_ttl.c) */
    int64_t ttl_deleted, ttl_passes;
    wire_ttl_metrics(s->ttl, &ttl_deleted, &ttl_passes);
    BSON_APPEND_DOCUMENT_BEGIN(&d, "ttl", &one);
    BSON_APPEND_INT64(&one, "deletedDocuments", ttl_deleted);
    BSON_APPEND_INT64(&one, "passes", ttl_passes);
    bson_append_document_end(&d, &one);
    bson_append_document_end(r, &d);

    /* nedb: the store's own figures (DESIGN.md section 11) */
    eng_db_status_t es;
    eng_db_status(s->db, &es);
    BSON_APPEND_DOCUMENT_BEGIN(r, "nedb", &d);
    BSON_APPEND_INT64(&d, "committedSeq", es.committed);
    BSON_APPEND_UTF8(&d, "chainHead", es.head_hex);
    BSON_APPEND_BOOL(&d, "readOnly", es.read_only);
    bson_t seq;
    BSON_APPEND_DOCUMENT_BEGIN(&d, "sequencer", &seq);
    BSON_APPEND_INT64(&seq, "batches", (int64_t)es.batches);
    BSON_APPEND_INT64(&seq, "ops", (int64_t)es.batched_ops);
    BSON_APPEND_DOUBLE(&seq, "avgBatch",
                       es.batches ? (double)es.batched_ops / (double)es.batches : 0.0);
    BSON_APPEND_INT64(&seq, "maxBatch", (int64_t)es.max_batch);
    bson_append_document_end(&d, &seq);
    bson_t ck;
    BSON_APPEND_DOCUMENT_BEGIN(&d, "checkpoints", &ck);
    BSON_APPEND_INT64(&ck, "seq", es.checkpoint_seq);
    BSON_APPEND_INT64(&ck, "written", (int64_t)es.checkpoints);
    BSON_APPEND_INT64(&ck, "failed", (int64_t)es.checkpoint_failures);
    BSON_APPEND_DOUBLE(&ck, "lastMillis", es.checkpoint_ms);
    if (es.checkpoint_error[0])
        BSON_APPEND_UTF8(&ck, "lastError", es.checkpoint_error);
    BSON_APPEND_INT64(&ck, "replayedAtOpen", (int64_t)es.replayed_ops);
    bson_append_document_end(&d, &ck);
    bson_append_document_end(r, &d);

    BSON_APPEND_DOCUMENT_BEGIN(r, "logicalSessionRecordCache", &d);
    BSON_APPEND_INT32(&d, "activeSessionsCount",
                      (int32_t)wire_sessions_count(s->sessions));
    bson_append_document_end(r, &d);
    return true;
}

/* ---- listCommands ---- */

bool cmd_list_commands(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    (void)err;
    bson_t cmds, one, arr;
    BSON_APPEND_DOCUMENT_BEGIN(ctx->reply, "commands", &cmds);
    for (size_t i = 0; i < wire_commands_count; i++) {
        const wire_command_t *c = &wire_commands[i];
        BSON_APPEND_DOCUMENT_BEGIN(&cmds, c->name, &one);
        BSON_APPEND_UTF8(&one, "help", c->help);
        BSON_APPEND_BOOL(&one, "requiresAuth", false);
        BSON_APPEND_BOOL(&one, "secondaryOk", true);
        BSON_APPEND_BOOL(&one, "adminOnly", (c->flags & WIRE_CMD_ADMIN_ONLY) != 0);
        BSON_APPEND_ARRAY_BEGIN(&one, "apiVersions", &arr);
        bson_append_array_end(&one, &arr);
        BSON_APPEND_ARRAY_BEGIN(&one, "deprecatedApiVersions", &arr);
        bson_append_array_end(&one, &arr);
        bson_append_document_end(&cmds, &one);
    }
    bson_append_document_end(ctx->reply, &cmds);
    return true;
}
