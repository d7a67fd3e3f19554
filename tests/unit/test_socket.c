/* The plugin's socket file: created with its directory and mode 0660, a stale one replaced, a live
 * one or another file never taken over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_socket.h"
#include "plg_util.h"
#include "test_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void the_socket_is_created_with_its_directory_and_mode_0660(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/sub/dir/test.sock", dir);
  plg_error_t err = NULL;
  int fd = plg_socket_listen(path, &err);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0660);
  close(fd);
  assert_int_equal(test_rmtree(dir), 0);
}

static void a_stale_socket_file_is_replaced(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/stale.sock", dir);
  /* a socket file nobody listens on, as left by a crashed plugin */
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, path);
  assert_int_equal(bind(s, (struct sockaddr *)&addr, sizeof addr), 0);
  close(s);
  plg_error_t err = NULL;
  int fd = plg_socket_listen(path, &err);
  assert_true(fd >= 0);
  close(fd);
  unlink(path);
  rmdir(dir);
}

static void a_live_socket_is_not_taken_over(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/live.sock", dir);
  plg_error_t err = NULL;
  int live = plg_socket_listen(path, &err);
  assert_true(live >= 0);
  assert_int_equal(plg_socket_listen(path, &err), -1);
  assert_non_null(strstr(err->msg, "already serving"));
  plg_error_release(&err);
  int c = test_http_connect(path); /* and the one that listens still does */
  assert_true(c >= 0);
  close(c);
  close(live);
  unlink(path);
  rmdir(dir);
}

static void a_path_that_is_not_a_socket_is_refused_and_kept(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/file", dir);
  FILE *fp = fopen(path, "w");
  fputs("precious", fp);
  fclose(fp);
  plg_error_t err = NULL;
  assert_int_equal(plg_socket_listen(path, &err), -1);
  assert_non_null(strstr(err->msg, "is not a socket"));
  plg_error_release(&err);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  unlink(path);
  rmdir(dir);
}

static void a_socket_path_too_long_is_refused(void **state)
{
  (void)state;
  char path[200];
  memset(path, 'a', sizeof path - 1);
  path[0] = '/';
  path[sizeof path - 1] = '\0';
  plg_error_t err = NULL;
  assert_int_equal(plg_socket_listen(path, &err), -1);
  assert_non_null(strstr(err->msg, "longer than"));
  plg_error_release(&err);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_socket_is_created_with_its_directory_and_mode_0660),
      cmocka_unit_test(a_stale_socket_file_is_replaced),
      cmocka_unit_test(a_live_socket_is_not_taken_over),
      cmocka_unit_test(a_path_that_is_not_a_socket_is_refused_and_kept),
      cmocka_unit_test(a_socket_path_too_long_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
