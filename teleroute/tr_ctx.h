/* teleroute's state shared by the handlers and the route refresher. */
#ifndef TR_CTX_H
#define TR_CTX_H

#include "tr_session.h"
#include "tr_table.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct tr_config {
  const char *state_dir;      /* STATE_DIR */
  int64_t refresh_ms;         /* ROUTE_REFRESH_INTERVAL, 0 = off */
  int64_t connect_timeout_ms; /* CONNECT_TIMEOUT */
  int64_t call_timeout_ms;    /* CALL_TIMEOUT */
};

struct tr_ctx {
  struct tr_config cfg;
  char *state_file;
  pthread_mutex_t lock; /* the table; never held across a call to the daemon */
  struct tr_table table;
  pthread_t refresher;
  bool refresher_started;
  pthread_cond_t wake; /* CLOCK_MONOTONIC: the refresher's next round, or the stop */
  bool stopping;
  struct tr_session_group *sessions; /* every network's session: stopped together */
};

/* The network's session (created on first use after a restart), held for the caller. */
struct tr_session *tr_ctx_session_locked(struct tr_ctx *c, struct tr_network *n);
/* Saves the table; a failure is logged, the in-memory state stays authoritative. */
void tr_ctx_save_locked(struct tr_ctx *c);

/* The route refresher (tr_refresh.c). */
void tr_refresh_start(struct tr_ctx *c);
void tr_refresh_stop(struct tr_ctx *c);

#endif
