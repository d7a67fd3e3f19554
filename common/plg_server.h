/* The Docker plugin protocol: HTTP/1.1 POST /<Interface>.<Method> with a JSON body on a Unix
 * socket, answered with a JSON object, or {"Err": "..."} and a non-200 status on failure. */
#ifndef PLG_SERVER_H
#define PLG_SERVER_H

#include "plg_error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Larger bodies are refused (413): Docker's requests are a few hundred bytes. */
#define PLG_MAX_BODY (1024 * 1024)

/* A handler reads REQUEST (never NULL, always an object) and either sets *REPLY (an object it
 * owns; NULL means {}) and returns 0, or returns -1 with *ERR set. */
typedef int (*plg_handler_fn)(void *ctx, json_t *request, json_t **reply, plg_error_t *err);

struct plg_route {
  const char *call; /* "VolumeDriver.Create": the path without its leading slash */
  plg_handler_fn handler;
  bool body_optional; /* Docker sends some calls (GetCapabilities) without a body */
};

struct plg_service {
  const char *implements; /* "VolumeDriver", "NetworkDriver": the answer to /Plugin.Activate */
  const struct plg_route *routes;
  size_t n_routes;
  void *ctx;
  /* Called once by plg_server_stop, after new requests started being refused and before the
   * in-flight ones get their short grace: it must wake every wait of the plugin so that its
   * handlers return (with an error) at once. May be NULL. */
  void (*stopping)(void *ctx);
};

struct plg_response {
  int status;
  char *body; /* JSON text, malloc'd */
};

/* Turns one request into its response; pure apart from logging, so tests and fuzzers call it
 * directly. BODY need not be NUL-terminated. */
void plg_dispatch(const struct plg_service *svc, const char *method, const char *path, const char *body,
                  size_t len, struct plg_response *resp);

struct plg_server;

struct plg_server_limits {
  unsigned idle_timeout_s;  /* a connection without traffic for this long is closed */
  unsigned max_connections; /* open connections, idle ones included (lowered to fit RLIMIT_NOFILE) */
  unsigned max_handlers;    /* requests being handled at once; more are answered 503 */
  unsigned reply_flush_ms;  /* at the stop, how long answered requests get for their replies to leave */
};

/* Docker keeps its connections to a plugin open and never expires them itself (moby
 * pkg/plugins/client.go: a zero http.Transport), so closing idle ones is the server's job. */
#define PLG_IDLE_TIMEOUT_S 60
#define PLG_MAX_CONNECTIONS 4096
#define PLG_MAX_HANDLERS 256
#define PLG_REPLY_FLUSH_MS 200
#define PLG_SERVER_LIMITS_DEFAULT                                                                            \
  ((struct plg_server_limits){PLG_IDLE_TIMEOUT_S, PLG_MAX_CONNECTIONS, PLG_MAX_HANDLERS, PLG_REPLY_FLUSH_MS})

/* Serves SVC on LISTEN_FD (which the server then owns) with LIMITS (NULL = the defaults). One
 * polling thread owns every connection, so an idle one costs no thread; each complete request
 * runs on a thread of its own, because a handler may wait seconds on a remote host and Docker
 * calls concurrently. */
int plg_server_start(const struct plg_service *svc, int listen_fd, const struct plg_server_limits *limits,
                     struct plg_server **out, plg_error_t *err);

/* Stops: refuses new requests with 503, calls the service's stopping hook, closes the listening
 * socket, gives in-flight handlers up to GRACE_MS to return, answers those still running with
 * 503 for them, lets the replies leave (briefly), then closes every connection. Never waits
 * longer than GRACE_MS + reply_flush_ms. Returns how many handlers were still running: they
 * finish on their own threads and their replies are dropped (see plg_server_wait_handlers). */
int plg_server_stop(struct plg_server *srv, int grace_ms);

/* Waits up to TIMEOUT_MS (0 = just look) until no handler thread of any server is running;
 * returns how many still are. */
int plg_server_wait_handlers(int timeout_ms);

#endif
