/* The network and endpoint table: its state file round trip, what happens to a damaged file (moved
 * aside with its content intact, never fatal, never half-loaded), and the IDs it accepts. */
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
#include "tr_table.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NET1 "3c4f9d2ab1e04b6fa8c0d7e19f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
#define NET2 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define EP1 "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44"
#define EP2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static struct tr_prefix pfx(const char *text)
{
  struct tr_prefix p;
  plg_error_t err = NULL;
  if (tr_prefix_parse(text, &p, &err) < 0)
    fail_msg("\"%s\" was refused: %s", text, err->msg);
  return p;
}

static void expect_prefix(const struct tr_prefix *p, bool host_only, const char *want)
{
  char buf[64];
  tr_prefix_format(p, host_only, buf, sizeof buf);
  assert_string_equal(buf, want);
}

/* Two networks (one dual stack with pools and gateways, one bare) and two endpoints (a joined one
 * with addresses, sandbox key, interface and routes with and without a next hop, and the daemon's
 * own, with nothing). */
static void fill(struct tr_table *t)
{
  memset(t, 0, sizeof *t);
  struct tr_network *n = tr_table_add_network(t, NET1);
  snprintf(n->opts.host, sizeof n->opts.host, "172.17.0.2");
  n->opts.port = 4039;
  n->opts.pid = 4242;
  n->pools[n->n_pools++] = pfx("172.18.0.0/16");
  n->pools[n->n_pools++] = pfx("fd00:18::/64");
  n->gateways[n->n_gateways++] = pfx("172.18.0.1/16");
  n->gateways[n->n_gateways++] = pfx("fd00:18::1/64");
  n->daemon_option_seen = true;
  n->endpoints_created = 3;

  n = tr_table_add_network(t, NET2);
  snprintf(n->opts.host, sizeof n->opts.host, "fd00::2");
  n->opts.port = 65535;

  struct tr_endpoint *e = tr_table_add_endpoint(t, EP1, NET1);
  e->addr4 = pfx("172.18.0.3/16");
  e->addr6 = pfx("fd00:18::3/64");
  e->joined = true;
  e->sandbox_key = xstrdup("/var/run/docker/netns/5f0e7e2a1b3c");
  snprintf(e->src_name, sizeof e->src_name, "veth0123456789a");
  struct tr_route routes[3] = {
      {.dst = pfx("10.96.0.0/12"), .via = pfx("172.18.0.2")},
      {.dst = pfx("fd00:96::/108"), .via = pfx("fd00:18::2")},
      {.dst = pfx("10.0.0.0/16")},
  };
  tr_endpoint_set_routes(e, routes, 3);

  e = tr_table_add_endpoint(t, EP2, NET1);
  e->daemon = true;
}

/* U must hold what fill() put in a table. */
static void expect_filled(struct tr_table *u)
{
  size_t nets = 0, eps = 0;
  for (struct tr_network *n = u->networks; n != NULL; n = n->next)
    nets++;
  for (struct tr_endpoint *e = u->endpoints; e != NULL; e = e->next)
    eps++;
  assert_int_equal(nets, 2);
  assert_int_equal(eps, 2);

  struct tr_network *n = tr_table_network(u, NET1);
  assert_non_null(n);
  assert_string_equal(n->opts.host, "172.17.0.2");
  assert_int_equal(n->opts.port, 4039);
  assert_int_equal(n->opts.pid, 4242);
  assert_int_equal(n->n_pools, 2);
  expect_prefix(&n->pools[0], false, "172.18.0.0/16");
  expect_prefix(&n->pools[1], false, "fd00:18::/64");
  assert_int_equal(n->n_gateways, 2);
  expect_prefix(&n->gateways[0], false, "172.18.0.1/16");
  expect_prefix(&n->gateways[1], false, "fd00:18::1/64");
  assert_true(n->daemon_option_seen);
  assert_int_equal(n->endpoints_created, 3);
  assert_null(n->session);

  n = tr_table_network(u, NET2);
  assert_non_null(n);
  assert_string_equal(n->opts.host, "fd00::2");
  assert_int_equal(n->opts.port, 65535);
  assert_int_equal(n->opts.pid, 0);
  assert_int_equal(n->n_pools, 0);
  assert_int_equal(n->n_gateways, 0);
  assert_false(n->daemon_option_seen);
  assert_int_equal(n->endpoints_created, 0);

  struct tr_endpoint *e = tr_table_endpoint(u, EP1);
  assert_non_null(e);
  assert_string_equal(e->network_id, NET1);
  expect_prefix(&e->addr4, false, "172.18.0.3/16");
  expect_prefix(&e->addr6, false, "fd00:18::3/64");
  assert_false(e->daemon);
  assert_true(e->joined);
  assert_non_null(e->sandbox_key);
  assert_string_equal(e->sandbox_key, "/var/run/docker/netns/5f0e7e2a1b3c");
  assert_string_equal(e->src_name, "veth0123456789a");
  assert_int_equal(e->n_routes, 3);
  expect_prefix(&e->routes[0].dst, false, "10.96.0.0/12");
  expect_prefix(&e->routes[0].via, true, "172.18.0.2");
  expect_prefix(&e->routes[1].dst, false, "fd00:96::/108");
  expect_prefix(&e->routes[1].via, true, "fd00:18::2");
  expect_prefix(&e->routes[2].dst, false, "10.0.0.0/16");
  assert_int_equal(e->routes[2].via.family, 0);

  e = tr_table_endpoint(u, EP2);
  assert_non_null(e);
  assert_string_equal(e->network_id, NET1);
  assert_true(e->daemon);
  assert_false(e->joined);
  assert_int_equal(e->addr4.family, 0);
  assert_int_equal(e->addr6.family, 0);
  assert_null(e->sandbox_key);
  assert_string_equal(e->src_name, "");
  assert_int_equal(e->n_routes, 0);
}

static void networks_and_endpoints_are_found_and_removed_by_id(void **state)
{
  (void)state;
  struct tr_table t;
  fill(&t);
  assert_non_null(tr_table_network(&t, NET2));
  assert_null(tr_table_network(&t, EP1));
  tr_table_remove_network(&t, NET2);
  assert_null(tr_table_network(&t, NET2));
  assert_non_null(tr_table_network(&t, NET1));
  tr_table_remove_endpoint(&t, EP1);
  assert_null(tr_table_endpoint(&t, EP1));
  assert_non_null(tr_table_endpoint(&t, EP2));
  tr_table_remove_endpoint(&t, "absent");
  tr_table_remove_network(&t, "absent");
  tr_table_clear(&t);
  assert_null(t.networks);
  assert_null(t.endpoints);
}

static void the_table_survives_to_json_and_from_json(void **state)
{
  (void)state;
  struct tr_table t;
  fill(&t);
  cleanup_json json_t *j = tr_table_to_json(&t);
  tr_table_clear(&t);
  /* through text, as in the file */
  cleanup_free char *text = json_dumps(j, 0);
  cleanup_json json_t *back = json_loads(text, 0, NULL);
  assert_non_null(back);
  struct tr_table u;
  memset(&u, 0, sizeof u);
  assert_int_equal(tr_table_from_state(back, &u), 4); /* two networks, two endpoints */
  expect_filled(&u);
  /* and once more: what was loaded writes the same document */
  cleanup_json json_t *again = tr_table_to_json(&u);
  struct tr_table v;
  memset(&v, 0, sizeof v);
  assert_int_equal(tr_table_from_state(again, &v), 4);
  expect_filled(&v);
  tr_table_clear(&u);
  tr_table_clear(&v);
}

static void the_table_survives_a_save_and_load(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  assert_non_null(dir);
  cleanup_free char *sub = xasprintf("%s/state", dir);
  cleanup_free char *path = xasprintf("%s/networks.json", sub);
  struct tr_table t;
  fill(&t);
  plg_error_t err = NULL;
  if (tr_table_save(&t, path, TR_STATE_MAX_BYTES, &err) < 0)
    fail_msg("save failed: %s", err->msg);
  tr_table_clear(&t);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);

  struct tr_table u;
  assert_int_equal(tr_table_load(&u, path, TR_STATE_MAX_BYTES, &err), 0);
  expect_filled(&u);
  /* saving again over the file works too */
  assert_int_equal(tr_table_save(&u, path, TR_STATE_MAX_BYTES, &err), 0);
  tr_table_clear(&u);
  assert_int_equal(tr_table_load(&u, path, TR_STATE_MAX_BYTES, &err), 0);
  expect_filled(&u);
  tr_table_clear(&u);

  assert_int_equal(unlink(path), 0);
  assert_int_equal(rmdir(sub), 0);
  assert_int_equal(rmdir(dir), 0);
}

/* Issue 13: 500,000 routes made a 34 MB state file that the loader (16 MB at most) refused at the
 * next start, so every network was lost. Saving and loading share one limit: a table the loader
 * would refuse is not written, the file keeps what it had, and the error says why. */
static void a_table_the_loader_would_refuse_is_never_written(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/state.json", dir);
  struct tr_table t;
  fill(&t);
  plg_error_t err = NULL;
  assert_int_equal(tr_table_save(&t, path, TR_STATE_MAX_BYTES, &err), 0);
  cleanup_free char *before = NULL;
  size_t size;
  assert_int_equal(plg_fs_read_file(path, TR_STATE_MAX_BYTES, &before, &size, &err), 0);
  /* at exactly its size the same table saves and loads again */
  assert_int_equal(tr_table_save(&t, path, size, &err), 0);
  struct tr_table u;
  assert_int_equal(tr_table_load(&u, path, size, &err), 0);
  expect_filled(&u);
  tr_table_clear(&u);
  /* one more route than fits: refused, and the file is as it was */
  struct tr_endpoint *e = tr_table_endpoint(&t, EP1);
  struct tr_route more[4];
  memcpy(more, e->routes, 3 * sizeof *more);
  more[3] = (struct tr_route){.dst = pfx("10.250.0.0/16")};
  tr_endpoint_set_routes(e, more, 4);
  assert_int_equal(tr_table_save(&t, path, size, &err), -1);
  char want[160];
  snprintf(want, sizeof want, "bytes, more than the %zu a state file may hold", size);
  if (strstr(err->msg, "the network table would take ") == NULL || strstr(err->msg, want) == NULL)
    fail_msg("the error does not say why: %s", err->msg);
  plg_error_release(&err);
  tr_table_clear(&t);
  cleanup_free char *after = NULL;
  assert_int_equal(plg_fs_read_file(path, TR_STATE_MAX_BYTES, &after, NULL, &err), 0);
  assert_string_equal(after, before);
  assert_int_equal(tr_table_load(&u, path, size, &err), 0);
  expect_filled(&u);
  tr_table_clear(&u);
  unlink(path);
  rmdir(dir);
}

static void an_empty_table_survives_a_save_and_load(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/networks.json", dir);
  struct tr_table t;
  memset(&t, 0, sizeof t);
  plg_error_t err = NULL;
  assert_int_equal(tr_table_save(&t, path, TR_STATE_MAX_BYTES, &err), 0);
  assert_int_equal(tr_table_load(&t, path, TR_STATE_MAX_BYTES, &err), 0);
  assert_null(t.networks);
  assert_null(t.endpoints);
  assert_int_equal(access(path, F_OK), 0);
  unlink(path);
  rmdir(dir);
}

static void a_missing_file_gives_an_empty_table(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/networks.json", dir);
  struct tr_table t;
  memset(&t, 0x5a, sizeof t);
  plg_error_t err = NULL;
  assert_int_equal(tr_table_load(&t, path, TR_STATE_MAX_BYTES, &err), 0);
  assert_null(t.networks);
  assert_null(t.endpoints);
  /* nothing is created or moved */
  DIR *d = opendir(dir);
  struct dirent *e;
  int entries = 0;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      entries++;
  closedir(d);
  assert_int_equal(entries, 0);
  rmdir(dir);
  assert_int_equal(tr_table_load(&t, "/nonexistent/teleroute/networks.json", TR_STATE_MAX_BYTES, &err), 0);
  assert_null(t.networks);
  assert_null(t.endpoints);
}

/* Writes TEXT as the state file, loads it, and checks that the table is empty and the file was
 * moved aside to "<path>.corrupt-<time>" with its content intact. */
static void expect_moved_aside(const char *text)
{
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/networks.json", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, text, strlen(text), 0600, &err), 0);
  time_t before = time(NULL);
  struct tr_table t;
  assert_int_equal(tr_table_load(&t, path, TR_STATE_MAX_BYTES, &err), 0);
  time_t after = time(NULL);
  assert_null(t.networks);
  assert_null(t.endpoints);
  assert_int_equal(access(path, F_OK), -1);
  DIR *d = opendir(dir);
  struct dirent *e;
  int aside = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    const char *prefix = "networks.json.corrupt-";
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
      fail_msg("unexpected file %s after loading %s", e->d_name, text);
    aside++;
    char *end;
    long when = strtol(e->d_name + strlen(prefix), &end, 10);
    assert_int_equal(*end, '\0');
    assert_true(when >= (long)before && when <= (long)after);
    cleanup_free char *p = xasprintf("%s/%s", dir, e->d_name);
    char *back;
    size_t len;
    assert_int_equal(plg_fs_read_file(p, 1 << 20, &back, &len, &err), 0);
    assert_int_equal(len, strlen(text));
    assert_string_equal(back, text);
    free(back);
    unlink(p);
  }
  closedir(d);
  assert_int_equal(aside, 1);
  assert_int_equal(rmdir(dir), 0);
}

/* A valid state file with one network whose id and host are ID and HOST. */
static char *state_with_network(const char *id, const char *host)
{
  return xasprintf("{\"version\":1,\"networks\":[{\"id\":\"%s\",\"host\":\"%s\",\"port\":4039,\"pid\":0,"
                   "\"pools\":[\"172.18.0.0/16\"],\"gateways\":[\"172.18.0.1/16\"],"
                   "\"daemon_option_seen\":false,\"endpoints_created\":0}],\"endpoints\":[]}",
                   id, host);
}

static void the_damage_fixtures_differ_from_a_good_file_in_one_thing(void **state)
{
  (void)state;
  cleanup_free char *good = state_with_network(NET1, "172.17.0.2");
  cleanup_json json_t *j = json_loads(good, 0, NULL);
  assert_non_null(j);
  struct tr_table t;
  memset(&t, 0, sizeof t);
  assert_int_equal(tr_table_from_state(j, &t), 1);
  assert_non_null(tr_table_network(&t, NET1));
  tr_table_clear(&t);
}

static void a_truncated_file_is_moved_aside(void **state)
{
  (void)state;
  struct tr_table t;
  fill(&t);
  cleanup_json json_t *j = tr_table_to_json(&t);
  tr_table_clear(&t);
  cleanup_free char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
  text[strlen(text) / 2] = '\0';
  expect_moved_aside(text);
  expect_moved_aside("");
  expect_moved_aside("\x01garbage");
}

static void a_file_of_another_version_is_moved_aside(void **state)
{
  (void)state;
  expect_moved_aside("{\"version\":2,\"networks\":[],\"endpoints\":[]}");
  expect_moved_aside("{\"version\":\"1\",\"networks\":[],\"endpoints\":[]}");
  expect_moved_aside("{\"networks\":[],\"endpoints\":[]}");
}

/* Loads TEXT: the file stays, and the table holds what passed the checks. */
static void load_text(const char *text, struct tr_table *t)
{
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/networks.json", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_fs_write_atomic(path, text, strlen(text), 0600, &err), 0);
  assert_int_equal(tr_table_load(t, path, TR_STATE_MAX_BYTES, &err), 0);
  assert_int_equal(access(path, F_OK), 0);
  unlink(path);
  rmdir(dir);
}

#define GOOD_NETWORK                                                                                         \
  "{\"id\":\"" NET2 "\",\"host\":\"172.17.0.3\",\"port\":4039,\"pid\":0,\"pools\":[],\"gateways\":[]}"

/* Issue 13: one invalid entry threw the whole table away. Each entry is checked as the request
 * that made it was; a bad one is skipped (and logged), the others are kept. */
static void an_invalid_entry_is_skipped_and_the_others_kept(void **state)
{
  (void)state;
  const char *bad_networks[] = {
      "{\"id\":\"../../etc\",\"host\":\"172.17.0.2\",\"port\":4039,\"pid\":0,\"pools\":[],\"gateways\":[]}",
      "{\"id\":\"" NET1
      "\",\"host\":\"-oProxyCommand=x\",\"port\":4039,\"pid\":0,\"pools\":[],\"gateways\":[]}",
      "{\"id\":\"" NET1 "\",\"host\":\"172.17.0.256\",\"port\":4039,\"pid\":0,\"pools\":[],\"gateways\":[]}",
      "{\"id\":\"" NET1 "\",\"host\":\"172.17.0.2\",\"port\":0,\"pid\":0,\"pools\":[],\"gateways\":[]}",
      "\"not an object\"",
  };
  for (size_t i = 0; i < sizeof bad_networks / sizeof bad_networks[0]; i++) {
    cleanup_free char *text =
        xasprintf("{\"version\":1,\"networks\":[%s," GOOD_NETWORK "],\"endpoints\":[]}", bad_networks[i]);
    struct tr_table t;
    load_text(text, &t);
    assert_non_null(tr_table_network(&t, NET2));
    assert_null(tr_table_network(&t, NET1));
    tr_table_clear(&t);
  }
  /* an endpoint with a bad route: that endpoint alone is dropped */
  struct tr_table t;
  load_text("{\"version\":1,\"networks\":[" GOOD_NETWORK "],\"endpoints\":[{\"id\":\"" EP1 "\",\"network\":"
            "\"" NET2 "\",\"src_name\":\"\",\"routes\":[{\"dst\":\"10.0.0.0/33\"}]},{\"id\":\"" EP2
            "\",\"network\":\"" NET2 "\",\"src_name\":\"\",\"routes\":[]}]}",
            &t);
  assert_non_null(tr_table_network(&t, NET2));
  assert_null(tr_table_endpoint(&t, EP1));
  assert_non_null(tr_table_endpoint(&t, EP2));
  tr_table_clear(&t);
}

/* A file that cannot be read now (a directory stands for EIO/EACCES) is an error, and stays. */
static void a_file_that_cannot_be_read_now_stays_and_is_an_error(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/networks.json", dir);
  assert_int_equal(mkdir(path, 0700), 0);
  struct tr_table t;
  plg_error_t err = NULL;
  assert_int_equal(tr_table_load(&t, path, TR_STATE_MAX_BYTES, &err), -1);
  plg_error_release(&err);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  rmdir(path);
  rmdir(dir);
}

static void expect_id_refused(const char *id, const char *needle)
{
  plg_error_t err = NULL;
  if (tr_id_check("NetworkID", id, &err) == 0)
    fail_msg("id \"%s\" was accepted", id);
  assert_int_equal(err->status, 400);
  assert_non_null(strstr(err->msg, "field \"NetworkID\""));
  if (strstr(err->msg, needle) == NULL)
    fail_msg("error \"%s\" does not contain \"%s\"", err->msg, needle);
  plg_error_release(&err);
}

static void ids_of_1_to_64_alphanumerics_are_accepted(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  assert_int_equal(tr_id_check("NetworkID", NET1, &err), 0);
  assert_int_equal(tr_id_check("NetworkID", "a", &err), 0);
  assert_int_equal(tr_id_check("NetworkID", "ABCdef0123", &err), 0);
  assert_null(err);
}

static void an_empty_id_is_refused(void **state)
{
  (void)state;
  expect_id_refused("", "must be 1 to 64 characters long");
}

static void an_id_over_64_characters_is_refused(void **state)
{
  (void)state;
  expect_id_refused(NET1 "a", "must be 1 to 64 characters long");
}

static void a_non_alphanumeric_id_is_refused(void **state)
{
  (void)state;
  const char *bad[] = {"../x", "a b", "a-b", "a_b", "a.b", "a/b", "\xc3\xa9", "a\nb"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_id_refused(bad[i], "must be alphanumeric");
}

int main(void)
{
  plg_log_init("test");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(networks_and_endpoints_are_found_and_removed_by_id),
      cmocka_unit_test(the_table_survives_to_json_and_from_json),
      cmocka_unit_test(the_table_survives_a_save_and_load),
      cmocka_unit_test(an_empty_table_survives_a_save_and_load),
      cmocka_unit_test(a_table_the_loader_would_refuse_is_never_written),
      cmocka_unit_test(a_missing_file_gives_an_empty_table),
      cmocka_unit_test(the_damage_fixtures_differ_from_a_good_file_in_one_thing),
      cmocka_unit_test(a_truncated_file_is_moved_aside),
      cmocka_unit_test(a_file_of_another_version_is_moved_aside),
      cmocka_unit_test(an_invalid_entry_is_skipped_and_the_others_kept),
      cmocka_unit_test(a_file_that_cannot_be_read_now_stays_and_is_an_error),
      cmocka_unit_test(ids_of_1_to_64_alphanumerics_are_accepted),
      cmocka_unit_test(an_empty_id_is_refused),
      cmocka_unit_test(an_id_over_64_characters_is_refused),
      cmocka_unit_test(a_non_alphanumeric_id_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
