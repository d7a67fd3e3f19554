/* libFuzzer: arbitrary bytes as the body (and, from the first bytes, the path) of a plugin call,
 * through the same dispatcher and typed field readers that the plugins' handlers use. */
#include "plg_json.h"
#include "plg_log.h"
#include "plg_server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Reads the fields Docker's volume and network calls carry, as a handler would. */
static int read_fields(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  const char *name, *id;
  json_t *opts, *ipv4;
  bool flag;
  if (plg_json_string(req, "Name", false, &name, err) < 0 ||
      plg_json_string(req, "ID", false, &id, err) < 0 || plg_json_string_map(req, "Opts", &opts, err) < 0 ||
      plg_json_array(req, "IPv4Data", false, &ipv4, err) < 0 ||
      plg_json_bool(req, "Flag", false, &flag, err) < 0)
    return -1;
  *reply = plg_json_pack("{s:s?,s:b}", "Name", name, "Flag", flag);
  return 0;
}

static const struct plg_route routes[] = {
    {"VolumeDriver.Create", read_fields, false},
    {"NetworkDriver.GetCapabilities", read_fields, true},
};
static const struct plg_service svc = {"VolumeDriver", routes, 2, NULL, NULL};
static const char *const paths[] = {"/VolumeDriver.Create", "/NetworkDriver.GetCapabilities",
                                    "/Plugin.Activate", "/Nope"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static int initialised;
  if (!initialised) {
    plg_log_init("fuzz");
    initialised = 1;
  }
  const char *path = paths[size > 0 ? data[0] % 4 : 0];
  struct plg_response resp = {0};
  plg_dispatch(&svc, "POST", path, size > 0 ? (const char *)data + 1 : "", size > 0 ? size - 1 : 0, &resp);
  /* Every reply must be a JSON object Docker can decode. */
  json_t *j = json_loads(resp.body, 0, NULL);
  if (j == NULL || !json_is_object(j))
    abort();
  json_decref(j);
  free(resp.body);
  return 0;
}
