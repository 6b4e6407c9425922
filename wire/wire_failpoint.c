/*
 * wire_failpoint.c: test-only fail points, as mongod has them behind
 * `--setParameter enableTestCommands=1`. Driver test suites use them to make the server
 * fail on purpose; the only one NEDB has is the one they use, `failCommand`:
 *
 *   {configureFailPoint: "failCommand",
 *    mode: "alwaysOn" | "off" | {times: n} | {skip: n},
 *    data: {failCommands: [names], errorCode?, closeConnection?, errorLabels?,
 *           writeConcernError?, blockConnection?, blockTimeMS?, appName?}}
 *
 * While active, a command named in failCommands is not run and fails with errorCode (and
 * errorLabels), or its connection is closed without a reply (closeConnection), or it runs
 * and its reply gets the writeConcernError document. blockConnection delays the command
 * by blockTimeMS first. The reply to configureFailPoint carries `count`: how many times
 * the fail point had been entered. configureFailPoint itself, hello and the handshake
 * commands are never failed.
 *
 * Fail points are process-wide (as in mongod), guarded by one mutex; the check on every
 * command is a single relaxed load while no fail point is on.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire_cmd.h"
#include "wire_int.h"

bool wire_test_commands_enabled;

enum { FP_OFF, FP_ALWAYS, FP_TIMES, FP_SKIP };

static struct {
    pthread_mutex_t mu;
    atomic_bool on;          /* fast path: false while mode is off */
    int mode;
    int64_t n;               /* times left (FP_TIMES) or skips left (FP_SKIP) */
    int64_t entered;         /* how many commands it has hit, for the reply's count */
    bson_t *data;            /* owned copy of data */
} fp = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Reads mode into *mode / *n. */
static bool parse_mode(const bson_iter_t *it, int *mode, int64_t *n, bq_error_t *err)
{
    if (BSON_ITER_HOLDS_UTF8(it)) {
        const char *s = bson_iter_utf8(it, NULL);
        if (!strcmp(s, "alwaysOn")) {
            *mode = FP_ALWAYS;
            return true;
        }
        if (!strcmp(s, "off")) {
            *mode = FP_OFF;
            return true;
        }
        bq_error_set(err, BQ_ERR_BadValue, "unknown mode: %s", s);
        return false;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_t sub;
        bson_iter_recurse(it, &sub);
        if (bson_iter_next(&sub) && BSON_ITER_HOLDS_NUMBER(&sub)) {
            const char *k = bson_iter_key(&sub);
            *n = bson_iter_as_int64(&sub);
            if (*n < 0) {
                bq_error_set(err, BQ_ERR_BadValue, "mode.%s must not be negative", k);
                return false;
            }
            if (!strcmp(k, "times")) {
                *mode = *n ? FP_TIMES : FP_OFF;
                return true;
            }
            if (!strcmp(k, "skip")) {
                *mode = FP_SKIP;
                return true;
            }
        }
    }
    bq_error_set(err, BQ_ERR_TypeMismatch,
                 "'mode' must be \"alwaysOn\", \"off\", {times: <n>} or {skip: <n>}");
    return false;
}

bool cmd_configure_fail_point(wire_cmd_ctx_t *ctx, bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init_find(&it, ctx->cmd, "configureFailPoint");
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "configureFailPoint takes a fail point name");
        return false;
    }
    const char *name = bson_iter_utf8(&it, NULL);
    if (strcmp(name, "failCommand") != 0) {
        bq_error_set(err, BQ_ERR_BadValue, "Cannot find FailPoint named %s (NEDB has only "
                                           "failCommand)", name);
        return false;
    }
    int mode = FP_OFF;
    int64_t n = 0;
    if (!bson_iter_init_find(&it, ctx->cmd, "mode")) {
        bq_error_set(err, BQ_ERR_IllegalOperation, "When configuring a fail point, the mode "
                                                   "must be specified");
        return false;
    }
    if (!parse_mode(&it, &mode, &n, err))
        return false;
    bson_t *data = NULL;
    if (bson_iter_init_find(&it, ctx->cmd, "data") && !BSON_ITER_HOLDS_NULL(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch, "the fail point's 'data' must be an object");
            return false;
        }
        uint32_t len;
        const uint8_t *d;
        bson_iter_document(&it, &len, &d);
        data = bson_new_from_data(d, len);
    }
    if (mode != FP_OFF &&
        (!data || !bson_iter_init_find(&it, data, "failCommands") ||
         !BSON_ITER_HOLDS_ARRAY(&it))) {
        if (data)
            bson_destroy(data);
        bq_error_set(err, BQ_ERR_BadValue, "failCommand needs data.failCommands, an array of "
                                           "command names");
        return false;
    }
    pthread_mutex_lock(&fp.mu);
    int64_t count = fp.entered;
    if (fp.data)
        bson_destroy(fp.data);
    fp.data = data;
    fp.mode = mode;
    fp.n = n;
    fp.entered = 0;
    atomic_store(&fp.on, mode != FP_OFF);
    pthread_mutex_unlock(&fp.mu);
    BSON_APPEND_INT64(ctx->reply, "count", count);
    return true;
}

static bool names_command(const bson_t *data, const char *cmd)
{
    bson_iter_t it, arr;
    if (!bson_iter_init_find(&it, data, "failCommands") || !BSON_ITER_HOLDS_ARRAY(&it))
        return false;
    bson_iter_recurse(&it, &arr);
    while (bson_iter_next(&arr))
        if (BSON_ITER_HOLDS_UTF8(&arr) && !strcmp(bson_iter_utf8(&arr, NULL), cmd))
            return true;
    return false;
}

bool wire_failpoint_hit(const char *cmd, bson_t **data_out)
{
    if (!atomic_load_explicit(&fp.on, memory_order_relaxed))
        return false;
    if (!strcmp(cmd, "configureFailPoint") || !strcmp(cmd, "hello") ||
        !strcmp(cmd, "isMaster") || !strcmp(cmd, "ismaster"))
        return false;
    bool hit = false;
    pthread_mutex_lock(&fp.mu);
    if (fp.mode != FP_OFF && fp.data && names_command(fp.data, cmd)) {
        if (fp.mode == FP_SKIP && fp.n > 0) {
            fp.n--;
        } else {
            hit = true;
            fp.entered++;
            if (fp.mode == FP_TIMES && --fp.n == 0) {
                fp.mode = FP_OFF;
                atomic_store(&fp.on, false);
            }
            *data_out = bson_copy(fp.data);
        }
    }
    pthread_mutex_unlock(&fp.mu);
    return hit;
}
