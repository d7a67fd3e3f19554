#include "tr_driver.h"

#include "plg_json.h"

/* Docker registers the driver only if this answers at once with a valid scope. */
static int handle_get_capabilities(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)err;
  *reply = plg_json_pack("{s:s,s:s}", "Scope", "local", "ConnectivityScope", "local");
  return 0;
}

const struct plg_route tr_routes[TR_N_ROUTES] = {
    {"NetworkDriver.GetCapabilities", handle_get_capabilities, true},
};

int tr_init(void **ctx, plg_error_t *err)
{
  (void)err;
  *ctx = NULL;
  return 0;
}

void tr_shutdown(void *ctx)
{
  (void)ctx;
}
