/* The rule that frees volume names for Telepresence's next intercept, through telemount's real
 * VolumeDriver handlers and volume table.
 *
 * Facts it rests on: Telepresence names volumes "<container>-<i>" and creates the same names again
 * with a new port in its next intercept (telepresence pkg/client/docker/volume.go: CreateVolumes);
 * Docker's volume store asks the driver's Get before it creates a volume and reuses one the driver
 * still knows, without passing the new options (moby volume/service/store.go: create,
 * checkConflict, lookupVolume: a Get error that is not a network error counts as "not found"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_server.h"
#include "plg_util.h"
#include "test_http.h"
#include "tm_driver.h"
#include "tm_export.h"
#include "tm_table.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
  char *dir;
  char *state_file;
  void *ctx;
  int dead_port; /* nothing listens there: connections are refused at once */
};

/* A port that refuses connections: bound, never listened on, kept bound so nobody takes it. */
static int refusing_port(int *fd)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  *fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(*fd >= 0);
  assert_int_equal(bind(*fd, (struct sockaddr *)&sa, len), 0);
  assert_int_equal(getsockname(*fd, (struct sockaddr *)&sa, &len), 0);
  return ntohs(sa.sin_port);
}

static int dead_fd = -1;

static void write_table(struct fixture *f, const char *json)
{
  FILE *fp = fopen(f->state_file, "w");
  assert_non_null(fp);
  fputs(json, fp);
  fclose(fp);
}

static int start_plugin(struct fixture *f)
{
  plg_error_t err = NULL;
  int rc = tm_init(&f->ctx, &err);
  if (rc < 0)
    fail_msg("tm_init: %s", err->msg);
  return rc;
}

static int setup(void **state)
{
  struct fixture *f = xcalloc(1, sizeof *f);
  f->dir = test_tmpdir();
  cleanup_free char *mounts = xasprintf("%s/mnt", f->dir);
  cleanup_free char *states = xasprintf("%s/state", f->dir);
  mkdir(mounts, 0700);
  mkdir(states, 0700);
  f->state_file = xasprintf("%s/volumes.json", states);
  setenv("MOUNT_ROOT", mounts, 1);
  setenv("STATE_DIR", states, 1);
  setenv("DISCONNECTED_LINGER_TIME", "100ms", 1);
  setenv("HOST_PING_TIMEOUT", "1s", 1);
  f->dead_port = refusing_port(&dead_fd);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  tm_shutdown(f->ctx);
  close(dead_fd);
  assert_int_equal(test_rmtree(f->dir), 0);
  free(f->dir);
  free(f->state_file);
  free(f);
  return 0;
}

static struct plg_response call(struct fixture *f, const char *what, const char *body)
{
  const struct plg_service svc = {"VolumeDriver", tm_routes, TM_N_ROUTES, f->ctx, NULL};
  cleanup_free char *path = xasprintf("/VolumeDriver.%s", what);
  struct plg_response resp = {0};
  plg_dispatch(&svc, "POST", path, body, strlen(body), &resp);
  return resp;
}

static bool table_file_lists(struct fixture *f, const char *name)
{
  FILE *fp = fopen(f->state_file, "r");
  assert_non_null(fp);
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  cleanup_free char *quoted = xasprintf("\"%s\"", name);
  return strstr(buf, quoted) != NULL;
}

static char *volume_entry(const char *name, int port, const char *ids)
{
  return xasprintf(
      "{\"name\":\"%s\",\"created_at\":\"2026-12-01T10:00:00Z\",\"options\":{\"container\":\"echo\","
      "\"host\":\"127.0.0.1\",\"port\":\"%d\",\"ro\":\"false\",\"dir\":\"/var/run\"},"
      "\"mount_ids\":[%s]}",
      name, port, ids);
}

static void an_unused_volume_whose_server_is_gone_is_let_go(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *v = volume_entry("echo-0", f->dead_port, "");
  cleanup_free char *table = xasprintf("{\"version\":1,\"volumes\":[%s]}", v);
  write_table(f, table);
  start_plugin(f);
  struct plg_response r = call(f, "Get", "{\"Name\":\"echo-0\"}");
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.body, "no such volume"));
  free(r.body);
  assert_false(table_file_lists(f, "echo-0"));
  r = call(f, "List", "{}");
  assert_null(strstr(r.body, "echo-0"));
  free(r.body);
}

/* A volume a container mounted through an earlier run of the plugin (before a reboot, a crash of
 * dockerd or of the plugin) is held by nobody: that sshfs ended with its run, and Docker never
 * unmounts what it lost. Its name must come free like any unused one, or the next intercept after
 * a reboot fails on the old port. (A volume held through this run is kept however long its server
 * is gone: tests/e2e/telemount_reconnect.sh, an outage of 20 s against a linger time of 2 s.)
 *
 * Checked by hand on dockerd 20.10 (an end-to-end test would have to kill the machine's engine):
 * a container holds a telemount volume; `kill -9` of dockerd, then dockerd started again: the
 * container shows "Exited (137)", the plugin runs again without its sshfs, and `docker volume
 * inspect` still lists the container's mount ID in usedBy: no Unmount ever came, and none comes
 * when the container is removed (moby removes a container's volume references without Unmount).
 * This test starts the plugin on exactly that state file. */
static void mounts_from_an_earlier_run_do_not_keep_a_volume_whose_server_is_gone(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *v = volume_entry("echo-1", f->dead_port, "\"0123abcd\"");
  cleanup_free char *table = xasprintf("{\"version\":1,\"volumes\":[%s]}", v);
  write_table(f, table);
  start_plugin(f);
  struct plg_response r = call(f, "Get", "{\"Name\":\"echo-1\"}");
  assert_int_equal(r.status, 404);
  free(r.body);
  assert_false(table_file_lists(f, "echo-1"));
  /* Docker's late Unmount of the lost mount names a volume that is gone: a clear error */
  r = call(f, "Unmount", "{\"Name\":\"echo-1\",\"ID\":\"0123abcd\"}");
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.body, "echo-1"));
  free(r.body);
}

/* The server's side of an SFTP greeting: enough for the plugin's probe to count as an answer. */
static void *answer_greetings(void *arg)
{
  int lfd = *(int *)arg;
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
      return NULL;
    unsigned char init[9];
    static const unsigned char version[9] = {0, 0, 0, 5, 2, 0, 0, 0, 3};
    if (recv(fd, init, sizeof init, MSG_WAITALL) == (ssize_t)sizeof init)
      (void)!write(fd, version, sizeof version);
    close(fd);
  }
}

static void a_volume_whose_server_answers_is_kept(void **state)
{
  struct fixture *f = *state;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, len), 0);
  assert_int_equal(listen(lfd, 8), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, answer_greetings, &lfd), 0);
  cleanup_free char *v = volume_entry("echo-2", ntohs(sa.sin_port), "");
  cleanup_free char *table = xasprintf("{\"version\":1,\"volumes\":[%s]}", v);
  write_table(f, table);
  start_plugin(f);
  struct plg_response r = call(f, "Get", "{\"Name\":\"echo-2\"}");
  assert_int_equal(r.status, 200);
  free(r.body);
  assert_true(table_file_lists(f, "echo-2"));
  shutdown(lfd, SHUT_RDWR);
  pthread_join(t, NULL);
  close(lfd);
}

/* Memory and disk never disagree: when the table without the volume cannot be saved, the volume
 * stays, in the file and in answers. */
static void a_volume_that_cannot_be_let_go_on_disk_stays(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *v = volume_entry("echo-3", f->dead_port, "");
  cleanup_free char *table = xasprintf("{\"version\":1,\"volumes\":[%s]}", v);
  write_table(f, table);
  start_plugin(f);
  /* the state directory becomes a file: every save fails from now on */
  cleanup_free char *states = xasprintf("%s/state", f->dir);
  cleanup_free char *moved = xasprintf("%s/state.away", f->dir);
  assert_int_equal(rename(states, moved), 0);
  FILE *fp = fopen(states, "w");
  assert_non_null(fp);
  fclose(fp);
  struct plg_response r = call(f, "Get", "{\"Name\":\"echo-3\"}");
  assert_int_equal(r.status, 200);
  free(r.body);
  r = call(f, "Remove", "{\"Name\":\"echo-3\"}");
  assert_int_equal(r.status, 500);
  assert_non_null(strstr(r.body, "cannot save the volume table"));
  free(r.body);
  r = call(f, "Get", "{\"Name\":\"echo-3\"}");
  assert_int_equal(r.status, 200);
  free(r.body);
  unlink(states);
  assert_int_equal(rename(moved, states), 0);
}

/* A table that cannot be read now must not be overwritten by an empty one: the plugin does not start. */
static void the_plugin_does_not_start_on_a_table_it_cannot_read(void **state)
{
  struct fixture *f = *state;
  assert_int_equal(mkdir(f->state_file, 0700), 0); /* reading it fails with EISDIR */
  plg_error_t err = NULL;
  assert_int_equal(tm_init(&f->ctx, &err), -1);
  assert_non_null(strstr(err->msg, "cannot be read now; not starting"));
  plg_error_release(&err);
  f->ctx = NULL;
  rmdir(f->state_file);
}

static void silence_is_final_only_after_the_linger_time(void **state)
{
  (void)state;
  assert_false(tm_silence_is_final(0, 100000, 5000)); /* it answers */
  assert_false(tm_silence_is_final(1000, 6000, 5000));
  assert_true(tm_silence_is_final(1000, 6001, 5000));
  assert_true(tm_silence_is_final(1, 2, 0));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(silence_is_final_only_after_the_linger_time),
      cmocka_unit_test_setup_teardown(an_unused_volume_whose_server_is_gone_is_let_go, setup, teardown),
      cmocka_unit_test_setup_teardown(mounts_from_an_earlier_run_do_not_keep_a_volume_whose_server_is_gone,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_volume_whose_server_answers_is_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(a_volume_that_cannot_be_let_go_on_disk_stays, setup, teardown),
      cmocka_unit_test_setup_teardown(the_plugin_does_not_start_on_a_table_it_cannot_read, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
