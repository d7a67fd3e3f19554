/* The VolumeDriver endpoints of telemount. */
#ifndef TM_DRIVER_H
#define TM_DRIVER_H

#include "plg_server.h"

#define TM_N_ROUTES 8
extern const struct plg_route tm_routes[TM_N_ROUTES];

int tm_init(void **ctx, plg_error_t *err);
/* The stopping hook: requests waiting on a server end at once with an error. */
void tm_stopping(void *ctx);
void tm_shutdown(void *ctx);

#endif
