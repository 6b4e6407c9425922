/*
 * wire_frame.c: the MongoDB wire-protocol frame parser and reply builders (wire_frame.h).
 *
 * This file owns the byte layout of messages: it delimits the header, OP_MSG sections and
 * OP_QUERY fields, verifies OP_MSG checksums (wire_crc32c.c), checks every embedded BSON
 * document with libbson, and turns a frame into a wire_msg_t whose body is the command.
 * It must stay pure: no sockets, no libevent, no logging, no globals, so that the server,
 * the unit tests and the fuzzer (tests/fuzz/fuzz_wire_frame.c) all drive the same code with
 * nothing but bytes. It never parses BSON by hand: it only reads the int32 length that
 * prefixes each document in order to delimit it, and leaves the rest to libbson.
 *
 * How a bad frame is judged (wire_parse_result_t):
 *   1. Structure first. The header length must equal the frame length; every section,
 *      document and cstring must end inside the frame and the sections must fill it
 *      exactly; OP_MSG needs exactly one kind-0 section, a known section kind, no unknown
 *      required flag bit, a matching checksum. Any failure is WIRE_PARSE_CLOSE (code
 *      ProtocolError): we can no longer trust where the next frame starts, or the peer
 *      speaks something we do not.
 *   2. Content second, only once the whole frame is known to be well delimited. A
 *      document that libbson rejects (InvalidBSON), is too large (BSONObjectTooLarge) or
 *      too deeply nested (Overflow), a duplicate or colliding document-sequence identifier
 *      (BadValue), a bad OP_QUERY namespace (InvalidNamespace): WIRE_PARSE_ERROR_REPLY.
 *      The first such problem in frame order is reported.
 * msg->hdr is filled as soon as 16 bytes are present, so an error reply can carry the
 * request's requestID in its responseTo.
 */
#include <stdio.h>
#include <string.h>

#include "wire_frame.h"

/* Largest document accepted on the wire (see wire_frame.h): a command holding a
 * maximum-size user document (an insert whose documents array is in the body, as the node
 * driver sends it) must still parse. */
#define FRAME_MAX_DOC_SIZE WIRE_MAX_BSON_INTERNAL_SIZE

/* Deepest nesting of documents/arrays accepted (mongod: BSONDepth 200). The limit also
 * bounds doc_walk()'s stack of iterators, and keeps every recursive libbson walk that comes
 * later off a stack overflow: a 16 MiB document could otherwise nest two million levels
 * deep. */
#define FRAME_MAX_DEPTH 200

/* Kind-1 sections accepted in one OP_MSG. Real requests carry at most two (bulkWrite: ops
 * and nsInfo); mongod treats more than its limit as a malformed, connection-fatal message
 * (SERVER-31829). A small cap bounds the duplicate-identifier check. */
#define FRAME_MAX_SEQUENCES 8


#define OP_MSG_KNOWN_REQUIRED (WIRE_MSG_CHECKSUM_PRESENT | WIRE_MSG_MORE_TO_COME)

static int32_t read_i32(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return (int32_t)v;
}

static uint32_t read_u32(const uint8_t *p)
{
    return (uint32_t)read_i32(p);
}

static void write_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void write_i32(uint8_t *p, int32_t v)
{
    write_u32(p, (uint32_t)v);
}

static void header_read(const uint8_t *buf, wire_header_t *hdr)
{
    hdr->length = read_i32(buf);
    hdr->request_id = read_i32(buf + 4);
    hdr->response_to = read_i32(buf + 8);
    hdr->opcode = read_i32(buf + 12);
}

wire_frame_status_t wire_frame_peek(const uint8_t *buf, size_t len, wire_header_t *hdr,
                                    bq_error_t *err)
{
    if (len < 4)
        return WIRE_FRAME_NEED_MORE;
    /* The length alone decides validity: reject it as soon as it has arrived rather than
     * waiting for a header that a broken peer may never complete. */
    int32_t length = read_i32(buf);
    if (length < WIRE_HEADER_SIZE || length > WIRE_MAX_MESSAGE_SIZE) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "invalid message length %d: must be between %d and %d bytes", length,
                     WIRE_HEADER_SIZE, WIRE_MAX_MESSAGE_SIZE);
        return WIRE_FRAME_INVALID;
    }
    if (len < WIRE_HEADER_SIZE)
        return WIRE_FRAME_NEED_MORE;
    if (hdr)
        header_read(buf, hdr);
    return len < (size_t)length ? WIRE_FRAME_NEED_MORE : WIRE_FRAME_READY;
}

/* ---- content checks (ERROR_REPLY) ---- */

/* How many bytes of valid UTF-8 text to print: at most `max`, never splitting a character,
 * so that error messages (which become reply strings) stay valid UTF-8. */
static int utf8_print_len(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return (int)len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0u) == 0x80u)
        max--;
    return (int)max;
}

/* The first content error of a frame. It is only returned once the frame has proved well
 * delimited, since a structural error (CLOSE) found later takes precedence. */
typedef struct frame_check {
    bool failed;
    bq_error_t err;
} frame_check_t;

/* Whether s[0, len) is valid UTF-8 (with NUL bytes allowed when allow_null), as libbson's
 * bson_utf8_validate() says; plain ASCII, nearly every key and string, is settled here
 * without the call. */
static bool text_utf8_ok(const char *s, size_t len, bool allow_null)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80u || (c == 0 && !allow_null))
            return bson_utf8_validate(s, len, allow_null);
    }
    return true;
}

/* What doc_walk() found. */
typedef enum walk_result { WALK_OK, WALK_TOO_DEEP, WALK_BAD_UTF8, WALK_CORRUPT } walk_result_t;

/* The text an element carries that must be UTF-8: string, code, symbol, the code of
 * code-with-scope, a DBPointer's collection, a regex's pattern and options. */
static bool elem_text_ok(const bson_iter_t *it)
{
    uint32_t len = 0;
    const char *s = NULL, *opts = NULL;
    const bson_oid_t *oid = NULL;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8:
        s = bson_iter_utf8(it, &len);
        break;
    case BSON_TYPE_CODE:
        s = bson_iter_code(it, &len);
        break;
    case BSON_TYPE_SYMBOL:
        s = bson_iter_symbol(it, &len);
        break;
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t scope_len = 0;
        const uint8_t *scope = NULL;
        s = bson_iter_codewscope(it, &len, &scope_len, &scope);
        break;
    }
    case BSON_TYPE_DBPOINTER:
        bson_iter_dbpointer(it, &len, &s, &oid);
        break;
    case BSON_TYPE_REGEX:
        s = bson_iter_regex(it, &opts);
        if (!s || !opts)
            return false;
        return text_utf8_ok(s, strlen(s), false) &&
               text_utf8_ok(opts, strlen(opts), false);
    default:
        return true;
    }
    return s && text_utf8_ok(s, len, true);
}

/* Walks doc with libbson's iterator, without recursion: checks that no document or array
 * (code-with-scope scopes included) nests deeper than FRAME_MAX_DEPTH, that every key and
 * every text value is UTF-8, and that the structure holds. libbson 1.23's bson_validate()
 * accepts invalid UTF-8 in values despite BSON_VALIDATE_UTF8 (the corpus's "invalid UTF-8"
 * cases prove it), so the walk checks text itself (text_utf8_ok: libbson's
 * bson_utf8_validate). The structure is what libbson's iterator checks at every element,
 * at every level (bson_validate() is the same walk with a visitor, and cost as much again
 * per document): an element the iterator cannot read, or a document, array or scope that
 * does not delimit. A structural fault ends its own level only; the walk goes on in the
 * levels above, and reports WALK_CORRUPT at the end unless it found a text or depth fault,
 * which take precedence (as when bson_validate() ran after the walk). */
static walk_result_t doc_walk(const bson_t *doc)
{
    /* bson_iter_t is over-aligned, so it cannot be an array element by itself. */
    struct level {
        bson_iter_t it;
    } stack[FRAME_MAX_DEPTH + 1];
    size_t depth = 0;
    bool corrupt = false;

    if (!bson_iter_init(&stack[0].it, doc))
        return WALK_CORRUPT;
    for (;;) {
        bson_iter_t *it = &stack[depth].it;
        if (!bson_iter_next(it)) {
            if (it->err_off != 0)
                corrupt = true; /* the iterator stopped at an element it could not read */
            if (depth == 0)
                return corrupt ? WALK_CORRUPT : WALK_OK;
            depth--;
            continue;
        }
        if (!text_utf8_ok(bson_iter_key(it), bson_iter_key_len(it), false) ||
            !elem_text_ok(it))
            return WALK_BAD_UTF8;
        bson_iter_t child;
        bool has_child = false;
        if (BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) {
            has_child = bson_iter_recurse(it, &child);
            corrupt |= !has_child;
        } else if (BSON_ITER_HOLDS_CODEWSCOPE(it)) {
            uint32_t code_len = 0, scope_len = 0;
            const uint8_t *scope = NULL;
            bson_t scope_doc;
            bson_iter_codewscope(it, &code_len, &scope_len, &scope);
            has_child = scope && bson_init_static(&scope_doc, scope, scope_len) &&
                        bson_iter_init(&child, &scope_doc);
            corrupt |= !has_child;
        }
        if (!has_child)
            continue;
        if (depth == FRAME_MAX_DEPTH)
            return WALK_TOO_DEEP;
        stack[++depth].it = child;
    }
}

/* Checks one delimited document of dlen bytes (>= 5) at doc. On the frame's first failure,
 * records it in chk with a message that says why but not which document; the caller
 * prefixes the name then (so the hot path of a large insert formats nothing). Returns
 * whether chk holds a new failure. */
static bool doc_check_fails(frame_check_t *chk, const uint8_t *doc, size_t dlen)
{
    if (chk->failed)
        return false;
    chk->failed = true;
    if (dlen > FRAME_MAX_DOC_SIZE) {
        bq_error_set(&chk->err, BQ_ERR_BSONObjectTooLarge,
                     "BSONObj size: %zu (0x%zX) is invalid. Size must be between 0 and "
                     "%d(16MB)",
                     dlen, dlen, FRAME_MAX_DOC_SIZE);
        return true;
    }
    bson_t b;
    if (!bson_init_static(&b, doc, dlen)) {
        bq_error_set(&chk->err, BQ_ERR_InvalidBSON,
                     "not valid BSON: it does not end with a NUL byte");
        return true;
    }
    walk_result_t w = doc_walk(&b);
    if (w == WALK_BAD_UTF8) {
        bq_error_set(&chk->err, BQ_ERR_InvalidBSON, "not valid BSON: invalid UTF-8");
        return true;
    }
    if (w == WALK_TOO_DEEP) {
        bq_error_set(&chk->err, BQ_ERR_Overflow,
                     "BSONObj exceeds maximum nested object depth: %d", FRAME_MAX_DEPTH);
        return true;
    }
    if (w == WALK_CORRUPT) {
        bq_error_set(&chk->err, BQ_ERR_InvalidBSON, "not valid BSON: corrupt BSON");
        return true;
    }
    chk->failed = false;
    return false;
}

/* doc_check_fails() for a document with a fixed name ("OP_MSG body"). */
static void doc_check(frame_check_t *chk, const uint8_t *doc, size_t dlen, const char *what)
{
    if (doc_check_fails(chk, doc, dlen))
        bq_error_prefix(&chk->err, "%s", what);
}

/* ---- structure (CLOSE) ---- */

/* Delimits the BSON document that starts at buf[pos], which must end by buf[end]. On
 * success *dlen is its length (>= 5). */
static bool doc_delimit(const uint8_t *buf, size_t pos, size_t end, size_t *dlen,
                        const char *what, bq_error_t *err)
{
    if (end - pos < 4) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "%s is truncated: %zu bytes left where a document length belongs", what,
                     end - pos);
        return false;
    }
    int32_t n = read_i32(buf + pos);
    if (n < 5) {
        bq_error_set(err, BQ_ERR_ProtocolError, "%s has an invalid document length %d", what,
                     n);
        return false;
    }
    if ((size_t)n > end - pos) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "%s length %d runs past the end of its section (%zu bytes left)", what, n,
                     end - pos);
        return false;
    }
    *dlen = (size_t)n;
    return true;
}

/* A kind-1 section, as delimited by sequence_delimit(). */
typedef struct frame_seq {
    const char *id; /* NUL-terminated inside the frame */
    size_t id_len;
    size_t docs;    /* offset of the first document */
    size_t end;     /* offset just past the section */
    size_t ndocs;   /* documents in it */
} frame_seq_t;

/* Delimits the kind-1 section whose size field is at buf[pos] (the kind byte is before it)
 * and checks its documents. */
static bool sequence_delimit(const uint8_t *buf, size_t pos, size_t end, frame_seq_t *seq,
                             frame_check_t *chk, bq_error_t *err)
{
    if (end - pos < 4) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "OP_MSG document sequence is truncated: %zu bytes left where its size "
                     "belongs",
                     end - pos);
        return false;
    }
    int32_t size = read_i32(buf + pos);
    if (size < 5 || (size_t)size > end - pos) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "OP_MSG document sequence has an invalid size %d (%zu bytes left)", size,
                     end - pos);
        return false;
    }
    size_t send = pos + (size_t)size;
    const uint8_t *id = buf + pos + 4;
    const uint8_t *nul = memchr(id, 0, send - (pos + 4));
    if (!nul) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "OP_MSG document sequence identifier is not NUL-terminated within the "
                     "section");
        return false;
    }
    seq->id = (const char *)id;
    seq->id_len = (size_t)(nul - id);
    seq->docs = (size_t)(nul - buf) + 1;
    seq->end = send;

    if (!chk->failed && seq->id_len == 0) {
        chk->failed = true;
        bq_error_set(&chk->err, BQ_ERR_BadValue,
                     "OP_MSG document sequence identifier must not be empty");
    }
    if (!chk->failed && !bson_utf8_validate(seq->id, seq->id_len, false)) {
        chk->failed = true;
        bq_error_set(&chk->err, BQ_ERR_InvalidBSON,
                     "OP_MSG document sequence identifier is not valid UTF-8");
    }
    /* The identifier is valid UTF-8 without NULs from here on when chk has not failed;
     * messages print it only then. */
    size_t i = 0;
    for (size_t p = seq->docs; p < send; i++) {
        size_t dlen;
        if (!doc_delimit(buf, p, send, &dlen, "OP_MSG document sequence document", err))
            return false;
        if (doc_check_fails(chk, buf + p, dlen))
            bq_error_prefix(&chk->err, "document %zu of OP_MSG sequence '%.*s'", i,
                            utf8_print_len(seq->id, seq->id_len, 40), seq->id);
        p += dlen;
    }
    seq->ndocs = i;
    return true;
}

/* ---- OP_MSG ---- */

/* Appends each kind-1 sequence to msg->body as an array field named by its identifier. */
static bool msg_splice(const uint8_t *buf, const frame_seq_t *seqs, size_t n, bson_t *body,
                       bq_error_t *err)
{
    for (size_t s = 0; s < n; s++) {
        bson_t arr;
        if (!bson_append_array_begin(body, seqs[s].id, (int)seqs[s].id_len, &arr))
            goto overflow;
        uint32_t i = 0;
        for (size_t p = seqs[s].docs; p < seqs[s].end; i++) {
            size_t dlen = (size_t)read_i32(buf + p);
            bson_t doc;
            char keybuf[16];
            const char *key;
            size_t klen = bson_uint32_to_string(i, &key, keybuf, sizeof keybuf);
            if (!bson_init_static(&doc, buf + p, dlen) ||
                !bson_append_document(&arr, key, (int)klen, &doc)) {
                bson_append_array_end(body, &arr);
                goto overflow;
            }
            p += dlen;
        }
        if (!bson_append_array_end(body, &arr))
            goto overflow;
    }
    return true;
overflow:
    bq_error_set(err, BQ_ERR_BSONObjectTooLarge,
                 "OP_MSG body with its document sequences spliced in is too large");
    return false;
}

static wire_parse_result_t msg_parse(const uint8_t *buf, size_t len, wire_msg_t *msg,
                                     bq_error_t *err)
{
    size_t pos = WIRE_HEADER_SIZE, end = len;
    if (end - pos < 4) {
        bq_error_set(err, BQ_ERR_ProtocolError, "OP_MSG is too short to hold its flagBits");
        return WIRE_PARSE_CLOSE;
    }
    uint32_t flags = read_u32(buf + pos);
    pos += 4;
    msg->flags = flags;
    uint32_t unknown = flags & WIRE_MSG_REQUIRED_MASK & ~(uint32_t)OP_MSG_KNOWN_REQUIRED;
    if (unknown) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "OP_MSG has unknown required flag bits set: 0x%04X", unknown);
        return WIRE_PARSE_CLOSE;
    }
    if (flags & WIRE_MSG_CHECKSUM_PRESENT) {
        if (end - pos < 4) {
            bq_error_set(err, BQ_ERR_ProtocolError,
                         "OP_MSG has checksumPresent set but no room for a checksum");
            return WIRE_PARSE_CLOSE;
        }
        end -= 4;
        uint32_t want = read_u32(buf + end);
        uint32_t got = wire_crc32c(0, buf, end);
        if (want != got) {
            bq_error_set(err, BQ_ERR_ProtocolError,
                         "OP_MSG checksum mismatch: message says 0x%08X, bytes give 0x%08X",
                         want, got);
            return WIRE_PARSE_CLOSE;
        }
    }

    frame_check_t chk = {.failed = false};
    frame_seq_t seqs[FRAME_MAX_SEQUENCES];
    size_t nseq = 0;
    size_t body_pos = 0, body_len = 0;
    bool have_body = false;

    while (pos < end) {
        uint8_t kind = buf[pos++];
        if (kind == 0) {
            if (have_body) {
                bq_error_set(err, BQ_ERR_ProtocolError,
                             "OP_MSG has more than one kind-0 (body) section");
                return WIRE_PARSE_CLOSE;
            }
            if (!doc_delimit(buf, pos, end, &body_len, "OP_MSG body", err))
                return WIRE_PARSE_CLOSE;
            have_body = true;
            body_pos = pos;
            doc_check(&chk, buf + pos, body_len, "OP_MSG body");
            pos += body_len;
        } else if (kind == 1) {
            if (nseq == FRAME_MAX_SEQUENCES) {
                bq_error_set(err, BQ_ERR_ProtocolError,
                             "OP_MSG has more than %d document sequences",
                             FRAME_MAX_SEQUENCES);
                return WIRE_PARSE_CLOSE;
            }
            if (!sequence_delimit(buf, pos, end, &seqs[nseq], &chk, err))
                return WIRE_PARSE_CLOSE;
            pos = seqs[nseq++].end;
        } else {
            bq_error_set(err, BQ_ERR_ProtocolError,
                         "OP_MSG has a section of unknown kind %u at offset %zu", kind,
                         pos - 1);
            return WIRE_PARSE_CLOSE;
        }
    }
    if (!have_body) {
        bq_error_set(err, BQ_ERR_ProtocolError, "OP_MSG has no kind-0 (body) section");
        return WIRE_PARSE_CLOSE;
    }
    if (chk.failed) {
        if (err)
            *err = chk.err;
        return WIRE_PARSE_ERROR_REPLY;
    }

    /* Every document is valid from here on. */
    bson_t body;
    bson_init_static(&body, buf + body_pos, body_len);
    for (size_t s = 0; s < nseq; s++) {
        for (size_t t = 0; t < s; t++) {
            if (seqs[t].id_len == seqs[s].id_len &&
                memcmp(seqs[t].id, seqs[s].id, seqs[s].id_len) == 0) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "OP_MSG has two document sequences named '%.*s'",
                             utf8_print_len(seqs[s].id, seqs[s].id_len, 100), seqs[s].id);
                return WIRE_PARSE_ERROR_REPLY;
            }
        }
        bson_iter_t it;
        if (bson_iter_init_find_w_len(&it, &body, seqs[s].id, (int)seqs[s].id_len)) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "duplicate field '%.*s': it is both in the OP_MSG body and a "
                         "document sequence",
                         utf8_print_len(seqs[s].id, seqs[s].id_len, 100), seqs[s].id);
            return WIRE_PARSE_ERROR_REPLY;
        }
    }
    /* Size the command once: a large insert would otherwise grow it by doubling, copying
     * megabytes. Each sequence adds its array element header and, per document, a type
     * byte and an index key of at most 10 digits and a NUL. */
    size_t want = body_len;
    for (size_t s = 0; s < nseq; s++)
        want += 1 + seqs[s].id_len + 1 + 5 + (seqs[s].end - seqs[s].docs) + 12 * seqs[s].ndocs;
    bson_t *cmd = bson_sized_new(want);
    if (!bson_concat(cmd, &body) || !msg_splice(buf, seqs, nseq, cmd, err)) {
        if (err && err->code == 0)
            bq_error_set(err, BQ_ERR_BSONObjectTooLarge, "OP_MSG body is too large");
        bson_destroy(cmd);
        return WIRE_PARSE_ERROR_REPLY;
    }
    bson_destroy(&msg->body); /* the empty inline document: nothing to free */
    bson_steal(&msg->body, cmd);
    return WIRE_PARSE_OK;
}

/* ---- OP_QUERY ---- */

static wire_parse_result_t query_parse(const uint8_t *buf, size_t len, wire_msg_t *msg,
                                       bq_error_t *err)
{
    size_t pos = WIRE_HEADER_SIZE, end = len;
    if (end - pos < 4) {
        bq_error_set(err, BQ_ERR_ProtocolError, "OP_QUERY is too short to hold its flags");
        return WIRE_PARSE_CLOSE;
    }
    int32_t qflags = read_i32(buf + pos);
    pos += 4;
    const uint8_t *ns = buf + pos;
    const uint8_t *nul = memchr(ns, 0, end - pos);
    if (!nul) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "OP_QUERY fullCollectionName is not NUL-terminated within the message");
        return WIRE_PARSE_CLOSE;
    }
    size_t ns_len = (size_t)(nul - ns);
    pos += ns_len + 1;
    if (end - pos < 8) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "OP_QUERY is truncated before numberToSkip/numberToReturn");
        return WIRE_PARSE_CLOSE;
    }
    int32_t to_return = read_i32(buf + pos + 4);
    pos += 8;
    size_t qlen, qpos = pos;
    if (!doc_delimit(buf, pos, end, &qlen, "OP_QUERY query", err))
        return WIRE_PARSE_CLOSE;
    pos += qlen;
    size_t slen = 0, spos = pos;
    if (pos < end) {
        if (!doc_delimit(buf, pos, end, &slen, "OP_QUERY returnFieldsSelector", err))
            return WIRE_PARSE_CLOSE;
        pos += slen;
        if (pos != end) {
            bq_error_set(err, BQ_ERR_ProtocolError,
                         "OP_QUERY has %zu bytes of trailing garbage after its documents",
                         end - pos);
            return WIRE_PARSE_CLOSE;
        }
    }

    msg->query_flags = qflags;
    msg->number_to_return = to_return;
    if (ns_len == 0 || ns_len >= sizeof msg->ns ||
        !bson_utf8_validate((const char *)ns, ns_len, false) || ns[0] == '.' ||
        !memchr(ns, '.', ns_len)) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "OP_QUERY has an invalid namespace (%zu bytes): expected <db>.<collection>, "
                     "shorter than %zu bytes",
                     ns_len, sizeof msg->ns);
        return WIRE_PARSE_ERROR_REPLY;
    }
    memcpy(msg->ns, ns, ns_len);
    msg->ns[ns_len] = '\0';

    frame_check_t chk = {.failed = false};
    doc_check(&chk, buf + qpos, qlen, "OP_QUERY query");
    if (slen)
        doc_check(&chk, buf + spos, slen, "OP_QUERY returnFieldsSelector");
    if (chk.failed) {
        if (err)
            *err = chk.err;
        return WIRE_PARSE_ERROR_REPLY;
    }

    /* Drivers wrap a command sent with a read preference: {$query: cmd, $readPreference: ..}
     * (older ones spell it {query: cmd, ...} as the first field). The command is the
     * inner document. */
    bson_t query;
    bson_init_static(&query, buf + qpos, qlen);
    bson_iter_t it;
    bool wrapped = bson_iter_init_find(&it, &query, "$query");
    if (!wrapped && bson_iter_init(&it, &query) && bson_iter_next(&it) &&
        strcmp(bson_iter_key(&it), "query") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it))
        wrapped = true;
    if (wrapped) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_BadValue, "OP_QUERY $query must be a document");
            return WIRE_PARSE_ERROR_REPLY;
        }
        uint32_t ilen = 0;
        const uint8_t *inner = NULL;
        bson_iter_document(&it, &ilen, &inner);
        if (!inner || !bson_init_static(&query, inner, ilen)) {
            bq_error_set(err, BQ_ERR_InvalidBSON, "OP_QUERY $query is not a valid document");
            return WIRE_PARSE_ERROR_REPLY;
        }
    }
    if (!bson_concat(&msg->body, &query)) {
        bson_reinit(&msg->body);
        bq_error_set(err, BQ_ERR_BSONObjectTooLarge, "OP_QUERY query is too large");
        return WIRE_PARSE_ERROR_REPLY;
    }
    return WIRE_PARSE_OK;
}

/* ---- entry points ---- */

wire_parse_result_t wire_frame_parse(const uint8_t *frame, size_t len, wire_msg_t *msg,
                                     bq_error_t *err)
{
    memset(msg, 0, sizeof *msg);
    bson_init(&msg->body);

    if (!frame || len < WIRE_HEADER_SIZE) {
        bq_error_set(err, BQ_ERR_ProtocolError, "message of %zu bytes is shorter than its header",
                     len);
        return WIRE_PARSE_CLOSE;
    }
    header_read(frame, &msg->hdr);
    if (msg->hdr.length < WIRE_HEADER_SIZE || msg->hdr.length > WIRE_MAX_MESSAGE_SIZE ||
        (size_t)msg->hdr.length != len) {
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "message length field %d does not match the %zu bytes of the frame",
                     msg->hdr.length, len);
        return WIRE_PARSE_CLOSE;
    }
    switch (msg->hdr.opcode) {
    case WIRE_OP_MSG:
        return msg_parse(frame, len, msg, err);
    case WIRE_OP_QUERY:
        return query_parse(frame, len, msg, err);
    case WIRE_OP_COMPRESSED:
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "OP_COMPRESSED is not supported: compression was never negotiated");
        return WIRE_PARSE_CLOSE;
    case WIRE_OP_REPLY:
    case WIRE_OP_UPDATE:
    case WIRE_OP_INSERT:
    case WIRE_OP_GET_MORE:
    case WIRE_OP_DELETE:
    case WIRE_OP_KILL_CURSORS:
        bq_error_set(err, BQ_ERR_ProtocolError,
                     "legacy opcode %d is not supported: use OP_MSG", msg->hdr.opcode);
        return WIRE_PARSE_CLOSE;
    default:
        bq_error_set(err, BQ_ERR_ProtocolError, "unknown opcode %d", msg->hdr.opcode);
        return WIRE_PARSE_CLOSE;
    }
}

void wire_msg_cleanup(wire_msg_t *msg)
{
    if (!msg)
        return;
    bson_destroy(&msg->body);
    bson_init(&msg->body); /* a second cleanup is harmless */
}

static void header_write(uint8_t *dst, size_t len, int32_t request_id, int32_t response_to,
                         int32_t opcode)
{
    write_i32(dst, (int32_t)len);
    write_i32(dst + 4, request_id);
    write_i32(dst + 8, response_to);
    write_i32(dst + 12, opcode);
}

size_t wire_frame_build_msg(uint8_t *dst, size_t cap, int32_t request_id,
                            int32_t response_to, uint32_t flags, const bson_t *body)
{
    size_t need = WIRE_HEADER_SIZE + 4 + 1 + body->len;
    if (!dst || need > cap)
        return need;
    header_write(dst, need, request_id, response_to, WIRE_OP_MSG);
    write_u32(dst + 16, flags & ~(uint32_t)WIRE_MSG_CHECKSUM_PRESENT);
    dst[20] = 0;
    memcpy(dst + 21, bson_get_data(body), body->len);
    return need;
}

size_t wire_frame_build_reply(uint8_t *dst, size_t cap, int32_t request_id,
                              int32_t response_to, int32_t response_flags, const bson_t *doc)
{
    size_t need = WIRE_HEADER_SIZE + 20 + doc->len;
    if (!dst || need > cap)
        return need;
    header_write(dst, need, request_id, response_to, WIRE_OP_REPLY);
    write_i32(dst + 16, response_flags);
    memset(dst + 20, 0, 8); /* cursorID */
    write_i32(dst + 28, 0); /* startingFrom */
    write_i32(dst + 32, 1); /* numberReturned */
    memcpy(dst + 36, bson_get_data(doc), doc->len);
    return need;
}
