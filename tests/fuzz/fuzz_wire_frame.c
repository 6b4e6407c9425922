/*
 * fuzz_wire_frame.c: libFuzzer harness for wire/wire_frame.c, the wire-protocol frame
 * parser. It owns nothing but the harness: every input goes through wire_frame_peek() and
 * wire_frame_parse() as a server would feed them, then once more with messageLength
 * patched to the input's size (so the fuzzer explores section contents without first having
 * to guess a matching length), each time from an exactly-sized heap copy so ASan sees any
 * read past the frame. A body that parses is turned back into a frame with
 * wire_frame_build_msg() and wire_frame_build_reply(), which must parse again to the same
 * body. Crashes, sanitizer reports, leaks and the abort() below are the findings.
 *
 * Seeds live in corpus/fuzz_wire_frame/: small valid frames (OP_MSG with kinds 0 and 1,
 * with a checksum, moreToCome, OP_QUERY hello plain and wrapped), written once with
 * libbson and the builders' byte layout, one frame per file.
 */
#include <stdlib.h>
#include <string.h>

#include "wire_frame.h"

static wire_parse_result_t parse_copy(const uint8_t *data, size_t len, wire_msg_t *msg,
                                      bq_error_t *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    if (len)
        memcpy(copy, data, len);
    wire_parse_result_t r = wire_frame_parse(copy, len, msg, err);
    free(copy);
    return r;
}

/* The contract of a result: an error for everything but OK, an empty body unless OK. */
static void check_result(wire_parse_result_t r, const wire_msg_t *msg, const bq_error_t *err)
{
    if (r != WIRE_PARSE_OK && (err->code == 0 || err->message[0] == '\0'))
        abort();
    if (r != WIRE_PARSE_OK && msg->body.len != 5)
        abort();
    if (r == WIRE_PARSE_CLOSE && err->code != BQ_ERR_ProtocolError)
        abort();
    /* The message becomes a reply string: it must be UTF-8. */
    if (!bson_utf8_validate(err->message, strlen(err->message), false))
        abort();
}

/* Builds an OP_MSG and an OP_REPLY around a parsed body and parses the OP_MSG back. */
static void round_trip(const wire_msg_t *msg)
{
    size_t need = wire_frame_build_msg(NULL, 0, 1, msg->hdr.request_id, 0, &msg->body);
    uint8_t *buf = malloc(need);
    if (!buf || wire_frame_build_msg(buf, need, 1, msg->hdr.request_id,
                                     WIRE_MSG_MORE_TO_COME, &msg->body) != need)
        abort();
    wire_header_t hdr;
    if (wire_frame_peek(buf, need, &hdr, NULL) != WIRE_FRAME_READY || (size_t)hdr.length != need)
        abort();
    wire_msg_t again;
    bq_error_t err;
    bq_error_clear(&err);
    wire_parse_result_t r = wire_frame_parse(buf, need, &again, &err);
    /* Splicing a sequence nests its documents two levels deeper, which may pass the depth
     * limit; anything else must come back as it went in. */
    if (r == WIRE_PARSE_OK) {
        if (!bson_equal(&again.body, &msg->body) || again.flags != WIRE_MSG_MORE_TO_COME)
            abort();
    } else if (!(r == WIRE_PARSE_ERROR_REPLY && err.code == BQ_ERR_Overflow)) {
        abort();
    }
    wire_msg_cleanup(&again);
    free(buf);

    need = wire_frame_build_reply(NULL, 0, 1, msg->hdr.request_id, 0, &msg->body);
    buf = malloc(need);
    if (!buf || wire_frame_build_reply(buf, need, 1, msg->hdr.request_id, 0, &msg->body) != need)
        abort();
    bson_t doc;
    if (!bson_init_static(&doc, buf + 36, need - 36) || !bson_equal(&doc, &msg->body))
        abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_header_t hdr;
    bq_error_t err;
    wire_msg_t msg;

    /* As the server does: peek, then parse exactly the frame peek reported. */
    bq_error_clear(&err);
    wire_frame_status_t st = wire_frame_peek(data, size, &hdr, &err);
    if (st == WIRE_FRAME_INVALID && err.code != BQ_ERR_ProtocolError)
        abort();
    if (st == WIRE_FRAME_READY) {
        bq_error_clear(&err);
        wire_parse_result_t r = parse_copy(data, (size_t)hdr.length, &msg, &err);
        check_result(r, &msg, &err);
        if (r == WIRE_PARSE_OK)
            round_trip(&msg);
        wire_msg_cleanup(&msg);
    }

    /* The same bytes with messageLength forced to match. */
    if (size >= 4 && size <= WIRE_MAX_MESSAGE_SIZE) {
        uint8_t *copy = malloc(size);
        if (!copy)
            abort();
        memcpy(copy, data, size);
        uint32_t n = (uint32_t)size;
        copy[0] = (uint8_t)n;
        copy[1] = (uint8_t)(n >> 8);
        copy[2] = (uint8_t)(n >> 16);
        copy[3] = (uint8_t)(n >> 24);
        bq_error_clear(&err);
        wire_parse_result_t r = wire_frame_parse(copy, size, &msg, &err);
        check_result(r, &msg, &err);
        if (r == WIRE_PARSE_OK)
            round_trip(&msg);
        wire_msg_cleanup(&msg);
        free(copy);
    }
    return 0;
}
