/*
 * wire_frame.h: MongoDB wire-protocol framing, as a pure parser and builder.
 *
 * Bytes in, structs out: no sockets, no libevent, no globals, so it can be unit-tested and
 * fuzzed (tests/fuzz/fuzz_wire_frame.c). The server (wire_server.c) buffers bytes, asks
 * wire_frame_peek() whether a whole frame has arrived, and hands the frame to
 * wire_frame_parse(). Replies are built with wire_frame_build_msg()/_reply().
 *
 * Message header (all integers little-endian):
 *   offset size field
 *   0      4    messageLength  (whole message, header included)
 *   4      4    requestID
 *   8      4    responseTo
 *   12     4    opCode         (2013 OP_MSG, 2004 OP_QUERY, 1 OP_REPLY, ...)
 * OP_MSG:   flagBits u32, then sections to the end (less 4 bytes when checksumPresent):
 *           kind 0: one BSON document (the command body; exactly one such section);
 *           kind 1: i32 size, cstring identifier, BSON documents filling the size;
 *           optional CRC-32C (Castagnoli) of all preceding bytes of the message.
 * OP_QUERY: flags i32, fullCollectionName cstring, numberToSkip i32, numberToReturn i32,
 *           query document, optional returnFieldsSelector document.
 * OP_REPLY: responseFlags i32, cursorID i64, startingFrom i32, numberReturned i32, docs.
 */
#ifndef WIRE_FRAME_H
#define WIRE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bq.h"

#define WIRE_HEADER_SIZE 16
#define WIRE_MAX_MESSAGE_SIZE 48000000      /* maxMessageSizeBytes */
#define WIRE_MAX_BSON_SIZE (16 * 1024 * 1024) /* maxBsonObjectSize */
/* Largest document the frame parser accepts: mongod's BSONObjMaxInternalSize, 16 KiB of
 * command overhead above maxBsonObjectSize, so that a command whose body holds a
 * maximum-size user document still parses. Stored documents are held to
 * WIRE_MAX_BSON_SIZE by the write path, as in mongod. */
#define WIRE_MAX_BSON_INTERNAL_SIZE (WIRE_MAX_BSON_SIZE + 16 * 1024)
#define WIRE_MAX_WRITE_BATCH 100000           /* maxWriteBatchSize */

enum wire_opcode {
    WIRE_OP_REPLY = 1,
    WIRE_OP_UPDATE = 2001,
    WIRE_OP_INSERT = 2002,
    WIRE_OP_QUERY = 2004,
    WIRE_OP_GET_MORE = 2005,
    WIRE_OP_DELETE = 2006,
    WIRE_OP_KILL_CURSORS = 2007,
    WIRE_OP_COMPRESSED = 2012,
    WIRE_OP_MSG = 2013,
};

/* OP_MSG flagBits. Bits 0-15 are "required": a set bit we do not know is an error. */
#define WIRE_MSG_CHECKSUM_PRESENT (1u << 0)
#define WIRE_MSG_MORE_TO_COME (1u << 1)
#define WIRE_MSG_EXHAUST_ALLOWED (1u << 16)
#define WIRE_MSG_REQUIRED_MASK 0xFFFFu

/* OP_REPLY responseFlags */
#define WIRE_REPLY_CURSOR_NOT_FOUND (1 << 0)
#define WIRE_REPLY_QUERY_FAILURE (1 << 1)
#define WIRE_REPLY_AWAIT_CAPABLE (1 << 3)

typedef struct wire_header {
    int32_t length;
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
} wire_header_t;

typedef enum wire_frame_status {
    WIRE_FRAME_NEED_MORE, /* fewer bytes than the header says: keep reading */
    WIRE_FRAME_READY,     /* a whole frame of hdr->length bytes is at the start of buf */
    WIRE_FRAME_INVALID,   /* length < 16 or > WIRE_MAX_MESSAGE_SIZE: close the connection */
} wire_frame_status_t;

/* Looks at the first bytes buffered on a connection. Fills *hdr (may be NULL) once 16 bytes
 * are there. Judges the length as soon as its 4 bytes are there, so a bad length is
 * WIRE_FRAME_INVALID even before the header is complete. On WIRE_FRAME_INVALID, err says
 * why (code ProtocolError). */
wire_frame_status_t wire_frame_peek(const uint8_t *buf, size_t len, wire_header_t *hdr,
                                    bq_error_t *err);

/* What wire_frame_parse() says the server should do with a frame. */
typedef enum wire_parse_result {
    WIRE_PARSE_OK,          /* msg is filled: dispatch msg->body */
    WIRE_PARSE_ERROR_REPLY, /* the frame is well delimited but its content is bad (invalid
                               BSON: code InvalidBSON, a bad OP_QUERY namespace, ...):
                               answer err to the request, keep the connection */
    WIRE_PARSE_CLOSE,       /* the frame's structure is broken (truncated or overlong
                               sections, duplicate kind-0 section, bad checksum, unknown
                               required flag bits, unsupported opcode): log one line and
                               close the connection */
} wire_parse_result_t;

typedef struct wire_msg {
    wire_header_t hdr;
    uint32_t flags;           /* OP_MSG flagBits; 0 for OP_QUERY */
    bson_t body;              /* owned: the command. For OP_MSG, the kind-0 document with every
                                 kind-1 sequence spliced in as an array field named by its
                                 identifier. For OP_QUERY, the query document, unwrapped
                                 from {$query: ...} when wrapped. Always initialized. */
    char ns[256];             /* OP_QUERY fullCollectionName ("admin.$cmd"); "" for OP_MSG */
    int32_t query_flags;      /* OP_QUERY flags */
    int32_t number_to_return; /* OP_QUERY numberToReturn */
} wire_msg_t;

/* Parses one whole frame (len == hdr.length, as wire_frame_peek() reported). `msg` is always
 * initialized, whatever the result, and must be released with wire_msg_cleanup().
 * On WIRE_PARSE_ERROR_REPLY or WIRE_PARSE_CLOSE, err says why; msg->hdr is filled whenever
 * the frame has 16 bytes, so an error reply can answer msg->hdr.request_id.
 * CLOSE always carries code ProtocolError. ERROR_REPLY codes: InvalidBSON (a document
 * libbson rejects, invalid UTF-8 included), BSONObjectTooLarge (a document larger than
 * WIRE_MAX_BSON_INTERNAL_SIZE), Overflow (documents nested more than 200 deep),
 * InvalidNamespace (a bad OP_QUERY fullCollectionName), BadValue (a kind-1 identifier that
 * is empty, repeats another's, or collides with a field of the body, like mongod's
 * "duplicate field"; an OP_QUERY $query that is not a document). More than 8 kind-1
 * sections in one OP_MSG is a CLOSE, as mongod caps them too. */
wire_parse_result_t wire_frame_parse(const uint8_t *frame, size_t len, wire_msg_t *msg,
                                     bq_error_t *err);

void wire_msg_cleanup(wire_msg_t *msg);

/* Builders. Each returns the number of bytes the message needs; when that is <= cap it has
 * written the message into dst, otherwise it has written nothing (call again with a buffer
 * of the returned size). */

/* OP_MSG with flagBits `flags` (moreToCome/exhaust only; never a checksum) and one kind-0
 * section holding `body`. */
size_t wire_frame_build_msg(uint8_t *dst, size_t cap, int32_t request_id,
                            int32_t response_to, uint32_t flags, const bson_t *body);

/* OP_REPLY carrying one document, cursorID 0, startingFrom 0, numberReturned 1. */
size_t wire_frame_build_reply(uint8_t *dst, size_t cap, int32_t request_id,
                              int32_t response_to, int32_t response_flags, const bson_t *doc);

/* CRC-32C (Castagnoli), as OP_MSG checksums use it. */
uint32_t wire_crc32c(uint32_t crc, const uint8_t *data, size_t len);

#endif
