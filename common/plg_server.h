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

/* Serves SVC on LISTEN_FD (which the server then owns), one thread per connection, because a
 * handler may wait seconds on a remote host and Docker calls concurrently. */
int plg_server_start(const struct plg_service *svc, int listen_fd, struct plg_server **out, plg_error_t *err);

/* Stops accepting, lets in-flight requests finish for up to GRACE_MS, then closes everything. */
void plg_server_stop(struct plg_server *srv, int grace_ms);

#endif
