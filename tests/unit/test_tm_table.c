/* The volume table: set semantics of mount IDs, the state file round trip, and what happens to a
 * damaged file (moved aside, never fatal, never half-loaded). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_fs.h"
#include "plg_json.h"
#include "plg_log.h"
#include "plg_util.h"
#include "test_http.h"
#include "tm_table.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void opts(struct tm_opts *o, const char *json)
{
  cleanup_json json_t *j = json_loads(json, 0, NULL);
  plg_error_t err = NULL;
  assert_int_equal(tm_opts_parse(j, o, &err), 0);
}

static void mount_ids_are_a_set(void **state)
{
  (void)state;
  struct tm_table t;
  tm_table_init(&t);
  struct tm_opts o;
  opts(&o, "{\"container\":\"c\",\"port\":\"1\"}");
  struct tm_volume *v = tm_table_add(&t, "v1", &o, NULL);
  tm_opts_clear(&o);
  assert_true(tm_volume_add_id(v, "a"));
  assert_false(tm_volume_add_id(v, "a"));
  assert_true(tm_volume_add_id(v, "b"));
  assert_int_equal(v->n_ids, 2);
  assert_true(tm_volume_remove_id(v, "a"));
  assert_false(tm_volume_remove_id(v, "a"));
  assert_int_equal(v->n_ids, 1);
  assert_string_equal(v->ids[0], "b");
  assert_non_null(tm_table_find(&t, "v1"));
  tm_table_remove(&t, "v1");
  assert_null(tm_table_find(&t, "v1"));
  tm_table_clear(&t);
}

static void the_table_survives_a_save_and_load(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/state/volumes.json", dir);
  struct tm_table t;
  tm_table_init(&t);
  struct tm_opts o;
  opts(&o, "{\"container\":\"echo\",\"port\":\"34439\",\"host\":\"::1\",\"dir\":\"a/b\",\"ro\":\"1\"}");
  struct tm_volume *v = tm_table_add(&t, "v1", &o, "2026-11-22T18:27:07Z");
  tm_volume_add_id(v, "abc");
  tm_opts_clear(&o);
  opts(&o, "{\"container\":\"other\",\"port\":\"1\"}");
  tm_table_add(&t, "v2", &o, NULL);
  tm_opts_clear(&o);
  plg_error_t err = NULL;
  assert_int_equal(tm_table_save(&t, path, &err), 0);

  struct tm_table u;
  assert_int_equal(tm_table_load(&u, path, &err), 0);
  assert_int_equal(u.n, 2);
  struct tm_volume *w = tm_table_find(&u, "v1");
  assert_non_null(w);
  assert_true(tm_opts_equal(&w->opts, &t.vols[0]->opts));
  assert_string_equal(w->created_at, "2026-11-22T18:27:07Z");
  assert_int_equal(w->n_ids, 1);
  assert_string_equal(w->ids[0], "abc");
  assert_non_null(tm_table_find(&u, "v2"));
  tm_table_clear(&t);
  tm_table_clear(&u);
  unlink(path);
  cleanup_free char *sd = xasprintf("%s/state", dir);
  rmdir(sd);
  rmdir(dir);
}

static void a_missing_file_is_an_empty_table(void **state)
{
  (void)state;
  struct tm_table t;
  plg_error_t err = NULL;
  assert_int_equal(tm_table_load(&t, "/nonexistent/telemount/volumes.json", &err), 0);
  assert_int_equal(t.n, 0);
}

/* Writes TEXT as the state file, loads it, and checks that the table is empty and the file was
 * moved aside (so that nothing is lost and the next save does not overwrite the evidence). */
static void expect_moved_aside(const char *text)
{
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/volumes.json", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, text, strlen(text), 0600, &err), 0);
  struct tm_table t;
  assert_int_equal(tm_table_load(&t, path, &err), 0);
  assert_int_equal(t.n, 0);
  assert_int_equal(access(path, F_OK), -1);
  DIR *d = opendir(dir);
  struct dirent *e;
  int aside = 0;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "volumes.json.corrupt-", 21) == 0) {
      aside++;
      cleanup_free char *p = xasprintf("%s/%s", dir, e->d_name);
      char *back;
      assert_int_equal(plg_fs_read_file(p, 1 << 20, &back, NULL, &err), 0);
      assert_string_equal(back, text);
      free(back);
      unlink(p);
    }
  }
  closedir(d);
  assert_int_equal(aside, 1);
  rmdir(dir);
}

static void a_damaged_file_is_moved_aside_not_fatal(void **state)
{
  (void)state;
  expect_moved_aside("{\"version\":1,\"volumes\":[");    /* truncated */
  expect_moved_aside("\x00\x01garbage");                 /* not JSON */
  expect_moved_aside("{\"version\":99,\"volumes\":[]}"); /* unknown version */
  expect_moved_aside("{\"version\":1,\"volumes\":{}}");  /* the list is not a list */
}

/* Loads TEXT and returns the table; the file must stay where it is. */
static void load_text(const char *text, struct tm_table *t)
{
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/volumes.json", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, text, strlen(text), 0600, &err), 0);
  assert_int_equal(tm_table_load(t, path, &err), 0);
  assert_int_equal(access(path, F_OK), 0);
  unlink(path);
  rmdir(dir);
}

/* Mount IDs loaded from the state file were made through an earlier run of the plugin, whose
 * sshfs ended with it: a dockerd killed and restarted (or a reboot) leaves Docker's container dead
 * and never unmounted, so such an ID would hold the volume for ever (seen on dockerd 20.10: after
 * `kill -9` of dockerd and a restart, the container had exited and the ID stayed in usedBy). They
 * are kept for Unmount and inspect, but do not hold the volume; a mount of this run does. */
static void mount_ids_of_an_earlier_run_do_not_hold_the_volume(void **state)
{
  (void)state;
  struct tm_table t;
  load_text("{\"version\":1,\"volumes\":[{\"name\":\"vol\",\"created_at\":\"x\",\"options\":"
            "{\"container\":\"c\",\"port\":\"1\"},\"mount_ids\":[\"old1\",\"old2\"]}]}",
            &t);
  struct tm_volume *v = tm_table_find(&t, "vol");
  assert_non_null(v);
  assert_int_equal(v->n_ids, 2);
  assert_int_equal(tm_volume_held(v), 0);
  assert_true(tm_volume_add_id(v, "new"));
  assert_int_equal(tm_volume_held(v), 1);
  assert_false(tm_volume_add_id(v, "new"));
  assert_true(tm_volume_remove_id(v, "old1"));
  assert_int_equal(v->n_earlier, 1);
  assert_int_equal(tm_volume_held(v), 1);
  /* Docker mounting an earlier ID again: now a mount of this run */
  assert_false(tm_volume_add_id(v, "old2"));
  assert_int_equal(v->n_ids, 2);
  assert_int_equal(v->n_earlier, 0);
  assert_int_equal(tm_volume_held(v), 2);
  assert_true(tm_volume_remove_id(v, "new"));
  assert_true(tm_volume_remove_id(v, "old2"));
  assert_int_equal(tm_volume_held(v), 0);
  assert_int_equal(v->n_ids, 0);
  tm_table_clear(&t);
}

#define GOOD_ENTRY "{\"name\":\"good\",\"created_at\":\"x\",\"options\":{\"container\":\"c\",\"port\":\"1\"}}"

/* Issue 13: one invalid entry threw the whole table away. Each entry is checked as a Create would
 * check it; a bad one is skipped (and logged), the others are kept. */
static void a_tampered_entry_is_skipped_and_the_others_kept(void **state)
{
  (void)state;
  const char *bad[] = {
      "{\"name\":\"v1\",\"created_at\":\"x\",\"options\":{\"container\":\"../..\",\"port\":\"1\"}}",
      "{\"name\":\"../v\",\"created_at\":\"x\",\"options\":{\"container\":\"c\",\"port\":\"1\"}}",
      "{\"name\":\"v1\",\"created_at\":\"x\",\"options\":{\"container\":\"c\",\"port\":\"1\",\"host\":\"-"
      "oProxyCommand=x\"}}",
      "{\"name\":\"v\"}",
      "{\"name\":\"v1\",\"created_at\":\"x\",\"options\":{\"container\":\"c\",\"port\":\"1\"},\"mount_ids\":["
      "7]}",
      "\"not an object\"",
      GOOD_ENTRY, /* a second one of the same name */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *text = xasprintf("{\"version\":1,\"volumes\":[" GOOD_ENTRY ",%s]}", bad[i]);
    struct tm_table t;
    load_text(text, &t);
    assert_int_equal(t.n, 1);
    assert_non_null(tm_table_find(&t, "good"));
    assert_int_equal(t.vols[0]->n_ids, 0);
    tm_table_clear(&t);
  }
}

/* Issue 13: a read error that may pass (EIO, EACCES) moved the whole table aside. It is an error
 * the plugin stops on, and the file stays. A directory where the file should be stands for it. */
static void a_file_that_cannot_be_read_now_stays_and_is_an_error(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/volumes.json", dir);
  assert_int_equal(mkdir(path, 0700), 0);
  struct tm_table t;
  plg_error_t err = NULL;
  assert_int_equal(tm_table_load(&t, path, &err), -1);
  assert_non_null(err);
  plg_error_release(&err);
  struct stat st;
  assert_int_equal(stat(path, &st), 0); /* still there, not moved aside */
  assert_true(S_ISDIR(st.st_mode));
  rmdir(path);
  rmdir(dir);
}

int main(void)
{
  plg_log_init("test");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(mount_ids_are_a_set),
      cmocka_unit_test(the_table_survives_a_save_and_load),
      cmocka_unit_test(a_missing_file_is_an_empty_table),
      cmocka_unit_test(a_damaged_file_is_moved_aside_not_fatal),
      cmocka_unit_test(a_tampered_entry_is_skipped_and_the_others_kept),
      cmocka_unit_test(mount_ids_of_an_earlier_run_do_not_hold_the_volume),
      cmocka_unit_test(a_file_that_cannot_be_read_now_stays_and_is_an_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
