/* telemount's settings, read once at start from the environment. */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#include "plg_error.h"

#include <stdbool.h>
#include <stdint.h>

/* Inside the propagated mount, beside the hosts' mount roots; no host name starts with a dot. */
#define TM_STATE_SUBDIR ".telemount"

struct tm_config {
  const char *mount_root;     /* MOUNT_ROOT: where sshfs mounts; the plugin's propagatedmount */
  const char *state_dir;      /* STATE_DIR: where the volume table is kept; NULL = TM_STATE_SUBDIR
                               * of mount_root, which survives `docker plugin upgrade` (a new rootfs) */
  const char *sshfs;          /* SSHFS: the program */
  int64_t linger_ms;          /* DISCONNECTED_LINGER_TIME */
  int64_t ping_timeout_ms;    /* HOST_PING_TIMEOUT */
  int64_t connect_timeout_ms; /* CONNECT_TIMEOUT */
  int64_t mount_timeout_ms;   /* MOUNT_TIMEOUT */
  int64_t health_interval_ms; /* HEALTH_CHECK_INTERVAL, 0 = off */
  int64_t health_timeout_ms;  /* HEALTH_CHECK_TIMEOUT */
  int max_conns;              /* SSHFS_MAX_CONNS */
  int read_ahead_kb;          /* READ_AHEAD_KB, 0 = the kernel's default */
  bool default_permissions;   /* DEFAULT_PERMISSIONS: the kernel checks file modes against the caller */
  int64_t cache_timeout_ms;   /* CACHE_TIMEOUT: the freshness bound of what a mount shows, 0 = no cache */
  bool auto_cache;            /* AUTO_CACHE: keep pages across opens (mtime and size unchanged) */
};

int tm_config_load(struct tm_config *cfg, plg_error_t *err);

/* The volume table's path: in STATE_DIR, or by default in MOUNT_ROOT/TM_STATE_SUBDIR. Caller frees. */
char *tm_config_state_file(const struct tm_config *cfg);

#endif
