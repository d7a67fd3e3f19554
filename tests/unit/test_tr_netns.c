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
#include "tr_netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

static void a_sandbox_key_that_opens_as_a_network_namespace_is_used(void **state)
{
  (void)state;
  if (nsfs_ioctl_missing_under_qemu_user())
    skip();
  struct tr_netns_hint h = {0};
  const char *how;
  cleanup_free char *msg = NULL;
  int fd = open_ns("/proc/self/ns/net", &h, &how, &msg);
  assert_true(fd >= 0);
  assert_string_equal(how, "SandboxKey");
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal((uint64_t)st.st_ino, own_netns_inode());
  close(fd);
}

static void a_sandbox_key_with_dot_dot_or_relative_is_not_opened(void **state)
{
  (void)state;
  const char *bad[] = {"/proc/self/../self/ns/net", "/proc/self/ns/./net", "proc/self/ns/net",
                       "/proc/self/ns/.."};
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
  assert_true(open_ns("/proc/self/status", &h, &how, &msg) < 0);
  assert_non_null(strstr(msg, "/proc/self/status"));
}

static void a_remembered_process_that_keeps_its_namespace_is_used(void **state)
{
  (void)state;
  struct tr_netns_hint h = {getpid(), own_netns_inode()};
  const char *how;
  cleanup_free char *msg = NULL;
  int fd = open_ns("/var/run/docker/netns/no-such-sandbox", &h, &how, &msg);
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
  int fd = open_ns("/var/run/docker/netns/no-such-sandbox", &h, &how, &msg);
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
  assert_true(open_ns("/var/run/docker/netns/no-such-sandbox", &h, &how, &msg) < 0);
  if (strstr(msg, "cannot find the container's network namespace") == NULL ||
      strstr(msg, "SandboxKey /var/run/docker/netns/no-such-sandbox") == NULL ||
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
      cmocka_unit_test(a_sandbox_key_that_opens_as_a_network_namespace_is_used),
      cmocka_unit_test(a_sandbox_key_with_dot_dot_or_relative_is_not_opened),
      cmocka_unit_test(a_sandbox_key_that_is_not_a_namespace_is_passed_over),
      cmocka_unit_test(a_remembered_process_that_keeps_its_namespace_is_used),
      cmocka_unit_test(a_remembered_process_whose_namespace_changed_is_forgotten),
      cmocka_unit_test(an_address_found_nowhere_is_an_error_that_says_what_was_tried),
      cmocka_unit_test(an_endpoint_without_an_address_cannot_be_looked_for),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
