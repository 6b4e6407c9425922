/*
 * test_eng_verify.c: tests of engine/eng_verify.c (the report) and of the `nedb` tool
 * built from engine/nedb_main.c: `nedb verify` exit codes 0 / 1 / 2, --json, --strict,
 * and `nedb dump`. The tool is found through NEDB_BUILD (the build directory).
 */
#include <sys/wait.h>

#include "eng_test_util.h"

Test(eng_verify, reports_count_head_and_segments)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    t_append(log, 100, 50, NULL);
    uint8_t head[ENG_HASH_SIZE];
    eng_log_head(log, NULL, head);
    eng_log_close(log);
    eng_verify_report_t r = t_verify(db);
    cr_assert(r.valid);
    cr_assert_eq(r.records, 100);
    cr_assert_eq(r.reason, ENG_VERIFY_OK);
    char hex[65];
    cr_assert_str_eq(r.head_hex, eng_hash_hex(head, hex));
    cr_assert_gt(r.segments, 1);
    cr_assert_gt(r.bytes, 100 * 50);
    t_rm_rf(db);
    free(db);
}

Test(eng_verify, an_empty_log_is_valid_with_a_zero_head)
{
    char *db = t_dbpath();
    eng_log_close(t_open(db, 0));
    eng_verify_report_t r = t_verify(db);
    cr_assert(r.valid);
    cr_assert_eq(r.records, 0);
    cr_assert_str_eq(r.head_hex,
                     "0000000000000000000000000000000000000000000000000000000000000000");
    t_rm_rf(db);
    free(db);
}

Test(eng_verify, refuses_what_is_not_a_data_directory)
{
    eng_verify_report_t r;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_verify("/nonexistent/nedb/dir", &r, &err));
    cr_assert_neq(err.code, 0);
    char *db = t_dbpath();
    mkdir(db, 0755);
    cr_assert_not(eng_verify(db, &r, &err));
    cr_assert(strstr(err.message, "no log/"), "%s", err.message);
    t_rm_rf(db);
    free(db);
}

typedef struct {
    uint64_t n;
} count_t;

static bool bad_op_stops(void *ctx, const eng_record_t *rec, bq_error_t *err)
{
    count_t *c = ctx;
    c->n++;
    if (rec->seq == 5) {
        bq_error_set(err, BQ_ERR_BadValue, "stop at 5");
        return false;
    }
    return true;
}

Test(eng_verify, a_callback_error_stops_the_walk)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    t_append(log, 10, 10, NULL);
    eng_log_close(log);
    count_t c = {0};
    eng_verify_options_t opts = {.on_record = bad_op_stops, .on_record_ctx = &c};
    eng_verify_report_t r;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_verify_ex(db, &opts, &r, &err));
    cr_assert_str_eq(err.message, "stop at 5");
    cr_assert_eq(c.n, 6);
    t_rm_rf(db);
    free(db);
}

/* Runs the nedb tool with up to 4 arguments; returns its exit status, stdout in out. */
static int run_nedb(char *out, size_t out_size, const char *a1, const char *a2,
                    const char *a3, const char *a4)
{
    const char *build = getenv("NEDB_BUILD");
    cr_assert(build && *build, "NEDB_BUILD must point at the build directory");
    char tool[1024];
    snprintf(tool, sizeof tool, "%s/nedb", build);
    cr_assert_eq(access(tool, X_OK), 0, "no nedb tool at %s", tool);
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        close(pipefd[0]);
        const char *argv[] = {tool, a1, a2, a3, a4, NULL};
        execv(tool, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t got = 0;
    ssize_t n;
    while ((n = read(pipefd[0], out + got, out_size - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

Test(nedb_tool, verify_exit_codes)
{
    static char out[1 << 16];
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    eng_pos_t pos[20];
    t_append(log, 20, 30, pos);
    eng_log_close(log);

    cr_assert_eq(run_nedb(out, sizeof out, "verify", db, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "valid: 20 records"), "%s", out);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", "--json", db, NULL), 0);
    cr_assert(strstr(out, "\"valid\":true"), "%s", out);
    cr_assert(strstr(out, "\"records\":20"), "%s", out);

    /* usage errors */
    cr_assert_eq(run_nedb(out, sizeof out, NULL, NULL, NULL, NULL), 2);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", NULL, NULL, NULL), 2);
    cr_assert_eq(run_nedb(out, sizeof out, "frobnicate", db, NULL, NULL), 2);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", "/nonexistent/nedb", NULL, NULL), 2);
    cr_assert_eq(run_nedb(out, sizeof out, "--help", NULL, NULL, NULL), 0);
    cr_assert(strstr(out, "verify"), "%s", out);
    cr_assert_eq(run_nedb(out, sizeof out, "--version", NULL, NULL, NULL), 0);
    cr_assert(strstr(out, "nedb "), "%s", out);

    /* a server holding the directory: refused, exit 2 */
    log = t_open(db, 0);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", db, NULL, NULL), 2);
    eng_log_close(log);

    /* a torn tail: valid with a warning, invalid with --strict */
    char seg[1024];
    t_seg_path(db, 0, seg, sizeof seg);
    size_t len;
    uint8_t *d = t_read_file(seg, &len);
    t_write_file(seg, d, len - 5);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", db, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "torn tail"), "%s", out);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", "--strict", db, NULL), 1, "%s", out);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", "--json", db, NULL), 0, "%s", out);
    cr_assert(strstr(out, "\"tornTail\""), "%s", out);

    /* a flipped byte in record 7: invalid, exit 1, naming the seq */
    d[pos[7].off + 20] ^= 0x40;
    t_write_file(seg, d, len);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", db, NULL, NULL), 1, "%s", out);
    cr_assert(strstr(out, "first bad seq 7"), "%s", out);
    cr_assert_eq(run_nedb(out, sizeof out, "verify", "--json", db, NULL), 1, "%s", out);
    cr_assert(strstr(out, "\"valid\":false"), "%s", out);
    cr_assert(strstr(out, "\"badSeq\":7"), "%s", out);
    cr_assert(strstr(out, "\"reason\":\"hash mismatch\""), "%s", out);
    free(d);
    t_rm_rf(db);
    free(db);
}

Test(nedb_tool, dump_prints_one_canonical_json_line_per_op)
{
    static char out[1 << 16];
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    t_append(log, 5, 3, NULL);
    eng_log_close(log);
    cr_assert_eq(run_nedb(out, sizeof out, "dump", db, NULL, NULL), 0, "%s", out);
    size_t lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 5, "%s", out);
    cr_assert(strstr(out, "{ \"seq\" : { \"$numberLong\" : \"0\" }, \"ts\" : { \"$date\" : "),
              "%s", out);
    cr_assert(strstr(out, "\"op\" : \"i\", \"ns\" : \"test.c\""), "%s", out);
    t_rm_rf(db);
    free(db);
}
