/* telemount's option validation and the paths it builds: every rejection names the option, and
 * nothing the user types can leave the export or become an sshfs option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_json.h"
#include "plg_util.h"
#include "tm_options.h"
#include "tm_sshfs.h"
#include "tm_mountinfo.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Parses OPTS (JSON text, or NULL); returns the error message (malloc'd) or NULL on success. */
static char *parse(const char *opts_json, struct tm_opts *o)
{
  cleanup_json json_t *opts = opts_json != NULL ? json_loads(opts_json, 0, NULL) : NULL;
  if (opts_json != NULL)
    assert_non_null(opts);
  plg_error_t err = NULL;
  if (tm_opts_parse(opts, o, &err) == 0)
    return NULL;
  assert_int_equal(err->status, 400);
  char *msg = xstrdup(err->msg);
  plg_error_release(&err);
  return msg;
}

static void expect_rejected(const char *opts_json, const char *needle)
{
  struct tm_opts o;
  cleanup_free char *msg = parse(opts_json, &o);
  if (msg == NULL)
    fail_msg("%s was accepted", opts_json ? opts_json : "(null)");
  if (strstr(msg, needle) == NULL)
    fail_msg("error \"%s\" for %s does not contain \"%s\"", msg, opts_json, needle);
}

static void the_reference_options_are_accepted_with_defaults(void **state)
{
  (void)state;
  struct tm_opts o;
  assert_null(parse("{\"container\":\"echo-easy\",\"port\":\"34439\"}", &o));
  assert_string_equal(o.container, "echo-easy");
  assert_string_equal(o.host, "localhost");
  assert_string_equal(o.dir, "");
  assert_int_equal(o.port, 34439);
  assert_false(o.ro);
  tm_opts_clear(&o);
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"host\":\"172.17.0.2\",\"dir\":\"/var/run/secrets/"
                    "kubernetes.io/\",\"ro\":\"true\"}",
                    &o));
  assert_string_equal(o.host, "172.17.0.2");
  assert_string_equal(o.dir, "var/run/secrets/kubernetes.io");
  assert_true(o.ro);
  tm_opts_clear(&o);
}

static void ro_alone_means_read_only(void **state)
{
  (void)state;
  struct tm_opts o;
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"ro\":\"\"}", &o));
  assert_true(o.ro);
  tm_opts_clear(&o);
}

static void required_options_are_named_when_missing(void **state)
{
  (void)state;
  expect_rejected(NULL, "option \"container\" is required");
  expect_rejected("{\"port\":\"1\"}", "option \"container\" is required");
  expect_rejected("{\"container\":\"c\"}", "option \"port\" is required");
}

static void bad_ports_are_refused(void **state)
{
  (void)state;
  const char *bad[] = {"0", "65536", "-1", "+80", "80a", "", " 80", "0x50", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *j = xasprintf("{\"container\":\"c\",\"port\":\"%s\"}", bad[i]);
    expect_rejected(j, "option \"port\"");
  }
}

static void bad_booleans_are_refused(void **state)
{
  (void)state;
  expect_rejected("{\"container\":\"c\",\"port\":\"1\",\"ro\":\"maybe\"}",
                  "option \"ro\": \"maybe\" is not a boolean");
}

static void unknown_options_are_refused_by_name(void **state)
{
  (void)state;
  expect_rejected("{\"container\":\"c\",\"port\":\"1\",\"o\":\"ProxyCommand=x\"}", "unknown option \"o\"");
  expect_rejected("{\"container\":\"c\",\"port\":\"1\",\"Host\":\"x\"}", "unknown option \"Host\"");
}

static void escapes_from_the_export_are_refused(void **state)
{
  (void)state;
  expect_rejected("{\"container\":\"..\",\"port\":\"1\"}", "option \"container\"");
  expect_rejected("{\"container\":\".\",\"port\":\"1\"}", "option \"container\"");
  expect_rejected("{\"container\":\"../..\",\"port\":\"1\"}", "option \"container\"");
  expect_rejected("{\"container\":\"a/b\",\"port\":\"1\"}", "option \"container\"");
  expect_rejected("{\"container\":\"\",\"port\":\"1\"}", "option \"container\" must not be empty");
  expect_rejected("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"..\"}", "option \"dir\"");
  expect_rejected("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"a/../../etc\"}", "option \"dir\"");
  expect_rejected("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"/a/b/..\"}", "option \"dir\"");
  expect_rejected("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"a\\nb\"}", "control characters");
}

static void dir_is_normalised_to_a_relative_path(void **state)
{
  (void)state;
  struct tm_opts o;
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"//a/./b//c/.\"}", &o));
  assert_string_equal(o.dir, "a/b/c");
  cleanup_free char *remote = tm_remote_dir(&o);
  assert_string_equal(remote, "/tel_app_exports/c/a/b/c");
  tm_opts_clear(&o);
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"..a/b..\"}", &o)); /* not ".." segments */
  assert_string_equal(o.dir, "..a/b..");
  tm_opts_clear(&o);
}

static void hosts_must_be_addresses_or_plain_names(void **state)
{
  (void)state;
  const char *bad[] = {
      "-oProxyCommand=sh", "a b",       "a;b", "host:22",     "", "a..b", "-a", "a-", "1.2.3", "999.1.1.1",
      "[notv6]",           "user@host", "a/b", "ex ample.com"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *j = xasprintf("{\"container\":\"c\",\"port\":\"1\",\"host\":\"%s\"}", bad[i]);
    expect_rejected(j, "option \"host\"");
  }
}

static void ipv6_hosts_are_normalised(void **state)
{
  (void)state;
  struct tm_opts o;
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"host\":\"[0:0::0001]\"}", &o));
  assert_string_equal(o.host, "::1");
  tm_opts_clear(&o);
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"host\":\"My-Host.Example\"}", &o));
  assert_string_equal(o.host, "my-host.example");
  tm_opts_clear(&o);
}

/* Telepresence's client (pkg/client/docker/volume.go: VolumeDriverOpts) sends
 * hostPort.Addr().String(); for an IPv6-only daemon network the daemon's IPv4 address arrives
 * IPv4-mapped (pkg/client/docker/teleroute/network.go: netip.AddrFrom16). */
static void ipv4_mapped_hosts_are_the_ipv4_address(void **state)
{
  (void)state;
  const char *forms[] = {"::ffff:172.17.0.2", "[::ffff:172.17.0.2]", "::FFFF:AC11:0002",
                         "0:0:0:0:0:ffff:ac11:2"};
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    struct tm_opts o;
    cleanup_free char *j = xasprintf("{\"container\":\"c\",\"port\":\"1\",\"host\":\"%s\"}", forms[i]);
    assert_null(parse(j, &o));
    assert_string_equal(o.host, "172.17.0.2");
    tm_opts_clear(&o);
  }
  struct tm_opts o; /* only the mapped form: an IPv4-compatible or other IPv6 address stays IPv6 */
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"host\":\"::172.17.0.2\"}", &o));
  assert_string_equal(o.host, "::172.17.0.2");
  tm_opts_clear(&o);
}

static void volume_names_follow_dockers_rule(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  assert_int_equal(tm_volume_name_check("echo-easy-1", &err), 0);
  assert_int_equal(
      tm_volume_name_check("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &err), 0);
  const char *bad[] = {"../x", ".x", "a", "-x", "a/b", "a b", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(tm_volume_name_check(bad[i], &err), -1);
    assert_non_null(strstr(err->msg, "volume name"));
    plg_error_release(&err);
  }
}

static void paths_are_built_from_safe_parts(void **state)
{
  (void)state;
  cleanup_free char *safe = tm_safe_host("fd00::1");
  assert_string_equal(safe, "fd00__1");
  cleanup_free char *root = tm_mount_root("/mnt/volumes", "172.17.0.2", 34439, false);
  assert_string_equal(root, "/mnt/volumes/172.17.0.2/34439");
  cleanup_free char *ro_root = tm_mount_root("/mnt/volumes", "172.17.0.2", 34439, true);
  assert_string_equal(ro_root, "/mnt/volumes/172.17.0.2/34439-ro");
  struct tm_opts o;
  assert_null(parse("{\"container\":\"echo\",\"port\":\"1\",\"dir\":\"var/run\"}", &o));
  cleanup_free char *path = tm_volume_path(root, &o);
  assert_string_equal(path, "/mnt/volumes/172.17.0.2/34439/echo/var/run");
  tm_opts_clear(&o);
}

static void options_compare_and_describe(void **state)
{
  (void)state;
  struct tm_opts a, b;
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"/x/\"}", &a));
  assert_null(parse("{\"container\":\"c\",\"port\":\"1\",\"dir\":\"x\",\"host\":\"LOCALHOST\"}", &b));
  assert_true(tm_opts_equal(&a, &b));
  b.ro = true;
  assert_false(tm_opts_equal(&a, &b));
  cleanup_free char *d = tm_opts_describe(&a);
  assert_string_equal(d, "container=c dir=x host=localhost port=1 ro=false");
  tm_opts_clear(&a);
  tm_opts_clear(&b);
}

static char *joined(char **argv)
{
  char *out = xstrdup("");
  for (char **a = argv; *a != NULL; a++) {
    char *next = xasprintf("%s%s%s", out, *out ? " " : "", *a);
    free(out);
    out = next;
  }
  return out;
}

static void the_sshfs_argv_for_ipv4_uses_directport_and_redials(void **state)
{
  (void)state;
  struct tm_addr addr = {.family = AF_INET, .text = "172.17.0.2"};
  struct tm_sshfs_params p = {.sshfs = "sshfs",
                              .addr = &addr,
                              .port = 34439,
                              .ro = true,
                              .mountpoint = "/mnt/volumes/172.17.0.2/34439-ro",
                              .max_conns = 4,
                              .default_permissions = true,
                              .cache_timeout_ms = 3000,
                              .auto_cache = true};
  char **argv = tm_sshfs_argv(&p);
  cleanup_free char *s = joined(argv);
  assert_string_equal(s, "sshfs -f -o follow_symlinks -o auto_unmount -o allow_other -o max_read=65536 -o "
                         "reconnect -o dcache_timeout=1 -o entry_timeout=1.000 -o attr_timeout=1.000 -o "
                         "auto_cache -o ro -o default_permissions -o directport=34439 -o max_conns=4 "
                         "172.17.0.2:/tel_app_exports /mnt/volumes/172.17.0.2/34439-ro");
  plg_strv_free(argv);
}

/* sshfs 3.7.3 dials IPv4 only (connect_to: PF_INET), so an IPv6 server is reached through the
 * plugin's loopback relay, and sshfs can still redial. */
static void the_sshfs_argv_for_ipv6_dials_the_relay(void **state)
{
  (void)state;
  struct tm_addr addr = {.family = AF_INET6, .text = "fd00::2"};
  struct tm_sshfs_params p = {.sshfs = "/usr/bin/sshfs",
                              .addr = &addr,
                              .port = 34439,
                              .mountpoint = "/mnt/volumes/fd00__2/34439",
                              .max_conns = 1,
                              .cache_timeout_ms = 3000,
                              .relay_port = 40001};
  char **argv = tm_sshfs_argv(&p);
  cleanup_free char *s = joined(argv);
  assert_string_equal(s,
                      "/usr/bin/sshfs -f -o follow_symlinks -o auto_unmount -o allow_other -o max_read=65536 "
                      "-o reconnect -o dcache_timeout=1 -o entry_timeout=1.000 -o attr_timeout=1.000 -o "
                      "directport=40001 127.0.0.1:/tel_app_exports /mnt/volumes/fd00__2/34439");
  plg_strv_free(argv);
}

/* The cache options of sshfs for CACHE_TIMEOUT_MS, from the argv. */
static char *cache_opts(int64_t cache_timeout_ms)
{
  struct tm_addr addr = {.family = AF_INET, .text = "10.0.0.1"};
  struct tm_sshfs_params p = {.sshfs = "sshfs",
                              .addr = &addr,
                              .port = 1,
                              .mountpoint = "/m",
                              .max_conns = 1,
                              .cache_timeout_ms = cache_timeout_ms};
  char **argv = tm_sshfs_argv(&p);
  char *out = xstrdup("");
  for (size_t i = 1; argv[i] != NULL; i++)
    if (strstr(argv[i], "cache") != NULL || strstr(argv[i], "_timeout=") != NULL) {
      char *next = xasprintf("%s%s%s", out, *out ? " " : "", argv[i]);
      free(out);
      out = next;
    }
  plg_strv_free(argv);
  return out;
}

/* sshfs keeps an entry until time() passes its second plus dcache_timeout (cache.c), so for up to
 * dcache_timeout + 1 s; the kernel keeps it for attr_timeout more. The sum is the bound. */
static void the_cache_timeout_bounds_sshfs_and_the_kernel_together(void **state)
{
  (void)state;
  struct {
    int64_t ms;
    const char *want;
  } cases[] = {
      {0, "dir_cache=no entry_timeout=0.000 attr_timeout=0.000"},
      {500, "dir_cache=no entry_timeout=0.500 attr_timeout=0.500"},
      {1000, "dcache_timeout=0 entry_timeout=0.000 attr_timeout=0.000"},
      {1500, "dcache_timeout=0 entry_timeout=0.500 attr_timeout=0.500"},
      {2999, "dcache_timeout=0 entry_timeout=1.999 attr_timeout=1.999"},
      {3000, "dcache_timeout=1 entry_timeout=1.000 attr_timeout=1.000"},
      {20500, "dcache_timeout=18 entry_timeout=1.500 attr_timeout=1.500"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cleanup_free char *got = cache_opts(cases[i].ms);
    assert_string_equal(got, cases[i].want);
  }
}

static const char mountinfo[] = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
                                "100 22 0:50 / /mnt/volumes/h/1 rw,nosuid,nodev,relatime shared:60 - "
                                "fuse.sshfs 1.2.3.4:/tel_app_exports rw\n"
                                "101 22 0:51 / /mnt/volumes/h/1/deeper rw - fuse.sshfs x:/y rw\n"
                                "102 22 0:52 / /mnt/volumes2/h/2 rw - fuse.sshfs x:/y rw\n"
                                "103 22 0:53 / /mnt/volumes/h/3 rw - tmpfs tmpfs rw\n"
                                "104 22 0:54 / /mnt/volumes/a\\040b rw - fuse.sshfs x:/y rw\n";

static void mountinfo_is_read_without_touching_the_mounts(void **state)
{
  (void)state;
  char fstype[64];
  assert_true(tm_mountinfo_find(mountinfo, "/mnt/volumes/h/1", fstype, sizeof fstype));
  assert_string_equal(fstype, "fuse.sshfs");
  assert_false(tm_mountinfo_find(mountinfo, "/mnt/volumes/h", NULL, 0));
  assert_false(tm_mountinfo_find(mountinfo, "/mnt/volumes/a b", NULL, 0));
  char **below = tm_mountinfo_below(mountinfo, "/mnt/volumes", "fuse.sshfs");
  assert_non_null(below[0]);
  assert_string_equal(below[0], "/mnt/volumes/h/1/deeper"); /* deepest first */
  assert_string_equal(below[1], "/mnt/volumes/a\\040b");
  assert_string_equal(below[2], "/mnt/volumes/h/1");
  assert_null(below[3]); /* not /mnt/volumes2, not tmpfs */
  plg_strv_free(below);
}

static void the_device_of_the_visible_mount_is_found(void **state)
{
  (void)state;
  char dev[32];
  cleanup_free char *remounted =
      xasprintf("%s%s", mountinfo, "105 22 0:57 / /mnt/volumes/h/1 rw - fuse.sshfs a:/b rw\n");
  assert_true(tm_mountinfo_device(remounted, "/mnt/volumes/h/1", dev, sizeof dev));
  assert_string_equal(dev, "0:57"); /* the later mount on the same path covers the earlier */
  assert_true(tm_mountinfo_device(mountinfo, "/mnt/volumes/h/1", dev, sizeof dev));
  assert_string_equal(dev, "0:50");
  assert_true(tm_mountinfo_device(mountinfo, "/mnt/volumes/h/1/deeper", dev, sizeof dev));
  assert_string_equal(dev, "0:51");
  assert_false(tm_mountinfo_device(mountinfo, "/mnt/volumes/h", dev, sizeof dev));
  assert_false(tm_mountinfo_device("garbage\n\n1 2\n", "/mnt/volumes/h/1", dev, sizeof dev));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_reference_options_are_accepted_with_defaults),
      cmocka_unit_test(ro_alone_means_read_only),
      cmocka_unit_test(required_options_are_named_when_missing),
      cmocka_unit_test(bad_ports_are_refused),
      cmocka_unit_test(bad_booleans_are_refused),
      cmocka_unit_test(unknown_options_are_refused_by_name),
      cmocka_unit_test(escapes_from_the_export_are_refused),
      cmocka_unit_test(dir_is_normalised_to_a_relative_path),
      cmocka_unit_test(hosts_must_be_addresses_or_plain_names),
      cmocka_unit_test(ipv6_hosts_are_normalised),
      cmocka_unit_test(ipv4_mapped_hosts_are_the_ipv4_address),
      cmocka_unit_test(volume_names_follow_dockers_rule),
      cmocka_unit_test(paths_are_built_from_safe_parts),
      cmocka_unit_test(options_compare_and_describe),
      cmocka_unit_test(the_sshfs_argv_for_ipv4_uses_directport_and_redials),
      cmocka_unit_test(the_sshfs_argv_for_ipv6_dials_the_relay),
      cmocka_unit_test(the_cache_timeout_bounds_sshfs_and_the_kernel_together),
      cmocka_unit_test(mountinfo_is_read_without_touching_the_mounts),
      cmocka_unit_test(the_device_of_the_visible_mount_is_found),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
