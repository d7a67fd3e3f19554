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
  /* Called first when the plugin is asked to stop, while the server still runs (new requests
   * already get 503): must wake every wait of the plugin (condition variables, polls, child
   * waits, connects) so that each handler in flight returns an error at once. Quick and
   * non-blocking; may be NULL. */
  void (*stopping)(void *ctx);
  /* Called after the server stopped: kill and reap children, save state, release mounts and
   * connections. A handler that ignored `stopping` may still be running (plg_main logs how
   * many): do not free what it could still use. */
  void (*shutdown)(void *ctx);
};

/* How long handlers get to return after the stopping hook; then their requests are answered
 * with an error. Docker SIGKILLs 10 s after SIGTERM, but `docker plugin disable -f` should end
 * within a second: the hook is what makes handlers quick, not this grace. */
#define PLG_STOP_GRACE_MS 300

/* Runs the plugin until SIGTERM or SIGINT; returns the process exit status. */
int plg_main(const struct plg_plugin *plugin, int argc, char **argv);

#endif
