/*
 * nedb_main.c: `nedb`, the offline tool for a data directory (DESIGN.md section 1). It is
 * a thin shell over the engine: it parses the command line, calls eng_verify / the
 * verify walker, and prints. It holds no logic of its own about the log format, so the
 * tool and the server cannot disagree. It refuses a directory a server has open (LOCK).
 *
 *   nedb verify [--json] [--strict] <dbpath>   exit 0 valid, 1 invalid, 2 usage or error
 *   nedb dump <dbpath>                         every op as canonical Extended JSON
 *   nedb --help | --version
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "eng.h"

enum { EXIT_VALID = 0, EXIT_INVALID = 1, EXIT_USAGE = 2 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nedb <command> [options] <dbpath>\n"
            "\n"
            "Offline tools for a NEDB data directory (refused while a server has it open).\n"
            "\n"
            "commands:\n"
            "  verify [--json] [--strict] <dbpath>\n"
            "      Walk the whole hash chain: every record's length, hash, link and seq.\n"
            "      Exit status 0 when valid, 1 when not, 2 on a usage or I/O error.\n"
            "      A torn tail (a last record cut short by a crash, never acknowledged)\n"
            "      is reported as a warning; with --strict it makes the chain invalid.\n"
            "      --json prints one JSON object instead of the summary.\n"
            "  dump <dbpath>\n"
            "      Print every op as canonical Extended JSON, one per line, in seq order.\n"
            "      Exit status 1 if the chain breaks (after printing the ops before it).\n"
            "\n"
            "options:\n"
            "  --help       show this help\n"
            "  --version    show the version\n");
}

/* Prints `s` as a JSON string (the inputs here are ASCII, but escape anyway). */
static void json_str(const char *s)
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

static int cmd_verify(int argc, char **argv)
{
    bool json = false, strict = false;
    const char *dbpath = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--strict") == 0)
            strict = true;
        else if (argv[i][0] == '-' || dbpath) {
            fprintf(stderr, "nedb verify: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        } else
            dbpath = argv[i];
    }
    if (!dbpath) {
        fprintf(stderr, "nedb verify: missing <dbpath>\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    eng_verify_report_t r;
    bq_error_t err;
    bq_error_clear(&err);
    if (!eng_verify(dbpath, &r, &err)) {
        if (json) {
            printf("{\"ok\":false,\"error\":");
            json_str(err.message);
            printf(",\"codeName\":");
            json_str(err.code_name);
            printf("}\n");
        }
        fprintf(stderr, "nedb verify: %s\n", err.message);
        return EXIT_USAGE;
    }
    bool valid = r.valid && !(strict && r.torn_bytes);
    if (json) {
        printf("{\"ok\":true,\"valid\":%s,\"records\":%" PRIu64 ",\"segments\":%" PRIu64
               ",\"bytes\":%" PRIu64 ",\"head\":\"%s\"",
               valid ? "true" : "false", r.records, r.segments, r.bytes, r.head_hex);
        if (!r.valid) {
            printf(",\"badSeq\":%" PRIu64 ",\"reason\":", r.bad_seq);
            json_str(eng_verify_reason_name(r.reason));
            printf(",\"segment\":");
            json_str(r.bad_segment);
            printf(",\"offset\":%" PRIu64 ",\"detail\":", r.bad_offset);
            json_str(r.detail);
        }
        if (r.torn_bytes)
            printf(",\"tornTail\":{\"segment\":\"%s\",\"offset\":%" PRIu64
                   ",\"bytes\":%" PRIu64 "}",
                   r.torn_segment, r.torn_offset, r.torn_bytes);
        printf("}\n");
        return valid ? EXIT_VALID : EXIT_INVALID;
    }
    if (r.valid) {
        printf("valid: %" PRIu64 " records in %" PRIu64 " segments (%" PRIu64 " bytes)\n",
               r.records, r.segments, r.bytes);
        printf("head: %s\n", r.head_hex);
    } else {
        printf("INVALID: first bad seq %" PRIu64 ": %s\n", r.bad_seq,
               eng_verify_reason_name(r.reason));
        printf("  at log/%s, byte offset %" PRIu64 ": %s\n", r.bad_segment, r.bad_offset,
               r.detail);
        printf("  %" PRIu64 " records before it verify; their head: %s\n", r.records,
               r.head_hex);
    }
    if (r.torn_bytes)
        printf("%s: torn tail: %" PRIu64 " bytes at log/%s offset %" PRIu64
               " (a record cut short by a crash; never acknowledged; the next open cuts "
               "it)\n",
               strict ? "INVALID" : "warning", r.torn_bytes, r.torn_segment, r.torn_offset);
    return valid ? EXIT_VALID : EXIT_INVALID;
}

static bool dump_record(void *ctx, const eng_record_t *rec, bq_error_t *err)
{
    (void)ctx;
    bson_t doc;
    if (!bson_init_static(&doc, rec->body, rec->len)) {
        bq_error_set(err, BQ_ERR_InvalidBSON, "seq %" PRIu64 " is not valid BSON", rec->seq);
        return false;
    }
    size_t n;
    char *json = bson_as_canonical_extended_json(&doc, &n);
    if (!json) {
        bq_error_set(err, BQ_ERR_InvalidBSON, "seq %" PRIu64 " cannot be printed as JSON",
                     rec->seq);
        return false;
    }
    fwrite(json, 1, n, stdout);
    putchar('\n');
    bson_free(json);
    return true;
}

static int cmd_dump(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "nedb dump: expected exactly one <dbpath>\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    eng_verify_options_t opts = {.check_ops = true, .on_record = dump_record};
    eng_verify_report_t r;
    bq_error_t err;
    bq_error_clear(&err);
    bool ok = eng_verify_ex(argv[0], &opts, &r, &err);
    fflush(stdout);
    if (!ok) {
        fprintf(stderr, "nedb dump: %s\n", err.message);
        return EXIT_USAGE;
    }
    if (!r.valid) {
        fprintf(stderr,
                "nedb dump: the chain breaks at seq %" PRIu64 " (log/%s, offset %" PRIu64
                "): %s: %s\n",
                r.bad_seq, r.bad_segment, r.bad_offset, eng_verify_reason_name(r.reason),
                r.detail);
        return EXIT_INVALID;
    }
    if (r.torn_bytes)
        fprintf(stderr, "nedb dump: warning: torn tail of %" PRIu64 " bytes at log/%s\n",
                r.torn_bytes, r.torn_segment);
    return EXIT_VALID;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("nedb %s\n", NEDB_VERSION);
        return 0;
    }
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 2, argv + 2);
    if (strcmp(cmd, "dump") == 0)
        return cmd_dump(argc - 2, argv + 2);
    fprintf(stderr, "nedb: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
