/* The VolumeDriver endpoints of telemount. */
#ifndef TM_DRIVER_H
#define TM_DRIVER_H

#include "plg_server.h"

#define TM_N_ROUTES 8
extern const struct plg_route tm_routes[TM_N_ROUTES];

int tm_init(void **ctx, plg_error_t *err);
void tm_shutdown(void *ctx);

#endif
