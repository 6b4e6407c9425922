/*
 * wire.h: public header of wire/, the network face of NEDB (DESIGN.md sections 3, 9, 11):
 * the listener and I/O threads (wire_server.c), framing (wire_frame.h), the command table
 * and dispatcher (wire_dispatch.c) and the command handlers (cmd_*.c).
 */
#ifndef WIRE_H
#define WIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "bq.h"
#include "eng_db.h"

/* ---- log (wire_log.c) ---- */

/* True when nedbd runs with --setParameter enableTestCommands=1: test-only commands
 * (configureFailPoint, wire_failpoint.c) exist only then, as in mongod. */
extern bool wire_test_commands_enabled;

extern int wire_log_level; /* 0..3, set once at startup */

void wire_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- server (wire_server.c) ---- */

typedef struct wire_config {
    const char *bind;   /* "127.0.0.1" */
    int port;           /* 27017 */
    const char *dbpath; /* "./nedb-data" */
    int threads;        /* I/O threads, >= 1 */
    int argc;           /* the command line, for getCmdLineOpts */
    char **argv;
    eng_db_options_t engine; /* checkpoint cadence and the like; zeros: the defaults.
                                The server sets checkpoint_done itself (its log). */
    int32_t ttl_monitor_sleep_secs; /* --setParameter ttlMonitorSleepSecs; 0: 60 */
    bool ttl_monitor_disabled;      /* --setParameter ttlMonitorEnabled=false */
} wire_config_t;

/* Runs the server until SIGINT or SIGTERM, then stops accepting, lets the commands in
 * flight finish, closes every connection and returns true. Returns false with err set when
 * the server cannot start (address in use, data directory unusable, ...). */
bool wire_server_run(const wire_config_t *cfg, bq_error_t *err);

#endif
