/* gRPC's framing on top of HTTP/2, as pure functions: the 5-byte message prefix, an incremental
 * decoder for DATA that arrives in arbitrary pieces, and the status trailers. */
#ifndef TR_GRPC_FRAME_H
#define TR_GRPC_FRAME_H

#include "plg_error.h"

#include <stddef.h>
#include <stdint.h>

/* The status codes this plugin acts on (grpc/status.h numbering). */
enum tr_grpc_code {
  TR_GRPC_OK = 0,
  TR_GRPC_CANCELLED = 1,
  TR_GRPC_UNKNOWN = 2,
  TR_GRPC_INVALID_ARGUMENT = 3,
  TR_GRPC_DEADLINE_EXCEEDED = 4,
  TR_GRPC_NOT_FOUND = 5,
  TR_GRPC_FAILED_PRECONDITION = 9,
  TR_GRPC_UNIMPLEMENTED = 12,
  TR_GRPC_INTERNAL = 13,
  TR_GRPC_UNAVAILABLE = 14,
};

/* Replies larger than this are refused: Teleroute messages are a few hundred bytes. */
#define TR_GRPC_MAX_MESSAGE (4 * 1024 * 1024)

const char *tr_grpc_code_name(int code);

/* A message with its prefix (flag 0 = uncompressed, 4-byte big-endian length); caller frees. */
uint8_t *tr_grpc_frame(const uint8_t *msg, size_t len, size_t *out_len);

struct tr_grpc_decoder {
  uint8_t *buf;
  size_t len;
  size_t cap;
};

void tr_grpc_decoder_init(struct tr_grpc_decoder *d);
void tr_grpc_decoder_free(struct tr_grpc_decoder *d);
/* Appends DATA; fails (and the stream must be abandoned) on a compressed message or one over
 * TR_GRPC_MAX_MESSAGE. */
int tr_grpc_decoder_feed(struct tr_grpc_decoder *d, const uint8_t *data, size_t len, plg_error_t *err);
/* 1 and a malloc'd message when one is complete, 0 when more bytes are needed. */
int tr_grpc_decoder_next(struct tr_grpc_decoder *d, uint8_t **msg, size_t *len);
/* True when bytes of an incomplete message remain (a stream that ends here was truncated). */
int tr_grpc_decoder_pending(const struct tr_grpc_decoder *d);

/* grpc-status: a decimal code; -1 when malformed. */
int tr_grpc_parse_status(const char *value, size_t len);
/* grpc-message is percent-encoded; returns a malloc'd printable string. */
char *tr_grpc_decode_message(const char *value, size_t len);
/* grpc-timeout for a deadline in milliseconds: "250m". */
void tr_grpc_timeout_header(int64_t ms, char *buf, size_t size);

#endif
