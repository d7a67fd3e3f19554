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
#include <pthread.h>
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

/* Issue 13: the temporary was "<path>.tmp.<pid>", opened with O_TRUNC and without O_EXCL or
 * O_NOFOLLOW, so a link planted at that name had the state written through it. */
static void an_atomic_write_never_writes_through_a_link_planted_next_to_the_file(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/state.json", dir);
  cleanup_free char *victim = xasprintf("%s/victim", dir);
  cleanup_free char *planted = xasprintf("%s.tmp.%ld", path, (long)getpid());
  FILE *fp = fopen(victim, "w");
  fputs("precious", fp);
  fclose(fp);
  assert_int_equal(symlink(victim, planted), 0);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, "state", 5, 0600, &err), 0);
  char *data;
  assert_int_equal(plg_fs_read_file(victim, 100, &data, NULL, &err), 0);
  assert_string_equal(data, "precious");
  free(data);
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(count_entries(dir), 3); /* the file, the victim, the planted link */
  unlink(planted);
  unlink(victim);
  unlink(path);
  rmdir(dir);
}

#define N_WRITERS 4
#define N_WRITES 40
#define WRITE_SIZE (64 * 1024)

struct writer_arg {
  const char *path;
  char fill;
  int failures;
};

static void *write_repeatedly(void *p)
{
  struct writer_arg *a = p;
  char *buf = xmalloc(WRITE_SIZE);
  memset(buf, a->fill, WRITE_SIZE);
  for (int i = 0; i < N_WRITES; i++) {
    plg_error_t err = NULL;
    if (plg_fs_write_atomic(a->path, buf, WRITE_SIZE, 0600, &err) < 0) {
      a->failures++;
      plg_error_release(&err);
    }
  }
  free(buf);
  return NULL;
}

/* Writers of one file in one process never share a temporary: each write lands whole. */
static void concurrent_atomic_writes_of_one_file_never_mix_or_fail(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/state.json", dir);
  pthread_t t[N_WRITERS];
  struct writer_arg args[N_WRITERS];
  for (int i = 0; i < N_WRITERS; i++) {
    args[i] = (struct writer_arg){path, (char)('a' + i), 0};
    pthread_create(&t[i], NULL, write_repeatedly, &args[i]);
  }
  for (int i = 0; i < N_WRITERS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(args[i].failures, 0);
  }
  char *data;
  size_t len;
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_read_file(path, 2 * WRITE_SIZE, &data, &len, &err), 0);
  assert_int_equal(len, WRITE_SIZE);
  for (size_t i = 1; i < len; i++)
    if (data[i] != data[0])
      fail_msg("the file mixes two writes at byte %zu", i);
  free(data);
  assert_int_equal(count_entries(dir), 1);
  unlink(path);
  rmdir(dir);
}

static void touch(const char *dir, const char *name)
{
  cleanup_free char *path = xasprintf("%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("partial", f);
  fclose(f);
}

static bool exists(const char *dir, const char *name)
{
  cleanup_free char *path = xasprintf("%s/%s", dir, name);
  struct stat st;
  return lstat(path, &st) == 0;
}

/* A writer killed between creating its temporary and renaming it leaves the temporary behind;
 * the next start removes it, and only it. */
static void leftover_temporaries_are_removed_and_nothing_else(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/state.json", dir);
  cleanup_free char *outside = test_tmpdir();
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, "kept", 4, 0600, &err), 0);
  touch(dir, "state.json.tmp-41-0-00112233445566ff");
  touch(dir, "state.json.tmp-42-7-0123456789abcdef");
  touch(dir, "state.json.corrupt-1700000000");
  touch(dir, "other.json.tmp-41-0-00112233445566ff");
  touch(dir, "state.json.tmp");
  touch(outside, "target");
  cleanup_free char *target = xasprintf("%s/target", outside);
  cleanup_free char *link = xasprintf("%s/state.json.tmp-link", dir);
  assert_int_equal(symlink(target, link), 0);
  cleanup_free char *subdir = xasprintf("%s/state.json.tmp-dir", dir);
  assert_int_equal(mkdir(subdir, 0700), 0);

  assert_int_equal(plg_fs_remove_temporaries(path), 2);
  assert_false(exists(dir, "state.json.tmp-41-0-00112233445566ff"));
  assert_false(exists(dir, "state.json.tmp-42-7-0123456789abcdef"));
  assert_true(exists(dir, "state.json"));
  assert_true(exists(dir, "state.json.corrupt-1700000000"));
  assert_true(exists(dir, "other.json.tmp-41-0-00112233445566ff"));
  assert_true(exists(dir, "state.json.tmp"));
  assert_true(exists(dir, "state.json.tmp-link"));
  assert_true(exists(dir, "state.json.tmp-dir"));
  assert_true(exists(outside, "target"));
  assert_int_equal(plg_fs_remove_temporaries(path), 0);
  cleanup_free char *missing = xasprintf("%s/none/state.json", dir);
  assert_int_equal(plg_fs_remove_temporaries(missing), 0);
  test_rmtree(dir);
  test_rmtree(outside);
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
      cmocka_unit_test(an_atomic_write_never_writes_through_a_link_planted_next_to_the_file),
      cmocka_unit_test(concurrent_atomic_writes_of_one_file_never_mix_or_fail),
      cmocka_unit_test(leftover_temporaries_are_removed_and_nothing_else),
      cmocka_unit_test(reading_is_bounded),
      cmocka_unit_test(mkdir_p_creates_parents_and_refuses_files_in_the_way),
      cmocka_unit_test(dirname_handles_the_edge_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
