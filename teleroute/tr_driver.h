/* The NetworkDriver endpoints of teleroute. */
#ifndef TR_DRIVER_H
#define TR_DRIVER_H

#include "plg_server.h"

#define TR_N_ROUTES 14
extern const struct plg_route tr_routes[TR_N_ROUTES];

int tr_init(void **ctx, plg_error_t *err);
/* The start of a stop (struct plg_plugin's stopping hook), while the server still runs: every call
 * to a daemon in flight, connect included, ends at once with CANCELLED ("the plugin is stopping"),
 * every later one too, and the refresher's wait and loops end; quick, never blocks on a daemon. */
void tr_stopping(void *ctx);
void tr_shutdown(void *ctx);

#endif
