#include "tr_grpc_frame.h"

#include "plg_text.h"
#include "plg_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tr_grpc_code_name(int code)
{
  static const char *const names[] = {
      "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED",
  };
  if (code < 0 || (size_t)code >= sizeof names / sizeof names[0])
    return "UNKNOWN_CODE";
  return names[code];
}

uint8_t *tr_grpc_frame(const uint8_t *msg, size_t len, size_t *out_len)
{
  uint8_t *out = xmalloc(len + 5);
  out[0] = 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
  if (len > 0)
    memcpy(out + 5, msg, len);
  *out_len = len + 5;
  return out;
}

void tr_grpc_decoder_init(struct tr_grpc_decoder *d)
{
  memset(d, 0, sizeof *d);
}

void tr_grpc_decoder_free(struct tr_grpc_decoder *d)
{
  free(d->buf);
  tr_grpc_decoder_init(d);
}

static uint32_t prefix_length(const uint8_t *p)
{
  return (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
}

/* Checks the prefix of every message in the buffer as soon as that prefix is complete, including
 * one behind a complete message in the same piece, so that a huge declared length is refused
 * before anything is buffered for it and no compressed message is ever handed out. */
static int check_prefixes(const struct tr_grpc_decoder *d, plg_error_t *err)
{
  size_t off = 0;
  while (d->len - off >= 5) {
    const uint8_t *p = d->buf + off;
    if (p[0] != 0)
      return plg_error_make(
          err, 0, "the daemon sent a compressed gRPC message (flag %u), which is not supported", p[0]);
    if (prefix_length(p) > TR_GRPC_MAX_MESSAGE)
      return plg_error_make(err, 0, "the daemon sent a gRPC message of %u bytes (limit %d)", prefix_length(p),
                            TR_GRPC_MAX_MESSAGE);
    if (d->len - off - 5 < prefix_length(p))
      break;
    off += 5 + prefix_length(p);
  }
  return 0;
}

int tr_grpc_decoder_feed(struct tr_grpc_decoder *d, const uint8_t *data, size_t len, plg_error_t *err)
{
  /* the caller drains complete messages after each feed, so more than two messages' worth
   * buffered means a peer that never completes one */
  if (d->len + len > 2 * (size_t)(TR_GRPC_MAX_MESSAGE + 5))
    return plg_error_make(err, 0, "the daemon sent more than %d bytes without a complete message",
                          2 * (TR_GRPC_MAX_MESSAGE + 5));
  if (d->len + len > d->cap) {
    d->cap = (d->len + len) * 2;
    d->buf = xrealloc(d->buf, d->cap);
  }
  if (len > 0)
    memcpy(d->buf + d->len, data, len);
  d->len += len;
  return check_prefixes(d, err);
}

int tr_grpc_decoder_next(struct tr_grpc_decoder *d, uint8_t **msg, size_t *len)
{
  if (d->len < 5)
    return 0;
  size_t n = prefix_length(d->buf);
  if (d->len < 5 + n)
    return 0;
  *msg = xmalloc(n ? n : 1);
  memcpy(*msg, d->buf + 5, n);
  *len = n;
  memmove(d->buf, d->buf + 5 + n, d->len - 5 - n);
  d->len -= 5 + n;
  return 1;
}

int tr_grpc_decoder_pending(const struct tr_grpc_decoder *d)
{
  return d->len > 0;
}

int tr_grpc_parse_status(const char *value, size_t len)
{
  if (len == 0 || len > 3)
    return -1;
  int code = 0;
  for (size_t i = 0; i < len; i++) {
    if (!isdigit((unsigned char)value[i]))
      return -1;
    code = code * 10 + (value[i] - '0');
  }
  return code;
}

static int hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char)tolower((unsigned char)c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

char *tr_grpc_decode_message(const char *value, size_t len)
{
  if (len > 1024)
    len = 1024; /* a message is for a human; a long one is cut */
  char *out = xmalloc(len + 1);
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = value[i];
    if (c == '%' && i + 2 < len && hex_value(value[i + 1]) >= 0 && hex_value(value[i + 2]) >= 0) {
      c = (char)(hex_value(value[i + 1]) << 4 | hex_value(value[i + 2]));
      i += 2;
    }
    /* printable ASCII only: this text ends up in Docker's error message and our JSON */
    out[o++] = plg_text_printable_char((unsigned char)c) ? c : '?';
  }
  out[o] = '\0';
  return out;
}

void tr_grpc_timeout_header(int64_t ms, char *buf, size_t size)
{
  if (ms < 1)
    ms = 1;
  if (ms > 99999999)
    ms = 99999999; /* the header allows at most 8 digits */
  snprintf(buf, size, "%lldm", (long long)ms);
}
