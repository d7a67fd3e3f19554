/* The NetworkDriver endpoints of teleroute. */
#ifndef TR_DRIVER_H
#define TR_DRIVER_H

#include "plg_server.h"

#define TR_N_ROUTES 14
extern const struct plg_route tr_routes[TR_N_ROUTES];

int tr_init(void **ctx, plg_error_t *err);
void tr_shutdown(void *ctx);

#endif
