/*
 * bench.c: nedb-bench, the benchmark client behind scripts/bench. It drives a running
 * server (nedbd, or any MongoDB-compatible server) through libmongoc from N client
 * threads, each with its own mongoc_client_t and so its own single connection, and prints
 * one line per workload: name, connections, ops/s, p50 and p99 latency in microseconds.
 * The `verify` workload runs the offline `nedb verify --json <dbpath>` tool instead and
 * reports records/s.
 *
 * What it must not do: talk to anything but a loopback address (the URI is checked and
 * pinned with directConnection), run unbounded (every workload stops at --seconds or at
 * --max-ops, whichever comes first), or modify data it did not write (every run writes
 * into its own collections, named after a run tag, in the database `nedb_bench`). A
 * workload whose commands fail prints a FAILED line with the server's error and the run
 * goes on; only a setup failure (bad options, no server) makes the exit status non-zero.
 *
 * The client is kept cheap so that the server gets the CPU the two share: commands are
 * built once and only their _id rewritten per op, replies are read through a buffered
 * stream (one recv() each), and the insert workload starts its connection's session once.
 * Every op is still one acknowledged command through libmongoc, checked on its reply.
 *
 * Latencies go into a per-thread log-linear histogram (64 sub-buckets per power of two of
 * nanoseconds, so under 1.6% relative error), merged after the threads are joined: memory
 * is fixed however many ops run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <mongoc/mongoc.h>

#define BENCH_DB "nedb_bench"
#define BATCH_DOCS 1000   /* documents per insertMany batch */
#define MAX_THREADS 1024
#define MAX_SECONDS 600
#define MAX_RUNS 64       /* workload runs per invocation */

/* ---- time and latency histogram ---------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB * 60u)

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
} hist_t;

static unsigned hist_bucket(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    unsigned b = (shift + 1) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* The middle of bucket `b`'s value range, in nanoseconds. */
static double hist_value(unsigned b)
{
    if (b < 2 * HIST_SUB)
        return (double)b;
    unsigned shift = b / HIST_SUB - 1;
    uint64_t lo = ((uint64_t)(HIST_SUB + b % HIST_SUB)) << shift;
    return (double)lo + (double)((uint64_t)1 << shift) / 2.0;
}

static void hist_add(hist_t *h, uint64_t ns)
{
    h->count[hist_bucket(ns)]++;
    h->total++;
}

static void hist_merge(hist_t *into, const hist_t *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->count[i] += from->count[i];
    into->total += from->total;
}

/* The value at quantile q (0..1), in microseconds; 0 for an empty histogram. */
static double hist_quantile_us(const hist_t *h, double q)
{
    if (!h->total)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total);
    if (rank >= h->total)
        rank = h->total - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > rank)
            return hist_value(i) / 1000.0;
    }
    return hist_value(HIST_BUCKETS - 1) / 1000.0;
}

/* ---- options ------------------------------------------------------------------------ */

typedef enum { W_PING, W_INSERT, W_INSERTMANY, W_FIND_ID, W_UPDATE_ID, W_VERIFY } wkind_t;

static const char *const wnames[] = {"ping", "insert", "insertmany", "find_id", "update_id",
                                     "verify"};

typedef struct run {
    wkind_t kind;
    int conns;
} run_t;

static struct {
    const char *uri;
    int threads;         /* the "many connections" count, default 64 */
    double seconds;
    uint64_t max_ops;    /* per workload run, over all threads */
    int docs;            /* documents seeded for find_id / update_id */
    const char *dbpath;  /* for verify */
    const char *nedb;    /* the nedb tool, for verify */
    bool json;
    run_t runs[MAX_RUNS];
    int nruns;
    char tag[32];        /* run tag: collection names */
} opt = {
    .uri = "mongodb://127.0.0.1:27017",
    .threads = 64,
    .seconds = 5,
    .max_ops = 10000000,
    .docs = 10000,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nedb-bench [options]\n"
            "\n"
            "Benchmarks a MongoDB-compatible server on a loopback address.\n"
            "\n"
            "options:\n"
            "  --uri URI            server (default mongodb://127.0.0.1:27017; loopback only)\n"
            "  -c, --threads N      connections for the many-connection runs (default 64)\n"
            "  --seconds S          length of each workload run (default 5, at most 600)\n"
            "  --max-ops N          ops per workload run, over all connections (default\n"
            "                       10000000); a run stops at whichever limit comes first\n"
            "  --docs N             documents seeded for find_id and update_id (default 10000)\n"
            "  --workloads LIST     comma-separated, in order (default\n"
            "                       ping,insert,insertmany,find_id,update_id); NAME:C runs\n"
            "                       NAME once with C connections instead of its defaults\n"
            "  --dbpath DIR         data directory for the verify workload\n"
            "  --nedb PATH          the nedb tool for verify (default: nedb beside nedb-bench)\n"
            "  --json               print one JSON object instead of the table\n"
            "  -h, --help           show this help\n"
            "\n"
            "workloads and their default connection counts (N = --threads):\n"
            "  ping        1 and N   {ping: 1}: the round-trip floor\n"
            "  insert      N         the insert command of one document (as insertOne\n"
            "                        sends it, built once), writeConcern {w: 1, j: true},\n"
            "                        unique _id; every reply must say n: 1\n"
            "  insertmany  8         insertMany of %d documents, j: true; ops/s counts\n"
            "                        documents, batches/s is printed too\n"
            "  find_id     1 and N   find {_id: random seeded id}, limit 1\n"
            "  update_id   N         updateOne {_id: random seeded id} {$inc: {n: 1}}\n"
            "  verify      -         `nedb verify --json DBPATH` on a stopped server's data;\n"
            "                        records/s (needs --dbpath)\n"
            "\n"
            "Exit status: 0 when the runs happened (a failed workload prints a FAILED line),\n"
            "2 on a setup failure (bad options, server unreachable).\n",
            BATCH_DOCS);
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return false;
    *out = (uint64_t)v;
    return true;
}

static bool add_run(wkind_t kind, int conns)
{
    if (opt.nruns >= MAX_RUNS) {
        fprintf(stderr, "nedb-bench: too many workload runs (at most %d)\n", MAX_RUNS);
        return false;
    }
    opt.runs[opt.nruns].kind = kind;
    opt.runs[opt.nruns].conns = conns;
    opt.nruns++;
    return true;
}

/* Adds the runs for one item of --workloads: "name" (its default connection counts) or
 * "name:C". Connection counts of 0 mean "--threads", resolved after all options. */
static bool parse_workload(const char *item)
{
    char name[32];
    const char *colon = strchr(item, ':');
    size_t len = colon ? (size_t)(colon - item) : strlen(item);
    if (len == 0 || len >= sizeof name) {
        fprintf(stderr, "nedb-bench: bad workload '%s'\n", item);
        return false;
    }
    memcpy(name, item, len);
    name[len] = '\0';
    int kind = -1;
    for (int i = 0; i < (int)(sizeof wnames / sizeof wnames[0]); i++)
        if (strcmp(name, wnames[i]) == 0)
            kind = i;
    if (kind < 0) {
        fprintf(stderr, "nedb-bench: unknown workload '%s'\n", name);
        return false;
    }
    if (colon) {
        uint64_t c;
        if (kind == W_VERIFY || !parse_u64(colon + 1, 1, MAX_THREADS, &c)) {
            fprintf(stderr, "nedb-bench: bad connection count in '%s'\n", item);
            return false;
        }
        return add_run((wkind_t)kind, (int)c);
    }
    switch ((wkind_t)kind) {
    case W_PING:
    case W_FIND_ID:
        return add_run((wkind_t)kind, 1) && add_run((wkind_t)kind, 0);
    case W_INSERTMANY:
        return add_run(W_INSERTMANY, 8);
    case W_VERIFY:
        return add_run(W_VERIFY, 1);
    default:
        return add_run((wkind_t)kind, 0);
    }
}

static bool parse_workloads(const char *list)
{
    char *copy = strdup(list), *save = NULL;
    bool ok = copy != NULL;
    for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; ok && item;
         item = strtok_r(NULL, ",", &save))
        ok = parse_workload(item);
    free(copy);
    return ok;
}

static bool parse_options(int argc, char **argv)
{
    enum { O_URI = 256, O_SECONDS, O_MAX_OPS, O_DOCS, O_WORKLOADS, O_DBPATH, O_NEDB, O_JSON };
    static const struct option longopts[] = {
        {"uri", required_argument, NULL, O_URI},
        {"threads", required_argument, NULL, 'c'},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"max-ops", required_argument, NULL, O_MAX_OPS},
        {"docs", required_argument, NULL, O_DOCS},
        {"workloads", required_argument, NULL, O_WORKLOADS},
        {"dbpath", required_argument, NULL, O_DBPATH},
        {"nedb", required_argument, NULL, O_NEDB},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *workloads = "ping,insert,insertmany,find_id,update_id";
    uint64_t v;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_URI:
            opt.uri = optarg;
            break;
        case 'c':
            if (!parse_u64(optarg, 1, MAX_THREADS, &v)) {
                fprintf(stderr, "nedb-bench: --threads wants 1..%d\n", MAX_THREADS);
                return false;
            }
            opt.threads = (int)v;
            break;
        case O_SECONDS: {
            char *end;
            opt.seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(opt.seconds > 0) || opt.seconds > MAX_SECONDS) {
                fprintf(stderr, "nedb-bench: --seconds wants a number in (0, %d]\n",
                        MAX_SECONDS);
                return false;
            }
            break;
        }
        case O_MAX_OPS:
            if (!parse_u64(optarg, 1, UINT64_C(1000000000), &opt.max_ops)) {
                fprintf(stderr, "nedb-bench: --max-ops wants 1..1000000000\n");
                return false;
            }
            break;
        case O_DOCS:
            if (!parse_u64(optarg, 1, 10000000, &v)) {
                fprintf(stderr, "nedb-bench: --docs wants 1..10000000\n");
                return false;
            }
            opt.docs = (int)v;
            break;
        case O_WORKLOADS:
            workloads = optarg;
            break;
        case O_DBPATH:
            opt.dbpath = optarg;
            break;
        case O_NEDB:
            opt.nedb = optarg;
            break;
        case O_JSON:
            opt.json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return false;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nedb-bench: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (!parse_workloads(workloads))
        return false;
    for (int i = 0; i < opt.nruns; i++) {
        if (opt.runs[i].conns == 0)
            opt.runs[i].conns = opt.threads;
        if (opt.runs[i].kind == W_VERIFY && !opt.dbpath) {
            fprintf(stderr, "nedb-bench: the verify workload needs --dbpath\n");
            return false;
        }
    }
    return true;
}

/* ---- the server's URI: loopback only ------------------------------------------------ */

static bool host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
        strcmp(host, "[::1]") == 0)
        return true;
    if (strncmp(host, "127.", 4) == 0) {
        for (const char *p = host + 4; *p; p++)
            if ((*p < '0' || *p > '9') && *p != '.')
                return false;
        return true;
    }
    /* A Unix domain socket is local by construction. */
    return host[0] == '/';
}

static mongoc_uri_t *uri_checked_new(void)
{
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(opt.uri, &error);
    if (!uri) {
        fprintf(stderr, "nedb-bench: bad --uri: %s\n", error.message);
        return NULL;
    }
    const mongoc_host_list_t *hosts = mongoc_uri_get_hosts(uri);
    if (mongoc_uri_get_srv_hostname(uri) || !hosts || hosts->next) {
        fprintf(stderr, "nedb-bench: --uri must name exactly one host (no mongodb+srv)\n");
        mongoc_uri_destroy(uri);
        return NULL;
    }
    if (!host_is_loopback(hosts->host)) {
        fprintf(stderr, "nedb-bench: refusing '%s': only loopback addresses are allowed\n",
                hosts->host);
        mongoc_uri_destroy(uri);
        return NULL;
    }
    /* Pinned to the one host: no discovery of other members. */
    mongoc_uri_set_option_as_bool(uri, MONGOC_URI_DIRECTCONNECTION, true);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 60000);
    mongoc_uri_set_appname(uri, "nedb-bench");
    return uri;
}

static mongoc_uri_t *g_uri;

/* libmongoc's own connection, read through a buffer: libmongoc reads a reply as its
 * 4-byte length and then the rest, two recv() calls on a bare socket; through the
 * buffered stream the first read takes the whole reply. The bytes on the wire are the
 * same. */
static mongoc_stream_t *stream_buffered_initiator(const mongoc_uri_t *uri,
                                                  const mongoc_host_list_t *host,
                                                  void *client, bson_error_t *error)
{
    (void)client;
    int32_t timeout_ms = mongoc_uri_get_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS,
                                                        10000);
    int64_t expire_at = bson_get_monotonic_time() + (int64_t)timeout_ms * 1000;
    mongoc_socket_t *sock = NULL;
    if (host->family == AF_UNIX) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(host->host) < sizeof sun.sun_path) {
            memcpy(sun.sun_path, host->host, strlen(host->host) + 1);
            sock = mongoc_socket_new(AF_UNIX, SOCK_STREAM, 0);
            if (sock && mongoc_socket_connect(sock, (struct sockaddr *)&sun, sizeof sun,
                                              expire_at) != 0) {
                mongoc_socket_destroy(sock);
                sock = NULL;
            }
        }
    } else {
        char port[16];
        snprintf(port, sizeof port, "%u", (unsigned)host->port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = host->family};
        struct addrinfo *res = NULL;
        if (getaddrinfo(host->host, port, &hints, &res) == 0) {
            for (struct addrinfo *ai = res; ai && !sock; ai = ai->ai_next) {
                sock = mongoc_socket_new(ai->ai_family, SOCK_STREAM, 0);
                if (!sock)
                    continue;
                int one = 1;
                mongoc_socket_setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (mongoc_socket_connect(sock, ai->ai_addr, ai->ai_addrlen, expire_at) != 0) {
                    mongoc_socket_destroy(sock);
                    sock = NULL;
                }
            }
            freeaddrinfo(res);
        }
    }
    if (!sock) {
        bson_set_error(error, MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_CONNECT,
                       "cannot connect to %s", host->host_and_port);
        return NULL;
    }
    return mongoc_stream_buffered_new(mongoc_stream_socket_new(sock), 16384);
}

/* libmongoc's messages at warning and above; its debug line for every client that uses a
 * custom stream initiator (client_new) would drown the table. */
static void log_handler(mongoc_log_level_t level, const char *domain, const char *message,
                        void *data)
{
    if (level <= MONGOC_LOG_LEVEL_WARNING)
        mongoc_log_default_handler(level, domain, message, data);
}

/* A client on g_uri whose server errors carry the server's own code (error API 2). */
static mongoc_client_t *client_new(bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_new_from_uri_with_error(g_uri, error);
    if (client) {
        mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
        mongoc_client_set_stream_initiator(client, stream_buffered_initiator, client);
    }
    return client;
}

/* ---- error text --------------------------------------------------------------------- */

/* Formats a libmongoc error for a FAILED line: the server's code, codeName (when the reply
 * has one) and message. */
static void error_format(char *out, size_t size, const bson_error_t *error,
                         const bson_t *reply)
{
    const char *code_name = NULL;
    bson_iter_t it;
    if (reply && bson_iter_init_find(&it, reply, "codeName") && BSON_ITER_HOLDS_UTF8(&it))
        code_name = bson_iter_utf8(&it, NULL);
    if (!code_name && reply && bson_iter_init_find(&it, reply, "writeErrors") &&
        BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t arr, err;
        if (bson_iter_recurse(&it, &arr) && bson_iter_next(&arr) &&
            BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &err) &&
            bson_iter_find(&err, "codeName") && BSON_ITER_HOLDS_UTF8(&err))
            code_name = bson_iter_utf8(&err, NULL);
    }
    bool server = error->domain == MONGOC_ERROR_SERVER ||
                  error->domain == MONGOC_ERROR_WRITE_CONCERN ||
                  error->domain == MONGOC_ERROR_COLLECTION;
    if (server && code_name)
        snprintf(out, size, "server error %" PRIu32 " %.60s: %.400s", error->code, code_name,
                 error->message);
    else if (server)
        snprintf(out, size, "server error %" PRIu32 ": %.400s", error->code, error->message);
    else
        snprintf(out, size, "client error (domain %" PRIu32 ", code %" PRIu32 "): %.400s",
                 error->domain, error->code, error->message);
}

/* ---- documents ---------------------------------------------------------------------- */

/*
 * Benchmark documents are built once from a template and then only have their _id
 * rewritten in place: {_id: int64, t: int32 thread, n: int32 0, s: 48-byte string}. The
 * _id is the first element, so its int64 sits at a fixed offset: 4 (document length) +
 * 1 (type) + 4 ("_id\0").
 */
#define ID_OFFSET 9

typedef struct docbuf {
    uint8_t *data;
    size_t len;
    bson_t doc; /* static view over data */
} docbuf_t;

static void docbuf_init(docbuf_t *d, int thread)
{
    bson_t t = BSON_INITIALIZER;
    BSON_APPEND_INT64(&t, "_id", 0);
    BSON_APPEND_INT32(&t, "t", thread);
    BSON_APPEND_INT32(&t, "n", 0);
    BSON_APPEND_UTF8(&t, "s", "nedb-bench payload nedb-bench payload nedb-bench");
    d->len = t.len;
    d->data = bson_malloc(d->len);
    memcpy(d->data, bson_get_data(&t), d->len);
    bson_destroy(&t);
    bson_init_static(&d->doc, d->data, d->len);
}

static void docbuf_set_id(docbuf_t *d, int64_t id)
{
    uint64_t u = (uint64_t)id;
    for (int i = 0; i < 8; i++)
        d->data[ID_OFFSET + i] = (uint8_t)(u >> (8 * i)); /* BSON is little-endian */
}

static void docbuf_cleanup(docbuf_t *d)
{
    bson_free(d->data);
}

/*
 * The insert workload's command, built once per connection: {insert: <coll>, documents:
 * [<the thread's document>], ordered: true}. Only the document's _id is rewritten before
 * each op, in place, at `id_at` (found by locating the template document inside the
 * command's bytes), so an op costs no BSON building. This is the command libmongoc's
 * insertOne sends; the write concern goes in through the opts, as insertOne's would.
 */
typedef struct insert_cmd {
    uint8_t *data;
    size_t len;
    size_t id_at;
    bson_t cmd; /* static view over data */
} insert_cmd_t;

static bool insert_cmd_init(insert_cmd_t *c, const docbuf_t *doc, const char *coll)
{
    bson_t t = BSON_INITIALIZER, arr;
    BSON_APPEND_UTF8(&t, "insert", coll);
    BSON_APPEND_ARRAY_BEGIN(&t, "documents", &arr);
    BSON_APPEND_DOCUMENT(&arr, "0", &doc->doc);
    bson_append_array_end(&t, &arr);
    BSON_APPEND_BOOL(&t, "ordered", true);
    c->len = t.len;
    c->data = bson_malloc(c->len);
    memcpy(c->data, bson_get_data(&t), c->len);
    bson_destroy(&t);
    const uint8_t *at = memmem(c->data, c->len, doc->data, doc->len);
    if (!at)
        return false;
    c->id_at = (size_t)(at - c->data) + ID_OFFSET;
    bson_init_static(&c->cmd, c->data, c->len);
    return true;
}

static void insert_cmd_set_id(insert_cmd_t *c, int64_t id)
{
    uint64_t u = (uint64_t)id;
    for (int i = 0; i < 8; i++)
        c->data[c->id_at + i] = (uint8_t)(u >> (8 * i));
}

static void insert_cmd_cleanup(insert_cmd_t *c)
{
    bson_free(c->data);
}

/* Ids unique per thread: thread in the high bits, a counter below. */
static int64_t thread_id_base(int thread)
{
    return (int64_t)(thread + 1) << 36;
}

/* ---- workload threads --------------------------------------------------------------- */

typedef struct worker {
    pthread_t tid;
    int index;
    wkind_t kind;
    uint64_t budget;         /* ops this thread may run */
    pthread_barrier_t *ready, *go;
    const uint64_t *deadline; /* written by the coordinator before the `go` barrier */
    hist_t *hist;
    uint64_t ops;            /* successful ops (batches for insertmany) */
    uint64_t errors;
    char first_error[512];
    uint64_t rng;
} worker_t;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: enough to spread _ids over the seeded range. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static void worker_fail(worker_t *w, const bson_error_t *error, const bson_t *reply)
{
    if (!w->errors++)
        error_format(w->first_error, sizeof w->first_error, error, reply);
}

static void worker_fail_text(worker_t *w, const char *text)
{
    if (!w->errors++)
        snprintf(w->first_error, sizeof w->first_error, "%s", text);
}

static char g_coll_insert[64], g_coll_many[64], g_coll_kv[64];

/* What a worker builds once and reuses for every op. */
typedef struct op_ctx {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    docbuf_t *docs;
    const bson_t *wc_opts;   /* {writeConcern: {w: 1, j: true}}, and the insert workload's
                              * sessionId */
    const bson_t *ping;      /* {ping: 1} */
    insert_cmd_t *insert;    /* the insert workload's command */
} op_ctx_t;

/* Checks an insert reply for the one document it must have written: n is 1 and there is
 * no writeErrors or writeConcernError. */
static bool insert_reply_ok(worker_t *w, const bson_t *reply)
{
    bson_iter_t it;
    int64_t n = -1;
    if (bson_iter_init_find(&it, reply, "n") && BSON_ITER_HOLDS_NUMBER(&it))
        n = bson_iter_as_int64(&it);
    if (n == 1 && !bson_has_field(reply, "writeErrors") &&
        !bson_has_field(reply, "writeConcernError"))
        return true;
    bson_error_t error;
    bson_set_error(&error, MONGOC_ERROR_SERVER, 0, "insert not acknowledged: n = %" PRId64
                   "%s%s", n, bson_has_field(reply, "writeErrors") ? ", writeErrors" : "",
                   bson_has_field(reply, "writeConcernError") ? ", writeConcernError" : "");
    worker_fail(w, &error, reply);
    return false;
}

/* One op of `w->kind`; false when it failed (error recorded). */
static bool worker_op(worker_t *w, const op_ctx_t *x)
{
    bson_error_t error;
    bool ok = false;
    mongoc_client_t *client = x->client;
    mongoc_collection_t *coll = x->coll;
    docbuf_t *docs = x->docs;
    const bson_t *wc_opts = x->wc_opts;
    switch (w->kind) {
    case W_PING: {
        bson_t reply;
        ok = mongoc_client_command_simple(client, "admin", x->ping, NULL, &reply, &error);
        if (!ok)
            worker_fail(w, &error, &reply);
        bson_destroy(&reply);
        break;
    }
    case W_INSERT: {
        /* The insert command insertOne sends, prebuilt (see insert_cmd_t): one document,
         * acknowledged with {w: 1, j: true}, with the connection's lsid (worker_main). */
        bson_t reply;
        insert_cmd_set_id(x->insert, thread_id_base(w->index) + (int64_t)w->ops);
        ok = mongoc_client_write_command_with_opts(client, BENCH_DB, &x->insert->cmd, wc_opts,
                                                   &reply, &error);
        if (!ok)
            worker_fail(w, &error, &reply);
        else
            ok = insert_reply_ok(w, &reply);
        bson_destroy(&reply);
        break;
    }
    case W_INSERTMANY: {
        const bson_t *ptrs[BATCH_DOCS];
        bson_t reply;
        int64_t base = thread_id_base(w->index) + (int64_t)(w->ops * BATCH_DOCS);
        for (int i = 0; i < BATCH_DOCS; i++) {
            docbuf_set_id(&docs[i], base + i);
            ptrs[i] = &docs[i].doc;
        }
        ok = mongoc_collection_insert_many(coll, ptrs, BATCH_DOCS, wc_opts, &reply, &error);
        if (!ok)
            worker_fail(w, &error, &reply);
        bson_destroy(&reply);
        break;
    }
    case W_FIND_ID: {
        int64_t id = (int64_t)(rng_next(&w->rng) % (uint64_t)opt.docs);
        bson_t filter = BSON_INITIALIZER, fopts = BSON_INITIALIZER;
        BSON_APPEND_INT64(&filter, "_id", id);
        BSON_APPEND_INT64(&fopts, "limit", 1);
        BSON_APPEND_BOOL(&fopts, "singleBatch", true);
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &fopts, NULL);
        const bson_t *doc;
        bool found = mongoc_cursor_next(cur, &doc);
        const bson_t *reply = NULL;
        if (mongoc_cursor_error_document(cur, &error, &reply))
            worker_fail(w, &error, reply);
        else if (!found) {
            char text[96];
            snprintf(text, sizeof text, "find returned no document for _id %" PRId64, id);
            worker_fail_text(w, text);
        } else
            ok = true;
        mongoc_cursor_destroy(cur);
        bson_destroy(&fopts);
        bson_destroy(&filter);
        break;
    }
    case W_UPDATE_ID: {
        int64_t id = (int64_t)(rng_next(&w->rng) % (uint64_t)opt.docs);
        bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, inc, reply;
        BSON_APPEND_INT64(&filter, "_id", id);
        BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
        BSON_APPEND_INT32(&inc, "n", 1);
        bson_append_document_end(&update, &inc);
        ok = mongoc_collection_update_one(coll, &filter, &update, NULL, &reply, &error);
        if (!ok)
            worker_fail(w, &error, &reply);
        else {
            bson_iter_t it;
            int64_t matched = -1;
            if (bson_iter_init_find(&it, &reply, "matchedCount") &&
                BSON_ITER_HOLDS_NUMBER(&it))
                matched = bson_iter_as_int64(&it);
            if (matched != 1) {
                char text[96];
                snprintf(text, sizeof text,
                         "update of _id %" PRId64 " matched %" PRId64 " documents", id,
                         matched);
                worker_fail_text(w, text);
                ok = false;
            }
        }
        bson_destroy(&reply);
        bson_destroy(&update);
        bson_destroy(&filter);
        break;
    }
    case W_VERIFY:
        break;
    }
    return ok;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    bson_error_t error;
    mongoc_client_t *client = client_new(&error);
    mongoc_collection_t *coll = NULL;
    bson_t wc_opts = BSON_INITIALIZER, insert_opts = BSON_INITIALIZER, ping = BSON_INITIALIZER;
    BSON_APPEND_INT32(&ping, "ping", 1);
    mongoc_client_session_t *session = NULL;
    int ndocs = w->kind == W_INSERTMANY ? BATCH_DOCS : 1;
    docbuf_t *docs = bson_malloc0(sizeof *docs * (size_t)ndocs);
    for (int i = 0; i < ndocs; i++)
        docbuf_init(&docs[i], w->index);
    insert_cmd_t icmd = {0};
    bool ready = false;
    if (w->kind == W_INSERT && !insert_cmd_init(&icmd, &docs[0], g_coll_insert)) {
        worker_fail_text(w, "cannot build the insert command");
    } else if (!client) {
        worker_fail(w, &error, NULL);
    } else {
        const char *cname = w->kind == W_INSERT       ? g_coll_insert
                            : w->kind == W_INSERTMANY ? g_coll_many
                                                      : g_coll_kv;
        coll = mongoc_client_get_collection(client, BENCH_DB, cname);
        mongoc_write_concern_t *wc = mongoc_write_concern_new();
        mongoc_write_concern_set_w(wc, 1);
        mongoc_write_concern_set_journal(wc, true);
        mongoc_write_concern_append(wc, &wc_opts);
        mongoc_write_concern_destroy(wc);
        /* Connect and handshake outside the measured window. */
        bson_t reply;
        ready = mongoc_client_command_simple(client, "admin", &ping, NULL, &reply, &error);
        if (!ready)
            worker_fail(w, &error, &reply);
        bson_destroy(&reply);
        /* The insert workload's session, started once: every insert carries its lsid, as
         * with the implicit session libmongoc would otherwise check out of (and back into)
         * its pool around every command, always the same one on a single-threaded client.
         * Not causally consistent, so it adds nothing else to the commands. */
        if (ready && w->kind == W_INSERT) {
            mongoc_session_opt_t *sopts = mongoc_session_opts_new();
            mongoc_session_opts_set_causal_consistency(sopts, false);
            session = mongoc_client_start_session(client, sopts, &error);
            mongoc_session_opts_destroy(sopts);
            bson_copy_to_excluding_noinit(&wc_opts, &insert_opts, "", NULL);
            if (!session || !mongoc_client_session_append(session, &insert_opts, &error)) {
                worker_fail(w, &error, NULL);
                ready = false;
            }
        }
    }
    op_ctx_t x = {client, coll, docs, w->kind == W_INSERT ? &insert_opts : &wc_opts, &ping,
                  &icmd};
    pthread_barrier_wait(w->ready);
    pthread_barrier_wait(w->go);
    uint64_t deadline = *w->deadline;
    while (ready && w->ops < w->budget) {
        uint64_t t0 = now_ns();
        if (t0 >= deadline)
            break;
        if (!worker_op(w, &x))
            break; /* one error is enough: the line reports it */
        hist_add(w->hist, now_ns() - t0);
        w->ops++;
    }
    for (int i = 0; i < ndocs; i++)
        docbuf_cleanup(&docs[i]);
    bson_free(docs);
    insert_cmd_cleanup(&icmd);
    bson_destroy(&ping);
    bson_destroy(&insert_opts);
    bson_destroy(&wc_opts);
    if (session)
        mongoc_client_session_destroy(session);
    if (coll)
        mongoc_collection_destroy(coll);
    if (client)
        mongoc_client_destroy(client);
    return NULL;
}

/* ---- results ------------------------------------------------------------------------ */

typedef struct result {
    wkind_t kind;
    int conns;
    bool failed;
    char error[512];
    uint64_t ops;         /* documents for insertmany, records for verify */
    uint64_t batches;     /* insertmany */
    uint64_t errors;
    double seconds;
    double ops_per_s, batches_per_s;
    double p50_us, p99_us;
    uint64_t bytes;       /* verify: log bytes */
    int verify_runs;
} result_t;

static result_t results[MAX_RUNS];
static int nresults;

/* Runs one workload with `conns` threads and fills `r`. */
static void run_threads(wkind_t kind, int conns, result_t *r)
{
    worker_t *ws = bson_malloc0(sizeof *ws * (size_t)conns);
    hist_t *hists = bson_malloc0(sizeof *hists * (size_t)conns);
    pthread_barrier_t ready, go;
    uint64_t deadline = UINT64_MAX;
    pthread_barrier_init(&ready, NULL, (unsigned)conns + 1);
    pthread_barrier_init(&go, NULL, (unsigned)conns + 1);
    uint64_t per_thread = opt.max_ops / (uint64_t)conns;
    if (kind == W_INSERTMANY)
        per_thread /= BATCH_DOCS;
    if (per_thread == 0)
        per_thread = 1;
    int started = 0;
    for (int i = 0; i < conns; i++) {
        worker_t *w = &ws[i];
        w->index = i;
        w->kind = kind;
        w->budget = per_thread;
        w->ready = &ready;
        w->go = &go;
        w->deadline = &deadline;
        w->hist = &hists[i];
        w->rng = UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(i + 1) ^ now_ns();
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            fprintf(stderr, "nedb-bench: cannot start thread %d\n", i);
            exit(2); /* the barriers count on every thread: setup failure */
        }
        started++;
    }
    pthread_barrier_wait(&ready);
    uint64_t t0 = now_ns();
    deadline = t0 + (uint64_t)(opt.seconds * 1e9);
    pthread_barrier_wait(&go);
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    uint64_t t1 = now_ns();
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&go);

    hist_t *all = bson_malloc0(sizeof *all);
    r->kind = kind;
    r->conns = conns;
    for (int i = 0; i < conns; i++) {
        hist_merge(all, &hists[i]);
        r->ops += ws[i].ops;
        if (ws[i].errors && !r->errors)
            snprintf(r->error, sizeof r->error, "%s", ws[i].first_error);
        r->errors += ws[i].errors;
    }
    r->seconds = (double)(t1 - t0) / 1e9;
    if (kind == W_INSERTMANY) {
        r->batches = r->ops;
        r->ops *= BATCH_DOCS;
        r->batches_per_s = (double)r->batches / r->seconds;
    }
    r->ops_per_s = (double)r->ops / r->seconds;
    r->p50_us = hist_quantile_us(all, 0.50);
    r->p99_us = hist_quantile_us(all, 0.99);
    r->failed = r->ops == 0 && r->errors > 0;
    bson_free(all);
    bson_free(hists);
    bson_free(ws);
}

/* Seeds the find_id / update_id collection with _id 0..docs-1, once per run. */
static bool seed_kv(char *err, size_t errsize)
{
    static int state; /* 0 not yet, 1 done, -1 failed */
    static char saved[512];
    if (state) {
        snprintf(err, errsize, "%s", saved);
        return state > 0;
    }
    bson_error_t error;
    mongoc_client_t *client = client_new(&error);
    if (!client) {
        error_format(saved, sizeof saved, &error, NULL);
        state = -1;
        snprintf(err, errsize, "%s", saved);
        return false;
    }
    mongoc_collection_t *coll = mongoc_client_get_collection(client, BENCH_DB, g_coll_kv);
    docbuf_t *docs = bson_malloc0(sizeof *docs * BATCH_DOCS);
    const bson_t *ptrs[BATCH_DOCS];
    for (int i = 0; i < BATCH_DOCS; i++)
        docbuf_init(&docs[i], -1);
    state = 1;
    for (int base = 0; base < opt.docs && state > 0; base += BATCH_DOCS) {
        int n = opt.docs - base < BATCH_DOCS ? opt.docs - base : BATCH_DOCS;
        for (int i = 0; i < n; i++) {
            docbuf_set_id(&docs[i], base + i);
            ptrs[i] = &docs[i].doc;
        }
        bson_t reply;
        if (!mongoc_collection_insert_many(coll, ptrs, (size_t)n, NULL, &reply, &error)) {
            char text[400];
            error_format(text, sizeof text, &error, &reply);
            snprintf(saved, sizeof saved, "seeding %d documents: %s", opt.docs, text);
            state = -1;
        }
        bson_destroy(&reply);
    }
    for (int i = 0; i < BATCH_DOCS; i++)
        docbuf_cleanup(&docs[i]);
    bson_free(docs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    snprintf(err, errsize, "%s", saved);
    return state > 0;
}

/* ---- verify ------------------------------------------------------------------------- */

/* Finds a number after `"key":` in a flat JSON object; false when absent. */
static bool json_u64(const char *json, const char *key, uint64_t *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return false;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* Reads everything from `fd` into out (NUL-terminated, truncated to outsize - 1). */
static void read_all(int fd, char *out, size_t outsize)
{
    size_t used = 0;
    for (;;) {
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n;
        if (take > outsize - 1 - used)
            take = outsize - 1 - used;
        memcpy(out + used, buf, take);
        used += take;
    }
    while (used && (out[used - 1] == '\n' || out[used - 1] == ' '))
        used--;
    out[used] = '\0';
}

/* Runs `nedb verify --json dbpath` once: its stdout goes through a pipe into `out`, its
 * stderr into a temporary file and then `errout`. Returns the exit status (-1 when it
 * could not be started) and sets the wall time. */
static int verify_once(char *out, size_t outsize, char *errout, size_t errsize,
                       double *seconds)
{
    out[0] = errout[0] = '\0';
    FILE *errfile = tmpfile();
    int pipefd[2];
    if (!errfile || pipe(pipefd) != 0) {
        snprintf(errout, errsize, "pipe: %s", strerror(errno));
        if (errfile)
            fclose(errfile);
        return -1;
    }
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errout, errsize, "fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        fclose(errfile);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(fileno(errfile), STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execl(opt.nedb, opt.nedb, "verify", "--json", opt.dbpath, (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", opt.nedb, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    read_all(pipefd[0], out, outsize);
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    *seconds = (double)(now_ns() - t0) / 1e9;
    if (lseek(fileno(errfile), 0, SEEK_SET) == 0)
        read_all(fileno(errfile), errout, errsize);
    fclose(errfile);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Runs verify until it has run for about a second in total (at least once, at most 10
 * times) and keeps the fastest run: a short log is dominated by process start-up. The
 * record count comes from the --json output ("records"), or from the text summary
 * ("valid: N records") of a tool without --json. */
static void run_verify(result_t *r)
{
    r->kind = W_VERIFY;
    r->conns = 1;
    double total = 0, best = 0;
    for (int i = 0; i < 10 && (i == 0 || total < 1.0); i++) {
        char out[8192], errout[1024];
        double secs = 0;
        int rc = verify_once(out, sizeof out, errout, sizeof errout, &secs);
        uint64_t records = 0, bytes = 0;
        bool parsed = json_u64(out, "records", &records);
        if (!parsed) {
            const char *p = strstr(out, "valid: ");
            unsigned long long v;
            if (p && sscanf(p, "valid: %llu records", &v) == 1) {
                records = (uint64_t)v;
                parsed = true;
            }
        }
        json_u64(out, "bytes", &bytes);
        if (rc != 0 || !parsed) {
            r->failed = true;
            r->errors = 1;
            snprintf(r->error, sizeof r->error, "%s verify exited %d: %.400s", opt.nedb, rc,
                     errout[0] ? errout : out[0] ? out : "(no output)");
            if (rc == 1 && out[0]) /* ran, chain invalid: the JSON says where */
                snprintf(r->error, sizeof r->error, "chain INVALID: %.400s", out);
            return;
        }
        total += secs;
        r->verify_runs++;
        if (best == 0 || secs < best) {
            best = secs;
            r->ops = records;
            r->bytes = bytes;
        }
    }
    r->seconds = best;
    r->ops_per_s = best > 0 ? (double)r->ops / best : 0;
    r->p50_us = r->p99_us = best * 1e6;
}

/* ---- output ------------------------------------------------------------------------- */

static void print_header(void)
{
    printf("%-11s %5s %12s %10s %10s  %s\n", "workload", "conns", "ops/s", "p50_us", "p99_us",
           "notes");
    fflush(stdout);
}

static void print_line(const result_t *r)
{
    const char *name = wnames[r->kind];
    if (r->failed) {
        printf("%-11s %5d FAILED: %s\n", name, r->conns, r->error);
    } else if (r->kind == W_VERIFY) {
        printf("%-11s %5s %12.0f %10s %10s  records/s; %" PRIu64 " records, %.1f MB, "
               "best of %d run(s), %.3f s\n",
               name, "-", r->ops_per_s, "-", "-", r->ops, (double)r->bytes / 1e6,
               r->verify_runs, r->seconds);
    } else {
        printf("%-11s %5d %12.0f %10.1f %10.1f  ", name, r->conns, r->ops_per_s, r->p50_us,
               r->p99_us);
        if (r->kind == W_INSERTMANY)
            printf("docs/s; %.1f batches/s of %d; ", r->batches_per_s, BATCH_DOCS);
        printf("%" PRIu64 " ops in %.2f s", r->ops, r->seconds);
        if (r->errors)
            printf("; stopped early, %" PRIu64 " errors, first: %s", r->errors, r->error);
        printf("\n");
    }
    fflush(stdout);
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_json(void)
{
    printf("{\"uri\":");
    json_string(opt.uri);
    printf(",\"seconds\":%g,\"results\":[", opt.seconds);
    for (int i = 0; i < nresults; i++) {
        const result_t *r = &results[i];
        printf("%s{\"workload\":\"%s\",\"connections\":%d,\"ok\":%s", i ? "," : "",
               wnames[r->kind], r->conns, r->failed ? "false" : "true");
        if (r->failed) {
            printf(",\"error\":");
            json_string(r->error);
            printf("}");
            continue;
        }
        printf(",\"ops\":%" PRIu64 ",\"seconds\":%.6f,\"opsPerSec\":%.1f", r->ops, r->seconds,
               r->ops_per_s);
        if (r->kind == W_VERIFY) {
            printf(",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64
                   ",\"recordsPerSec\":%.1f,\"runs\":%d}",
                   r->ops, r->bytes, r->ops_per_s, r->verify_runs);
            continue;
        }
        printf(",\"p50Micros\":%.1f,\"p99Micros\":%.1f,\"errors\":%" PRIu64, r->p50_us,
               r->p99_us, r->errors);
        if (r->errors) {
            printf(",\"error\":");
            json_string(r->error);
        }
        if (r->kind == W_INSERTMANY)
            printf(",\"batches\":%" PRIu64 ",\"batchesPerSec\":%.1f,\"batchSize\":%d",
                   r->batches, r->batches_per_s, BATCH_DOCS);
        printf("}");
    }
    printf("]}\n");
}

/* ---- main --------------------------------------------------------------------------- */

/* The nedb tool beside this executable (both are built into the build directory). */
static char *default_nedb_path(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return bson_strdup("nedb");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    return bson_strdup_printf("%s/nedb", self);
}

/* Connects once before any workload: a server that does not answer ping is a setup
 * failure, not a failed workload. */
static bool server_check(void)
{
    bson_error_t error;
    mongoc_client_t *client = client_new(&error);
    bool ok = false;
    if (client) {
        bson_t cmd = BSON_INITIALIZER, reply;
        BSON_APPEND_INT32(&cmd, "ping", 1);
        ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, &error);
        bson_destroy(&reply);
        bson_destroy(&cmd);
        mongoc_client_destroy(client);
    }
    if (!ok)
        fprintf(stderr, "nedb-bench: no server at %s: %s\n", opt.uri, error.message);
    return ok;
}

int main(int argc, char **argv)
{
    if (!parse_options(argc, argv))
        return 2;
    signal(SIGPIPE, SIG_IGN);
    char *nedb_default = NULL;
    if (!opt.nedb)
        opt.nedb = nedb_default = default_nedb_path();

    bool needs_server = false;
    for (int i = 0; i < opt.nruns; i++)
        needs_server |= opt.runs[i].kind != W_VERIFY;

    mongoc_init();
    mongoc_log_set_handler(log_handler, NULL);
    int rc = 0;
    g_uri = uri_checked_new();
    if (!g_uri || (needs_server && !server_check())) {
        rc = 2;
        goto out;
    }
    unsigned tagv = (unsigned)(time(NULL) ^ (getpid() << 16));
    snprintf(opt.tag, sizeof opt.tag, "%08x", tagv);
    snprintf(g_coll_insert, sizeof g_coll_insert, "insert_%s", opt.tag);
    snprintf(g_coll_many, sizeof g_coll_many, "insertmany_%s", opt.tag);
    snprintf(g_coll_kv, sizeof g_coll_kv, "kv_%s", opt.tag);

    if (!opt.json)
        print_header();
    for (int i = 0; i < opt.nruns; i++) {
        result_t *r = &results[nresults++];
        memset(r, 0, sizeof *r);
        const run_t *run = &opt.runs[i];
        if (run->kind == W_VERIFY) {
            run_verify(r);
        } else if ((run->kind == W_FIND_ID || run->kind == W_UPDATE_ID) &&
                   !seed_kv(r->error, sizeof r->error)) {
            r->kind = run->kind;
            r->conns = run->conns;
            r->failed = true;
        } else {
            run_threads(run->kind, run->conns, r);
        }
        if (!opt.json)
            print_line(r);
    }
    if (opt.json)
        print_json();
out:
    if (g_uri)
        mongoc_uri_destroy(g_uri);
    bson_free(nedb_default);
    mongoc_cleanup();
    return rc;
}
