/* The life of a plugin process: arguments, common settings, signals, the socket, shutdown. */
#ifndef PLG_MAIN_H
#define PLG_MAIN_H

#include "plg_error.h"
#include "plg_server.h"

struct plg_plugin {
  const char *name; /* "telemount": log prefix and default socket name */
  const char *version;
  const char *implements; /* "VolumeDriver" or "NetworkDriver" */
  const struct plg_route *routes;
  size_t n_routes;
  /* Reads the plugin's settings and state; must be quick, Docker waits ~10 s for the socket. */
  int (*init)(void **ctx, plg_error_t *err);
  /* Called after the server stopped: release children, mounts, connections. */
  void (*shutdown)(void *ctx);
};

/* Runs the plugin until SIGTERM or SIGINT; returns the process exit status. */
int plg_main(const struct plg_plugin *plugin, int argc, char **argv);

#endif
