/* Directories and atomically written state files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_fs.h"
#include "plg_util.h"
#include "test_http.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int count_entries(const char *dir)
{
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

static void an_atomic_write_replaces_the_file_and_leaves_no_temporary(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/state.json", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, "first", 5, 0600, &err), 0);
  assert_int_equal(plg_fs_write_atomic(path, "second", 6, 0600, &err), 0);
  char *data;
  size_t len;
  assert_int_equal(plg_fs_read_file(path, 100, &data, &len, &err), 0);
  assert_int_equal(len, 6);
  assert_string_equal(data, "second");
  free(data);
  assert_int_equal(count_entries(dir), 1);
  struct stat st;
  stat(path, &st);
  assert_int_equal(st.st_mode & 0777, 0600);
  unlink(path);
  rmdir(dir);
}

static void reading_is_bounded(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/f", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, "0123456789", 10, 0600, &err), 0);
  char *data;
  assert_int_equal(plg_fs_read_file(path, 10, &data, NULL, &err), 0); /* exactly the limit */
  free(data);
  assert_int_equal(plg_fs_read_file(path, 9, &data, NULL, &err), -1);
  assert_non_null(strstr(err->msg, "larger than 9 bytes"));
  plg_error_release(&err);
  unlink(path);
  assert_int_equal(plg_fs_read_file(path, 9, &data, NULL, &err), -1);
  assert_int_equal(err->errno_, ENOENT);
  plg_error_release(&err);
  rmdir(dir);
}

static void mkdir_p_creates_parents_and_refuses_files_in_the_way(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *deep = xasprintf("%s/a/b/c", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_mkdir_p(deep, 0755, &err), 0);
  assert_int_equal(plg_fs_mkdir_p(deep, 0755, &err), 0); /* idempotent */
  cleanup_free char *file = xasprintf("%s/a/file", dir);
  FILE *fp = fopen(file, "w");
  fclose(fp);
  cleanup_free char *under = xasprintf("%s/a/file/x", dir);
  assert_int_equal(plg_fs_mkdir_p(under, 0755, &err), -1);
  plg_error_release(&err);
  unlink(file);
  rmdir(deep);
  cleanup_free char *b = xasprintf("%s/a/b", dir);
  cleanup_free char *a = xasprintf("%s/a", dir);
  rmdir(b);
  rmdir(a);
  rmdir(dir);
}

static void dirname_handles_the_edge_cases(void **state)
{
  (void)state;
  const char *cases[][2] = {
      {"/run/docker/plugins/x.sock", "/run/docker/plugins"}, {"x.sock", "."}, {"/x", "/"}};
  for (size_t i = 0; i < 3; i++) {
    cleanup_free char *d = plg_fs_dirname(cases[i][0]);
    assert_string_equal(d, cases[i][1]);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_atomic_write_replaces_the_file_and_leaves_no_temporary),
      cmocka_unit_test(reading_is_bounded),
      cmocka_unit_test(mkdir_p_creates_parents_and_refuses_files_in_the_way),
      cmocka_unit_test(dirname_handles_the_edge_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
