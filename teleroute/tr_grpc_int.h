/* tr_grpc's insides, shared by its two files: tr_grpc.c (the calls and the connection's thread)
 * and tr_grpc_h2.c (the nghttp2 session and its callbacks). Not for other modules. Everything here
 * is used with the connection's lock held. */
#ifndef TR_GRPC_INT_H
#define TR_GRPC_INT_H

#include "tr_grpc.h"

#include <nghttp2/nghttp2.h>
#include <pthread.h>

/* one call: a unary request or a server stream */
struct call {
  struct call *next;
  char *path;
  uint8_t *body;
  size_t body_len, body_off;
  int32_t stream_id;
  int64_t deadline; /* 0: none */
  int timeout_ms;
  bool submitted, done;
  int http_status;
  int code;
  bool have_code;
  char *message;
  struct tr_grpc_decoder dec;
  uint8_t *resp; /* unary: the reply */
  size_t resp_len;
  int n_msgs;
  /* streams: messages waiting to be handed to ON_MSG outside the lock */
  struct msg *inbox, *inbox_last;
  tr_grpc_msg_fn on_msg;
  tr_grpc_end_fn on_end;
  void *arg;
  bool is_stream, end_notified;
};

struct msg {
  struct msg *next;
  uint8_t *data;
  size_t len;
};

struct tr_grpc {
  int fd;
  int wake_fd;
  char where[80];
  nghttp2_session *session;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond; /* CLOCK_MONOTONIC: a call ended, or the connection did */
  struct call *calls;
  bool closing, closed;
  char *close_reason;
  int close_code; /* the status of calls made after the end */
  tr_grpc_answer_fn on_answer;
  void *answer_arg;
  bool answered, answer_told;
  bool goaway;    /* the daemon said it takes no new streams */
  int send_errno; /* why the last write to the socket failed */
};

void tr_grpc_call_free(struct call *k);
/* Ends K with CODE (once) and wakes its caller. */
void tr_grpc_finish(struct tr_grpc *c, struct call *k, int code, const char *message);
/* Submits K's request on the session. */
void tr_grpc_submit(struct tr_grpc *c, struct call *k);
/* The client session of C, its SETTINGS queued; NULL when out of memory. */
nghttp2_session *tr_grpc_session_new(struct tr_grpc *c);

#endif
