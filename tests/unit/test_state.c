/* State files: one size limit for saving and loading, atomic saves, and a loader that tells a
 * missing file, a file it cannot read now and a damaged file apart (issue 13 findings 1 and 6:
 * a transient read error moved the whole table aside, and a 34 MB state was written that the
 * loader refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_fs.h"
#include "plg_json.h"
#include "plg_log.h"
#include "plg_state.h"
#include "plg_util.h"
#include "test_http.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const lists[] = {"volumes", NULL};
static const struct plg_state_format fmt = {"volume table", 1, lists, 0};
static const struct plg_state_format small = {"volume table", 1, lists, 1024};

struct fixture {
  char *dir;
  char *path;
};

static int setup(void **state)
{
  struct fixture *f = xcalloc(1, sizeof *f);
  f->dir = test_tmpdir();
  f->path = xasprintf("%s/state/volumes.json", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  test_rmtree(f->dir);
  free(f->path);
  free(f->dir);
  free(f);
  return 0;
}

static void write_file(const char *path, const char *text)
{
  plg_error_t err = NULL;
  cleanup_free char *dir = plg_fs_dirname(path);
  assert_int_equal(plg_fs_mkdir_p(dir, 0700, &err), 0);
  assert_int_equal(plg_fs_write_atomic(path, text, strlen(text), 0600, &err), 0);
}

static char *read_text(const char *path)
{
  char *text = NULL;
  plg_error_t err = NULL;
  if (plg_fs_read_file(path, 1 << 26, &text, NULL, &err) < 0)
    plg_error_release(&err);
  return text;
}

/* The files next to PATH whose names begin with "<base>.corrupt-". */
static int count_aside(const char *path, char **last)
{
  cleanup_free char *dir = plg_fs_dirname(path);
  cleanup_free char *prefix = xasprintf("%s.corrupt-", strrchr(path, '/') + 1);
  DIR *d = opendir(dir);
  int n = 0;
  if (d == NULL)
    return 0;
  for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
      n++;
      if (last != NULL) {
        free(*last);
        *last = xasprintf("%s/%s", dir, e->d_name);
      }
    }
  closedir(d);
  return n;
}

static json_t *volumes_state(size_t n, size_t pad)
{
  json_t *vols = json_array();
  cleanup_free char *padding = xmalloc(pad + 1);
  memset(padding, 'p', pad);
  padding[pad] = '\0';
  for (size_t i = 0; i < n; i++) {
    cleanup_free char *name = xasprintf("v%zu", i);
    json_array_append_new(vols, plg_json_pack("{s:s,s:s}", "name", name, "note", padding));
  }
  return plg_json_pack("{s:o}", "volumes", vols);
}

static void a_missing_file_is_an_empty_state(void **state)
{
  struct fixture *f = *state;
  json_t *loaded = (json_t *)1;
  plg_error_t err = NULL;
  assert_int_equal(plg_state_load(&fmt, f->path, &loaded, &err), 0);
  assert_null(loaded);
  assert_int_equal(count_aside(f->path, NULL), 0);
}

static void a_saved_state_loads_back_with_its_version(void **state)
{
  struct fixture *f = *state;
  cleanup_json json_t *saved = volumes_state(3, 4);
  plg_error_t err = NULL;
  assert_int_equal(plg_state_save(&fmt, f->path, saved, &err), 0);
  struct stat st;
  assert_int_equal(stat(f->path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  cleanup_free char *dir = plg_fs_dirname(f->path);
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  cleanup_json json_t *loaded = NULL;
  assert_int_equal(plg_state_load(&fmt, f->path, &loaded, &err), 0);
  assert_non_null(loaded);
  assert_int_equal(json_integer_value(json_object_get(loaded, "version")), 1);
  assert_true(json_equal(saved, loaded));
}

/* A save interrupted by a crash leaves its temporary next to the state file; loading keeps the
 * last complete state and removes the temporary, so crashes do not pile files up. */
static void loading_removes_the_temporary_of_an_interrupted_save(void **state)
{
  struct fixture *f = *state;
  cleanup_json json_t *saved = volumes_state(2, 4);
  plg_error_t err = NULL;
  assert_int_equal(plg_state_save(&fmt, f->path, saved, &err), 0);
  cleanup_free char *tmp = xasprintf("%s.tmp-999-0-0000000000000001", f->path);
  FILE *torn = fopen(tmp, "w");
  assert_non_null(torn);
  fputs("{\"version\": 1, \"volu", torn);
  fclose(torn);
  cleanup_json json_t *loaded = NULL;
  assert_int_equal(plg_state_load(&fmt, f->path, &loaded, &err), 0);
  assert_true(json_equal(saved, loaded));
  assert_int_equal(access(tmp, F_OK), -1);
  assert_int_equal(count_aside(f->path, NULL), 0);
}

static void a_state_larger_than_the_limit_is_refused_and_the_saved_one_kept(void **state)
{
  struct fixture *f = *state;
  cleanup_json json_t *fits = volumes_state(1, 10);
  plg_error_t err = NULL;
  assert_int_equal(plg_state_save(&small, f->path, fits, &err), 0);
  cleanup_free char *before = read_text(f->path);
  cleanup_json json_t *big = volumes_state(20, 100);
  assert_int_equal(plg_state_save(&small, f->path, big, &err), -1);
  assert_non_null(strstr(err->msg, "more than the 1024 a state file may hold"));
  assert_non_null(strstr(err->msg, f->path));
  plg_error_release(&err);
  cleanup_free char *after = read_text(f->path);
  assert_string_equal(before, after);
}

/* The limit is one: what loading refuses is exactly what saving refuses. */
static void save_and_load_share_one_limit(void **state)
{
  struct fixture *f = *state;
  /* grow a state until its encoding passes the limit: the last one saved still loads */
  cleanup_json json_t *last_loaded = NULL;
  plg_error_t err = NULL;
  size_t n;
  for (n = 1;; n++) {
    json_t *s = volumes_state(n, 8);
    int rc = plg_state_save(&small, f->path, s, &err);
    json_decref(s);
    if (rc < 0)
      break;
    json_decref(last_loaded);
    last_loaded = NULL;
    assert_int_equal(plg_state_load(&small, f->path, &last_loaded, &err), 0);
    assert_non_null(last_loaded);
  }
  plg_error_release(&err);
  assert_true(n > 2);
  assert_int_equal(count_aside(f->path, NULL), 0);
  /* and a file one byte over the limit, written by someone else, is damaged */
  char *over = xmalloc(1026);
  memset(over, ' ', 1025);
  over[1025] = '\0';
  over[0] = '{';
  memcpy(over + 1000, "\"version\":1}", 12);
  write_file(f->path, over);
  free(over);
  json_t *loaded = NULL;
  assert_int_equal(plg_state_load(&small, f->path, &loaded, &err), 0);
  assert_null(loaded);
  assert_int_equal(count_aside(f->path, NULL), 1);
}

static void damaged_files_are_moved_aside_whole_and_load_as_empty(void **state)
{
  struct fixture *f = *state;
  static const char *const cases[] = {
      "{\"version\": 1, \"volumes\": [", /* cut short */
      "[]",
      "{\"volumes\": []}",
      "{\"version\": \"1\", \"volumes\": []}",
      "{\"version\": 2, \"volumes\": []}",
      "{\"version\": 1, \"volumes\": {}}",
      "{\"version\": 1, \"version\": 1}",
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_file(f->path, cases[i]);
    json_t *loaded = (json_t *)1;
    plg_error_t err = NULL;
    assert_int_equal(plg_state_load(&fmt, f->path, &loaded, &err), 0);
    assert_null(loaded);
    assert_null(read_text(f->path)); /* gone from its place */
    cleanup_free char *aside = NULL;
    assert_int_equal(count_aside(f->path, &aside), (int)i + 1); /* never over an earlier one */
  }
}

static void the_moved_file_keeps_its_content(void **state)
{
  struct fixture *f = *state;
  write_file(f->path, "{\"version\": 7}");
  json_t *loaded = NULL;
  plg_error_t err = NULL;
  assert_int_equal(plg_state_load(&fmt, f->path, &loaded, &err), 0);
  cleanup_free char *aside = NULL;
  assert_int_equal(count_aside(f->path, &aside), 1);
  cleanup_free char *text = read_text(aside);
  assert_string_equal(text, "{\"version\": 7}");
}

/* A read that fails now (here EISDIR; EIO and EACCES take the same path) says so and leaves
 * the file where it is, for the next start. */
static void a_file_that_cannot_be_read_now_is_an_error_and_stays_in_place(void **state)
{
  struct fixture *f = *state;
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_mkdir_p(f->path, 0700, &err), 0); /* a directory where the file should be */
  json_t *loaded = NULL;
  assert_int_equal(plg_state_load(&fmt, f->path, &loaded, &err), -1);
  assert_null(loaded);
  assert_int_equal(err->errno_, EISDIR);
  assert_non_null(strstr(err->msg, "left in place"));
  plg_error_release(&err);
  struct stat st;
  assert_int_equal(stat(f->path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(count_aside(f->path, NULL), 0);
}

static void an_io_error_is_reported_not_taken_for_damage(void **state)
{
  (void)state;
  json_t *loaded = NULL;
  plg_error_t err = NULL;
  /* reading /proc/self/mem at offset 0 fails with EIO: address 0 is never mapped */
  assert_int_equal(plg_state_load(&fmt, "/proc/self/mem", &loaded, &err), -1);
  assert_null(loaded);
  assert_int_equal(err->errno_, EIO);
  plg_error_release(&err);
}

static int take_named(json_t *entry, void *arg, plg_error_t *err)
{
  const char *name;
  if (plg_json_string(entry, "name", true, &name, err) < 0)
    return -1;
  json_array_append_new(arg, json_string(name));
  return 0;
}

static void an_invalid_entry_is_skipped_and_the_others_are_kept(void **state)
{
  struct fixture *f = *state;
  write_file(f->path, "{\"version\": 1, \"volumes\": [{\"name\": \"a\"}, \"b\", {\"name\": 3}, null, "
                      "{\"name\": \"e\"}]}");
  cleanup_json json_t *loaded = NULL;
  plg_error_t err = NULL;
  assert_int_equal(plg_state_load(&fmt, f->path, &loaded, &err), 0);
  cleanup_json json_t *names = json_array();
  assert_int_equal(plg_state_each(&fmt, loaded, "volumes", take_named, names), 2);
  cleanup_json json_t *want = plg_json_pack("[s,s]", "a", "e");
  assert_true(json_equal(names, want));
  assert_int_equal(count_aside(f->path, NULL), 0);
}

static void an_absent_list_or_state_has_no_entries(void **state)
{
  (void)state;
  cleanup_json json_t *names = json_array();
  assert_int_equal(plg_state_each(&fmt, NULL, "volumes", take_named, names), 0);
  json_t *s = NULL;
  plg_error_t err = NULL;
  assert_int_equal(plg_state_decode(&fmt, "{\"version\":1}", 13, &s, &err), 0);
  assert_int_equal(plg_state_each(&fmt, s, "volumes", take_named, names), 0);
  json_decref(s);
  assert_int_equal(json_array_size(names), 0);
}

int main(void)
{
  plg_log_init("test");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_missing_file_is_an_empty_state, setup, teardown),
      cmocka_unit_test_setup_teardown(a_saved_state_loads_back_with_its_version, setup, teardown),
      cmocka_unit_test_setup_teardown(loading_removes_the_temporary_of_an_interrupted_save, setup, teardown),
      cmocka_unit_test_setup_teardown(a_state_larger_than_the_limit_is_refused_and_the_saved_one_kept, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(save_and_load_share_one_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(damaged_files_are_moved_aside_whole_and_load_as_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(the_moved_file_keeps_its_content, setup, teardown),
      cmocka_unit_test_setup_teardown(a_file_that_cannot_be_read_now_is_an_error_and_stays_in_place, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(an_io_error_is_reported_not_taken_for_damage, setup, teardown),
      cmocka_unit_test_setup_teardown(an_invalid_entry_is_skipped_and_the_others_are_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(an_absent_list_or_state_has_no_entries, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
