/* telemount's settings: the defaults the README documents, and a bad value named at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_error.h"
#include "tm_config.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
    "MOUNT_ROOT",           "STATE_DIR",       "SSHFS",         "DISCONNECTED_LINGER_TIME",
    "HOST_PING_TIMEOUT",    "CONNECT_TIMEOUT", "MOUNT_TIMEOUT", "HEALTH_CHECK_INTERVAL",
    "HEALTH_CHECK_TIMEOUT", "SSHFS_MAX_CONNS", "READ_AHEAD_KB", "DEFAULT_PERMISSIONS",
    "CACHE_TIMEOUT",        "AUTO_CACHE"};

static int clean_environment(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    unsetenv(names[i]);
  return 0;
}

/* Loads the settings and returns the error message, or NULL when they load. */
static char *load(struct tm_config *cfg)
{
  plg_error_t err = NULL;
  if (tm_config_load(cfg, &err) == 0)
    return NULL;
  char *msg = strdup(err->msg);
  plg_error_release(&err);
  return msg;
}

static void the_defaults_are_the_documented_ones(void **state)
{
  (void)state;
  struct tm_config cfg;
  assert_null(load(&cfg));
  assert_string_equal(cfg.mount_root, "/mnt/volumes");
  assert_null(cfg.state_dir); /* MOUNT_ROOT/.telemount: inside the propagated mount */
  assert_string_equal(cfg.sshfs, "sshfs");
  assert_int_equal(cfg.linger_ms, 5000);
  assert_int_equal(cfg.ping_timeout_ms, 1000);
  assert_int_equal(cfg.connect_timeout_ms, 5000);
  assert_int_equal(cfg.mount_timeout_ms, 20000);
  assert_int_equal(cfg.health_interval_ms, 5000);
  assert_int_equal(cfg.health_timeout_ms, 5000);
  assert_int_equal(cfg.max_conns, 1);
  assert_int_equal(cfg.read_ahead_kb, 1024);
  assert_false(cfg.default_permissions); /* access is the SFTP server's to grant (README) */
  assert_int_equal(cfg.cache_timeout_ms, 3000);
  assert_false(cfg.auto_cache);
  char *state_file = tm_config_state_file(&cfg);
  assert_string_equal(state_file, "/mnt/volumes/.telemount/volumes.json");
  free(state_file);
}

static void settings_are_read_from_the_environment(void **state)
{
  (void)state;
  setenv("STATE_DIR", "/var/lib/telemount", 1);
  setenv("READ_AHEAD_KB", "0", 1);
  setenv("SSHFS_MAX_CONNS", "4", 1);
  setenv("DISCONNECTED_LINGER_TIME", "250ms", 1);
  setenv("CACHE_TIMEOUT", "0", 1);
  setenv("AUTO_CACHE", "true", 1);
  struct tm_config cfg;
  assert_null(load(&cfg));
  assert_string_equal(cfg.state_dir, "/var/lib/telemount");
  char *state_file = tm_config_state_file(&cfg);
  assert_string_equal(state_file, "/var/lib/telemount/volumes.json");
  free(state_file);
  assert_int_equal(cfg.read_ahead_kb, 0);
  assert_int_equal(cfg.max_conns, 4);
  assert_int_equal(cfg.linger_ms, 250);
  assert_int_equal(cfg.cache_timeout_ms, 0);
  assert_true(cfg.auto_cache);
}

/* SETTING=VALUE must fail with a message containing WANT. */
static void refused(const char *setting, const char *value, const char *want)
{
  clean_environment(NULL);
  setenv(setting, value, 1);
  struct tm_config cfg;
  char *msg = load(&cfg);
  assert_non_null(msg);
  if (strstr(msg, want) == NULL)
    fail_msg("%s=%s: \"%s\" lacks \"%s\"", setting, value, msg, want);
  free(msg);
}

static void bad_values_are_refused_by_name(void **state)
{
  (void)state;
  refused("READ_AHEAD_KB", "lots", "READ_AHEAD_KB");
  refused("READ_AHEAD_KB", "65537", "READ_AHEAD_KB");
  refused("READ_AHEAD_KB", "-1", "READ_AHEAD_KB");
  refused("DEFAULT_PERMISSIONS", "sometimes", "DEFAULT_PERMISSIONS");
  refused("SSHFS_MAX_CONNS", "0", "SSHFS_MAX_CONNS");
  refused("CONNECT_TIMEOUT", "0s", "CONNECT_TIMEOUT");
  refused("MOUNT_TIMEOUT", "soon", "MOUNT_TIMEOUT");
  refused("CACHE_TIMEOUT", "a while", "CACHE_TIMEOUT");
  refused("CACHE_TIMEOUT", "2h", "CACHE_TIMEOUT");
  refused("AUTO_CACHE", "sometimes", "AUTO_CACHE");
  refused("STATE_DIR", "relative/dir", "STATE_DIR");
  refused("MOUNT_ROOT", "mnt", "MOUNT_ROOT");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(the_defaults_are_the_documented_ones, clean_environment),
      cmocka_unit_test_setup(settings_are_read_from_the_environment, clean_environment),
      cmocka_unit_test_setup(bad_values_are_refused_by_name, clean_environment),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
