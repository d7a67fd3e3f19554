#include "tm_config.h"

#include "plg_settings.h"
#include "plg_util.h"

#include <stddef.h>

#define HOUR_MS (3600 * 1000)

int tm_config_load(struct tm_config *cfg, plg_error_t *err)
{
  int64_t conns, read_ahead;
  cfg->mount_root = plg_setting_string("MOUNT_ROOT", "/mnt/volumes");
  cfg->state_dir = plg_setting_string("STATE_DIR", NULL);
  cfg->sshfs = plg_setting_string("SSHFS", "sshfs");
  if (plg_setting_duration_ms("DISCONNECTED_LINGER_TIME", 5000, HOUR_MS, &cfg->linger_ms, err) < 0 ||
      plg_setting_duration_ms("HOST_PING_TIMEOUT", 1000, 60000, &cfg->ping_timeout_ms, err) < 0 ||
      plg_setting_duration_ms("CONNECT_TIMEOUT", 5000, 60000, &cfg->connect_timeout_ms, err) < 0 ||
      plg_setting_duration_ms("MOUNT_TIMEOUT", 20000, 110000, &cfg->mount_timeout_ms, err) < 0 ||
      plg_setting_duration_ms("HEALTH_CHECK_INTERVAL", 5000, HOUR_MS, &cfg->health_interval_ms, err) < 0 ||
      plg_setting_duration_ms("HEALTH_CHECK_TIMEOUT", 5000, 60000, &cfg->health_timeout_ms, err) < 0 ||
      plg_setting_int("SSHFS_MAX_CONNS", 1, 1, 16, &conns, err) < 0 ||
      plg_setting_int("READ_AHEAD_KB", 1024, 0, 65536, &read_ahead, err) < 0 ||
      plg_setting_bool("DEFAULT_PERMISSIONS", false, &cfg->default_permissions, err) < 0 ||
      plg_setting_duration_ms("CACHE_TIMEOUT", 3000, HOUR_MS, &cfg->cache_timeout_ms, err) < 0 ||
      plg_setting_bool("AUTO_CACHE", false, &cfg->auto_cache, err) < 0)
    return -1;
  if (cfg->ping_timeout_ms == 0 || cfg->connect_timeout_ms == 0 || cfg->mount_timeout_ms == 0 ||
      cfg->health_timeout_ms == 0)
    return plg_error_make(err, 0,
                          "HOST_PING_TIMEOUT, CONNECT_TIMEOUT, MOUNT_TIMEOUT and HEALTH_CHECK_TIMEOUT "
                          "must be longer than 0");
  if (cfg->mount_root[0] != '/' || (cfg->state_dir != NULL && cfg->state_dir[0] != '/'))
    return plg_error_make(err, 0, "MOUNT_ROOT and STATE_DIR must be absolute paths");
  cfg->max_conns = (int)conns;
  cfg->read_ahead_kb = (int)read_ahead;
  return 0;
}

char *tm_config_state_file(const struct tm_config *cfg)
{
  if (cfg->state_dir != NULL)
    return xasprintf("%s/volumes.json", cfg->state_dir);
  return xasprintf("%s/" TM_STATE_SUBDIR "/volumes.json", cfg->mount_root);
}
