#include "tr_grpc_int.h"

#include "plg_util.h"
#include "plg_version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void tr_grpc_call_free(struct call *k)
{
  while (k->inbox != NULL) {
    struct msg *m = k->inbox;
    k->inbox = m->next;
    free(m->data);
    free(m);
  }
  tr_grpc_decoder_free(&k->dec);
  free(k->path);
  free(k->body);
  free(k->message);
  free(k->resp);
  free(k);
}

void tr_grpc_finish(struct tr_grpc *c, struct call *k, int code, const char *message)
{
  if (k->done)
    return;
  k->done = true;
  k->code = code;
  if (message != NULL && k->message == NULL)
    k->message = xstrdup(message);
  if (k->stream_id > 0 && c->session != NULL)
    nghttp2_session_set_stream_user_data(c->session, k->stream_id, NULL);
  pthread_cond_broadcast(&c->cond);
}

static struct call *stream_call(nghttp2_session *s, int32_t stream_id)
{
  return nghttp2_session_get_stream_user_data(s, stream_id);
}

/* --- nghttp2 callbacks: run on the connection thread with the lock held --- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
  (void)s;
  (void)flags;
  struct tr_grpc *c = user;
  ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return NGHTTP2_ERR_WOULDBLOCK;
  if (n < 0) {
    c->send_errno = errno;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
  (void)flags;
  (void)user;
  struct call *k = stream_call(s, frame->hd.stream_id);
  if (k == NULL)
    return 0;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
    k->http_status = atoi((const char *)value);
  } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    k->code = tr_grpc_parse_status((const char *)value, valuelen);
    k->have_code = true;
  } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
    free(k->message);
    k->message = tr_grpc_decode_message((const char *)value, valuelen);
  }
  return 0;
}

static void take_messages(struct tr_grpc *c, struct call *k)
{
  uint8_t *m;
  size_t len;
  while (tr_grpc_decoder_next(&k->dec, &m, &len)) {
    k->n_msgs++;
    if (k->is_stream) {
      struct msg *e = xcalloc(1, sizeof *e);
      e->data = m;
      e->len = len;
      if (k->inbox == NULL)
        k->inbox = e;
      else
        k->inbox_last->next = e;
      k->inbox_last = e;
    } else if (k->resp == NULL) {
      k->resp = m;
      k->resp_len = len;
    } else {
      free(m); /* a unary call answered twice: the close handler reports it */
    }
  }
  (void)c;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                   void *user)
{
  (void)flags;
  struct tr_grpc *c = user;
  struct call *k = stream_call(s, stream_id);
  if (k == NULL)
    return 0;
  plg_error_t err = NULL;
  if (tr_grpc_decoder_feed(&k->dec, data, len, &err) < 0) {
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_PROTOCOL_ERROR);
    tr_grpc_finish(c, k, TR_GRPC_INTERNAL, err->msg);
    plg_error_release(&err);
    return 0;
  }
  take_messages(c, k);
  return 0;
}

/* The status of a stream that ended: from its trailers, or what its absence means. */
static void close_status(struct call *k, uint32_t error_code, int *code, char **why)
{
  *why = NULL;
  if (k->http_status != 0 && k->http_status != 200) {
    *code = k->http_status == 404 ? TR_GRPC_UNIMPLEMENTED : TR_GRPC_UNAVAILABLE;
    *why = xasprintf("the daemon answered HTTP %d", k->http_status);
  } else if (!k->have_code) {
    *code = error_code == NGHTTP2_REFUSED_STREAM ? TR_GRPC_UNAVAILABLE : TR_GRPC_INTERNAL;
    *why = error_code != 0 ? xasprintf("stream reset by the daemon (%s)", nghttp2_http2_strerror(error_code))
                           : xstrdup("the reply ended without a gRPC status");
  } else if (k->code < 0) {
    *code = TR_GRPC_INTERNAL;
    *why = xstrdup("the reply carried a malformed grpc-status");
  } else if (k->code == TR_GRPC_OK && tr_grpc_decoder_pending(&k->dec)) {
    *code = TR_GRPC_INTERNAL;
    *why = xstrdup("the reply ended inside a message");
  } else if (k->code == TR_GRPC_OK && !k->is_stream && k->n_msgs != 1) {
    *code = TR_GRPC_INTERNAL;
    *why = xasprintf("a unary reply carried %d messages", k->n_msgs);
  } else {
    *code = k->code;
  }
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user)
{
  struct tr_grpc *c = user;
  struct call *k = stream_call(s, stream_id);
  if (k == NULL)
    return 0;
  int code;
  char *why;
  close_status(k, error_code, &code, &why);
  tr_grpc_finish(c, k, code, why);
  free(why);
  return 0;
}

/* Any frame from the peer (the first must be its SETTINGS) shows it speaks HTTP/2; after a GOAWAY
 * the streams open go on, but new calls go to a new connection. */
static int on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
  (void)s;
  struct tr_grpc *c = user;
  c->answered = true;
  if (frame->hd.type == NGHTTP2_GOAWAY)
    c->goaway = true;
  return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user)
{
  (void)s;
  (void)stream_id;
  (void)user;
  struct call *k = source->ptr;
  size_t n = k->body_len - k->body_off;
  if (n > length)
    n = length;
  memcpy(buf, k->body + k->body_off, n);
  k->body_off += n;
  if (k->body_off == k->body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

#define NV(n, v)                                                                                             \
  {                                                                                                          \
    (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE                           \
  }

void tr_grpc_submit(struct tr_grpc *c, struct call *k)
{
  char timeout[32] = "";
  if (k->timeout_ms > 0)
    tr_grpc_timeout_header(k->timeout_ms, timeout, sizeof timeout);
  nghttp2_nv hdrs[] = {
      NV(":method", "POST"),
      NV(":scheme", "http"),
      NV(":path", k->path),
      NV(":authority", c->where),
      NV("content-type", "application/grpc"),
      NV("te", "trailers"),
      NV("user-agent", "teleroute/" PLG_VERSION),
      NV("grpc-timeout", timeout),
  };
  size_t n = k->timeout_ms > 0 ? 8 : 7;
  nghttp2_data_provider body = {.source.ptr = k, .read_callback = read_body};
  k->submitted = true;
  k->stream_id = nghttp2_submit_request(c->session, NULL, hdrs, n, &body, k);
  if (k->stream_id < 0)
    tr_grpc_finish(c, k, TR_GRPC_UNAVAILABLE, nghttp2_strerror(k->stream_id));
}

nghttp2_session *tr_grpc_session_new(struct tr_grpc *c)
{
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, on_send);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
  nghttp2_session *s = NULL;
  nghttp2_session_client_new(&s, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  if (s != NULL) {
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                                         {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, settings, 2);
  }
  return s;
}
