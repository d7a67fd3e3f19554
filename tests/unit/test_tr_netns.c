/* Finding a container's network namespace (tr_netns.h), in the parts that need no container: the
 * SandboxKey when it can be opened, a remembered process while it keeps its namespace, and the
 * error when the address is found nowhere. The scan that finds a container is tested end to end
 * (tests/e2e/teleroute_exec_root.sh). This process's own namespace stands in for a container's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "test_http.h"
#include "tr_netns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* qemu-user (the arm64 unit tests) passes on only the ioctls it knows; NS_GET_NSTYPE may not be
 * one of them. Nowhere else is it allowed to be missing (Linux 4.11). */
static bool nsfs_ioctl_missing_under_qemu_user(void)
{
  const char *e = getenv("PLG_TEST_EMULATOR");
  if (e == NULL || strcmp(e, "qemu-user") != 0)
    return false;
  int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  bool works = fd >= 0 && ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET;
  if (fd >= 0)
    close(fd);
  return !works;
}

static uint64_t own_netns_inode(void)
{
  struct stat st;
  assert_int_equal(stat("/proc/self/ns/net", &st), 0);
  return (uint64_t)st.st_ino;
}

static struct tr_prefix addr(const char *text)
{
  struct tr_prefix p;
  plg_error_t err = NULL;
  assert_int_equal(tr_prefix_parse(text, &p, &err), 0);
  return p;
}

/* Opens with KEY and the hint H; returns the fd (or -1) and sets *HOW and *MSG (malloc'd or NULL). */
static int open_ns(const char *key, struct tr_netns_hint *h, const char **how, char **msg)
{
  struct tr_netns_scan *scan = tr_netns_scan_new();
  /* a TEST-NET-3 address that no veth of this machine holds */
  struct tr_prefix a4 = addr("203.0.113.77"), a6 = {0};
  plg_error_t err = NULL;
  *how = NULL;
  *msg = NULL;
  int fd = tr_netns_open(scan, key, &a4, &a6, h, how, &err);
  if (fd < 0) {
    *msg = xstrdup(err->msg);
    plg_error_release(&err);
  }
  tr_netns_scan_free(scan);
  return fd;
}

/* DIR/netns/0123456789ab, as Docker's <exec-root>/netns/<sandbox>: a bind mount of this process's
 * network namespace (in a mount namespace of the test's own), or a symbolic link to it. Returns
 * the path, or NULL (and skips) where the test may not mount. */
static char *docker_like_key(const char *dir, bool link)
{
  cleanup_free char *netns = xasprintf("%s/netns", dir);
  assert_int_equal(mkdir(netns, 0700), 0);
  char *key = xasprintf("%s/0123456789ab", netns);
  if (link) {
    assert_int_equal(symlink("/proc/self/ns/net", key), 0);
    return key;
  }
  int fd = open(key, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  close(fd);
  if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_PRIVATE | MS_REC, NULL) < 0 ||
      mount("/proc/self/ns/net", key, "none", MS_BIND, NULL) < 0) {
    fprintf(stderr, "cannot bind a namespace file here (%s): skipped\n", strerror(errno));
    free(key);
    return NULL;
  }
  return key;
}

static void a_sandbox_key_in_a_netns_directory_that_opens_as_a_network_namespace_is_used(void **state)
{
  (void)state;
  if (nsfs_ioctl_missing_under_qemu_user())
    skip();
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *key = docker_like_key(dir, false);
  if (key == NULL) {
    test_rmtree(dir);
    skip();
  }
  struct tr_netns_hint h = {0};
  const char *how;
  cleanup_free char *msg = NULL;
  int fd = open_ns(key, &h, &how, &msg);
  umount2(key, MNT_DETACH);
  test_rmtree(dir);
  if (fd < 0)
    fail_msg("%s was not opened: %s", key, msg);
  assert_string_equal(how, "SandboxKey");
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal((uint64_t)st.st_ino, own_netns_inode());
  close(fd);
}

/* Issue 13: a SandboxKey is opened (and routes changed inside) only in Docker's netns directory.
 * /proc/self/ns/net is a network namespace, but not one of Docker's files. */
static void a_network_namespace_outside_dockers_netns_directory_is_not_opened(void **state)
{
  (void)state;
  struct tr_netns_hint h = {0};
  const char *how;
  cleanup_free char *msg = NULL;
  int fd = open_ns("/proc/self/ns/net", &h, &how, &msg);
  if (fd >= 0)
    fail_msg("/proc/self/ns/net was opened as a SandboxKey (%s)", how);
  if (strstr(msg, "SandboxKey /proc/self/ns/net cannot be opened in the plugin (it is not in Docker's netns "
                  "directory)") == NULL)
    fail_msg("unclear error: %s", msg);
}

static void a_symbolic_link_in_the_netns_directory_is_not_followed(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *key = docker_like_key(dir, true);
  struct tr_netns_hint h = {0};
  const char *how;
  cleanup_free char *msg = NULL;
  int fd = open_ns(key, &h, &how, &msg);
  test_rmtree(dir);
  if (fd >= 0)
    fail_msg("a link to /proc/self/ns/net was followed (%s)", how);
  assert_non_null(strstr(msg, "Too many levels of symbolic links"));
}

static void sandbox_keys_are_dockers_netns_files_only(void **state)
{
  (void)state;
  const char *good[] = {"/var/run/docker/netns/0123456789ab", "/run/docker-2/netns/abcdef012345",
                        "/netns/0123456789ab", "/home/u/.docker run/netns/ffffffffffff"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    plg_error_t err = NULL;
    if (tr_netns_key_check(good[i], &err) < 0)
      fail_msg("%s was refused: %s", good[i], err->msg);
  }
  const char *bad[] = {"/proc/self/ns/net",
                       "/proc/1/ns/net",
                       "/var/run/docker/netns/0123456789a",
                       "/var/run/docker/netns/0123456789abc",
                       "/var/run/docker/netns/0123456789AB",
                       "/var/run/docker/netns/default",
                       "/var/run/docker/netns2/0123456789ab",
                       "/var/run/docker/xnetns/0123456789ab",
                       "/var/run/docker/netns/../netns/0123456789ab",
                       "/var/run/docker/./netns/0123456789ab",
                       "/var/run/docker//netns/0123456789ab",
                       "var/run/docker/netns/0123456789ab",
                       "netns/0123456789ab",
                       "/var/run/docker/netns/",
                       ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    plg_error_t err = NULL;
    if (tr_netns_key_check(bad[i], &err) == 0)
      fail_msg("SandboxKey \"%s\" was accepted", bad[i]);
    assert_int_equal(err->status, 400);
    assert_non_null(strstr(err->msg, "is not a network namespace file of Docker's (<exec-root>/netns/<12 hex "
                                     "digits>)"));
    plg_error_release(&err);
  }
}

static void a_sandbox_key_with_dot_dot_or_relative_is_not_opened(void **state)
{
  (void)state;
  const char *bad[] = {"/proc/self/../self/ns/net", "/proc/self/ns/./net", "proc/self/ns/net",
                       "/proc/self/ns/..", "/var/run/docker/netns/../../../proc/self/ns/net"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct tr_netns_hint h = {0};
    const char *how;
    cleanup_free char *msg = NULL;
    int fd = open_ns(bad[i], &h, &how, &msg);
    if (fd >= 0)
      fail_msg("SandboxKey %s was opened (%s)", bad[i], how);
    assert_non_null(msg);
  }
}

static void a_sandbox_key_that_is_not_a_namespace_is_passed_over(void **state)
{
  (void)state;
  struct tr_netns_hint h = {0};
  const char *how;
  cleanup_free char *msg = NULL;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *netns = xasprintf("%s/netns", dir);
  cleanup_free char *key = xasprintf("%s/0123456789ab", netns);
  assert_int_equal(mkdir(netns, 0700), 0);
  int fd = open(key, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  close(fd);
  fd = open_ns(key, &h, &how, &msg);
  test_rmtree(dir);
  assert_true(fd < 0);
  assert_non_null(strstr(msg, key));
}

static void a_remembered_process_that_keeps_its_namespace_is_used(void **state)
{
  (void)state;
  struct tr_netns_hint h = {getpid(), own_netns_inode()};
  const char *how;
  cleanup_free char *msg = NULL;
  int fd = open_ns("/var/run/docker/netns/00000000dead", &h, &how, &msg);
  assert_true(fd >= 0);
  assert_string_equal(how, "its process");
  assert_int_equal(h.pid, getpid());
  close(fd);
}

static void a_remembered_process_whose_namespace_changed_is_forgotten(void **state)
{
  (void)state;
  struct tr_netns_hint h = {getpid(), own_netns_inode() + 1};
  const char *how;
  cleanup_free char *msg = NULL;
  int fd = open_ns("/var/run/docker/netns/00000000dead", &h, &how, &msg);
  if (fd >= 0)
    fail_msg("found through %s", how);
  assert_int_equal(h.pid, 0);
}

static void an_address_found_nowhere_is_an_error_that_says_what_was_tried(void **state)
{
  (void)state;
  struct tr_netns_hint h = {0};
  const char *how;
  cleanup_free char *msg = NULL;
  assert_true(open_ns("/var/run/docker/netns/00000000dead", &h, &how, &msg) < 0);
  if (strstr(msg, "cannot find the container's network namespace") == NULL ||
      strstr(msg, "SandboxKey /var/run/docker/netns/00000000dead") == NULL ||
      strstr(msg, "No such file or directory") == NULL)
    fail_msg("unclear error: %s", msg);
  /* as root the scan enters namespaces and names the address; otherwise it says why it could not */
  if (strstr(msg, "has a veth holding 203.0.113.77") == NULL && strstr(msg, "cannot be searched") == NULL)
    fail_msg("the error does not say what the scan found: %s", msg);
  assert_int_equal(h.pid, 0);
}

static void an_endpoint_without_an_address_cannot_be_looked_for(void **state)
{
  (void)state;
  struct tr_netns_scan *scan = tr_netns_scan_new();
  struct tr_prefix none = {0};
  struct tr_netns_hint h = {0};
  const char *how = NULL;
  plg_error_t err = NULL;
  assert_int_equal(tr_netns_open(scan, NULL, &none, &none, &h, &how, &err), -1);
  assert_non_null(strstr(err->msg, "no address"));
  plg_error_release(&err);
  tr_netns_scan_free(scan);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_sandbox_key_in_a_netns_directory_that_opens_as_a_network_namespace_is_used),
      cmocka_unit_test(a_network_namespace_outside_dockers_netns_directory_is_not_opened),
      cmocka_unit_test(a_symbolic_link_in_the_netns_directory_is_not_followed),
      cmocka_unit_test(sandbox_keys_are_dockers_netns_files_only),
      cmocka_unit_test(a_sandbox_key_with_dot_dot_or_relative_is_not_opened),
      cmocka_unit_test(a_sandbox_key_that_is_not_a_namespace_is_passed_over),
      cmocka_unit_test(a_remembered_process_that_keeps_its_namespace_is_used),
      cmocka_unit_test(a_remembered_process_whose_namespace_changed_is_forgotten),
      cmocka_unit_test(an_address_found_nowhere_is_an_error_that_says_what_was_tried),
      cmocka_unit_test(an_endpoint_without_an_address_cannot_be_looked_for),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
