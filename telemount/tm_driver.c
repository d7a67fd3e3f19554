#include "tm_driver.h"

#include "plg_json.h"

static int handle_capabilities(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)err;
  *reply = plg_json_pack("{s:{s:s}}", "Capabilities", "Scope", "local");
  return 0;
}

static int handle_list(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)err;
  *reply = plg_json_pack("{s:[]}", "Volumes");
  return 0;
}

const struct plg_route tm_routes[TM_N_ROUTES] = {
    {"VolumeDriver.Capabilities", handle_capabilities, true},
    {"VolumeDriver.List", handle_list, true},
};

int tm_init(void **ctx, plg_error_t *err)
{
  (void)err;
  *ctx = NULL;
  return 0;
}

void tm_shutdown(void *ctx)
{
  (void)ctx;
}
