/* libFuzzer: arbitrary bytes as the Opts of a VolumeDriver.Create and as a volume name. Whatever
 * is accepted must build paths that stay inside the export. */
#include "plg_util.h"
#include "tm_options.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_contained(const struct tm_opts *o)
{
  char *remote = tm_remote_dir(o);
  if (strncmp(remote, TM_EXPORT_ROOT "/", strlen(TM_EXPORT_ROOT) + 1) != 0 ||
      strstr(remote, "/../") != NULL || strstr(remote, "/./") != NULL ||
      strcmp(remote + strlen(remote) - 3, "/..") == 0)
    abort();
  char *root = tm_mount_root("/mnt/volumes", o->host, o->port, o->ro);
  char *path = tm_volume_path(root, o);
  if (strstr(path, "/../") != NULL || strncmp(path, "/mnt/volumes/", 13) != 0 || o->host[0] == '-')
    abort();
  free(path);
  free(root);
  free(remote);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  json_t *opts = json_loadb((const char *)data, size, 0, NULL);
  if (opts != NULL && json_is_object(opts)) {
    struct tm_opts o;
    plg_error_t err = NULL;
    if (tm_opts_parse(opts, &o, &err) == 0) {
      check_contained(&o);
      tm_opts_clear(&o);
    }
    plg_error_release(&err);
  }
  json_decref(opts);
  char *name = xstrndup((const char *)data, size);
  plg_error_t err = NULL;
  tm_volume_name_check(name, &err);
  plg_error_release(&err);
  free(name);
  return 0;
}
