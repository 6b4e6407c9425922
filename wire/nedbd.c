/*
 * nedbd.c: the server executable. Parses the command line, sets the log level, and hands
 * over to wire_server_run(). Everything else lives in the wire library.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eng.h"
#include "wire.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nedbd [options]\n"
            "  --bind ADDR        address to listen on (default 127.0.0.1)\n"
            "  --port N           TCP port (default 27017)\n"
            "  --dbpath DIR       data directory, created if missing (default ./nedb-data)\n"
            "  --threads N        I/O threads (default: number of cores)\n"
            "  --log-level 0..3   0 errors and startup, 1 connections and failed commands,\n"
            "                     2 slow operations, 3 every command (NEDBD_DEBUG=1 means 3)\n"
            "  --checkpointOps N  write a checkpoint after N new ops (default 100000; 0: never)\n"
            "  --checkpointSeconds N\n"
            "                     ... or N seconds after the last one, when there are new\n"
            "                     ops (default 60; 0: never). One is also written at exit.\n"
            "  --setParameter enableTestCommands=1\n"
            "                     enable test-only commands (configureFailPoint), as mongod\n"
            "  --setParameter ttlMonitorSleepSecs=N\n"
            "                     seconds between passes of the TTL monitor (default 60)\n"
            "  --setParameter ttlMonitorEnabled=true|false\n"
            "                     run the TTL monitor (default true)\n"
            "  --version          print the version and exit\n"
            "  --help             print this help and exit\n");
}

/* Parses a decimal int in [lo, hi] into a long; false on anything else. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses a decimal int in [lo, hi]; false on anything else. */
static bool parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

int main(int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    wire_config_t cfg = {
        .bind = "127.0.0.1",
        .port = 27017,
        .dbpath = "./nedb-data",
        .threads = cores > 0 ? (int)cores : 1,
        .argc = argc,
        .argv = argv,
    };
    eng_db_options_t eng_opts = {0};
    const char *debug = getenv("NEDBD_DEBUG");
    wire_log_level = debug && strcmp(debug, "1") == 0 ? 3 : 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        /* Accept both "--flag value" and "--flag=value". */
        char name[64];
        const char *eq = strchr(arg, '=');
        if (strncmp(arg, "--", 2) == 0 && eq && (size_t)(eq - arg) < sizeof name) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = '\0';
            val = eq + 1;
            arg = name;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("nedbd %s (MongoDB wire protocol, compatible with 7.0)\n", NEDB_VERSION);
            return 0;
        }
        bool takes_value = strcmp(arg, "--bind") == 0 || strcmp(arg, "--port") == 0 ||
                           strcmp(arg, "--dbpath") == 0 || strcmp(arg, "--threads") == 0 ||
                           strcmp(arg, "--log-level") == 0 ||
                           strcmp(arg, "--checkpointOps") == 0 ||
                           strcmp(arg, "--checkpointSeconds") == 0 ||
                           strcmp(arg, "--setParameter") == 0;
        if (!takes_value) {
            fprintf(stderr, "nedbd: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "nedbd: option '%s' needs a value\n", arg);
                usage(stderr);
                return 2;
            }
            val = argv[++i];
        }
        bool ok = true;
        if (strcmp(arg, "--bind") == 0)
            cfg.bind = val;
        else if (strcmp(arg, "--dbpath") == 0)
            cfg.dbpath = val;
        else if (strcmp(arg, "--port") == 0)
            ok = parse_int(val, 0, 65535, &cfg.port);
        else if (strcmp(arg, "--threads") == 0)
            ok = parse_int(val, 1, 256, &cfg.threads);
        else if (strcmp(arg, "--setParameter") == 0) {
            /* the parameters NEDB has; others are refused */
            long secs = 0;
            if (!strcmp(val, "enableTestCommands=1") || !strcmp(val, "enableTestCommands=true"))
                wire_test_commands_enabled = true;
            else if (!strncmp(val, "ttlMonitorSleepSecs=", 20)) {
                ok = parse_long(val + 20, 1, INT32_MAX, &secs);
                cfg.ttl_monitor_sleep_secs = (int32_t)secs;
            }
            else if (!strcmp(val, "ttlMonitorEnabled=1") || !strcmp(val, "ttlMonitorEnabled=true"))
                cfg.ttl_monitor_disabled = false;
            else if (!strcmp(val, "ttlMonitorEnabled=0") ||
                     !strcmp(val, "ttlMonitorEnabled=false"))
                cfg.ttl_monitor_disabled = true;
            else if (strcmp(val, "enableTestCommands=0") && strcmp(val, "enableTestCommands=false"))
                ok = false;
        }
        else if (strcmp(arg, "--checkpointOps") == 0 ||
                 strcmp(arg, "--checkpointSeconds") == 0) {
            long v = 0;
            ok = parse_long(val, 0, 1000000000L, &v);
            /* 0 means never: the engine's "never" is negative, its 0 the default */
            if (strcmp(arg, "--checkpointOps") == 0)
                eng_opts.checkpoint_ops = v ? v : -1;
            else
                eng_opts.checkpoint_seconds = v ? v : -1;
        }
        else
            ok = parse_int(val, 0, 3, &wire_log_level);
        if (!ok || (*val == '\0')) {
            fprintf(stderr, "nedbd: bad value '%s' for %s\n", val, arg);
            usage(stderr);
            return 2;
        }
    }

    cfg.engine = eng_opts;
    bq_error_t err;
    bq_error_clear(&err);
    if (!wire_server_run(&cfg, &err)) {
        wire_log(0, "nedbd: cannot start: %s", err.message);
        return 1;
    }
    return 0;
}
