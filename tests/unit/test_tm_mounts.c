/* telemount's sshfs mounts and their state machine (start, lost, linger, remount, reconnect,
 * frozen), against a real sshfs and real sftp-servers: on a socketpair for the stale mount of an
 * earlier run, on a TCP port (tests/unit/sftp_fixture.c) for the rest, with a fake sshfs selected
 * through the SSHFS setting that mounts the test's directory in place of /tel_app_exports. Needs
 * root, /dev/fuse and sshfs (CI has them); skipped otherwise, and under emulation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_proc.h"
#include "plg_util.h"
#include "sftp_fixture.h"
#include "test_http.h"
#include "tm_config.h"
#include "tm_mountinfo.h"
#include "tm_mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SFTP_SERVER SFTP_FIXTURE_SERVER
/* long enough for a loaded machine and valgrind; a state that never comes fails the test */
#define AWAIT_MS 30000

static bool can_mount(void)
{
  return geteuid() == 0 && getenv("PLG_TEST_EMULATOR") == NULL && access("/dev/fuse", R_OK | W_OK) == 0 &&
         access(SFTP_SERVER, X_OK) == 0 && access("/usr/bin/sshfs", X_OK) == 0;
}

static pid_t spawn_on(int fd, const char *const argv[])
{
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.stdin_fd = fd;
  opts.stdout_fd = fd;
  plg_error_t err = NULL;
  pid_t pid = plg_proc_spawn(argv, &opts, &err);
  if (pid < 0)
    fail_msg("%s", err->msg);
  return pid;
}

/* An sshfs mount of REMOTE on MNT, as an earlier run of the plugin would have left it. */
static void mount_by_hand(const char *remote, const char *mnt, pid_t *server, pid_t *sshfs)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const char *const server_argv[] = {SFTP_SERVER, NULL};
  *server = spawn_on(sv[1], server_argv);
  cleanup_free char *what = xasprintf("localhost:%s", remote);
  const char *const sshfs_argv[] = {"/usr/bin/sshfs", "-f", "-o", "slave", what, mnt, NULL};
  *sshfs = spawn_on(sv[0], sshfs_argv);
  close(sv[0]);
  close(sv[1]);
  /* the kernel signals each change of the mount table (POLLPRI on mountinfo) */
  int mi = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  for (int i = 0; i < 100 && !tm_is_mounted(mnt, NULL, 0); i++) {
    struct pollfd p = {.fd = mi, .events = POLLPRI};
    poll(&p, 1, 100);
  }
  close(mi);
  assert_true(tm_is_mounted(mnt, NULL, 0));
}

static void stale_mounts_are_gone_before_the_plugin_can_take_requests(void **state)
{
  (void)state;
  if (!can_mount())
    skip();
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *remote = xasprintf("%s/remote", dir);
  cleanup_free char *root = xasprintf("%s/mnt", dir);
  cleanup_free char *stale = xasprintf("%s/127.0.0.1/34439", root);
  mkdir(remote, 0700);
  cleanup_free char *mk = xasprintf("%s/127.0.0.1", root);
  mkdir(root, 0700);
  mkdir(mk, 0700);
  mkdir(stale, 0700);
  pid_t server, sshfs;
  mount_by_hand(remote, stale, &server, &sshfs);

  struct tm_config cfg = {.mount_root = root,
                          .sshfs = "sshfs",
                          .linger_ms = 5000,
                          .ping_timeout_ms = 1000,
                          .connect_timeout_ms = 5000,
                          .mount_timeout_ms = 20000,
                          .health_interval_ms = 5000,
                          .health_timeout_ms = 5000,
                          .max_conns = 1};
  struct tm_mounts *m = tm_mounts_new(&cfg);
  /* the socket listens right after this returns: the stale mount must already be gone */
  bool still = tm_is_mounted(stale, NULL, 0);
  tm_mounts_free(m);
  assert_false(still);

  plg_proc_kill(sshfs, SIGTERM);
  plg_proc_kill(server, SIGTERM);
  plg_error_t err = NULL;
  assert_int_equal(plg_proc_wait(sshfs, AWAIT_MS, NULL, &err), 0);
  assert_int_equal(plg_proc_wait(server, AWAIT_MS, NULL, &err), 0);
  assert_int_equal(test_rmtree(dir), 0);
}

/* The state machine, through the SSHFS setting: the fake sshfs mounts EXPORT in place of the
 * daemon's /tel_app_exports (the remote path the plugin asks for, tm_options.h: TM_EXPORT_ROOT) and
 * writes its pid first (exec keeps it), so that a test can end it as a crash would. */
static const char fake_sshfs_text[] = "#!/bin/sh\n"
                                      "echo $$ >'%s'\n"
                                      "for a; do\n"
                                      "  shift\n"
                                      "  case $a in *:/tel_app_exports) a=\"${a%%:*}:%s\" ;; esac\n"
                                      "  set -- \"$@\" \"$a\"\n"
                                      "done\n"
                                      "exec /usr/bin/sshfs \"$@\"\n";

struct fx {
  char *dir, *export_dir, *root, *sshfs, *pid_file;
  struct sftp_server *server;
  struct tm_config cfg;
  struct tm_mounts *m;
  struct tm_opts o; /* the volume: container "app" of 127.0.0.1:<the server's port> */
};

static void write_text(const char *path, const char *text, mode_t mode)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(close(fd), 0);
}

static int setup(void **state)
{
  *state = NULL;
  if (!can_mount())
    return 0;
  struct fx *f = xcalloc(1, sizeof *f);
  f->dir = test_tmpdir();
  f->export_dir = xasprintf("%s/exports", f->dir);
  f->root = xasprintf("%s/mnt", f->dir);
  f->sshfs = xasprintf("%s/sshfs", f->dir);
  f->pid_file = xasprintf("%s/sshfs.pid", f->dir);
  cleanup_free char *app = xasprintf("%s/app", f->export_dir);
  cleanup_free char *hello = xasprintf("%s/hello.txt", app);
  mkdir(f->export_dir, 0755);
  mkdir(app, 0755);
  write_text(hello, "hello", 0644);
  cleanup_free char *script = xasprintf(fake_sshfs_text, f->pid_file, f->export_dir);
  write_text(f->sshfs, script, 0755);
  f->server = sftp_server_start();
  f->cfg = (struct tm_config){.mount_root = f->root,
                              .sshfs = f->sshfs,
                              .linger_ms = 1000,
                              .ping_timeout_ms = 1000,
                              .connect_timeout_ms = 5000,
                              .mount_timeout_ms = 20000,
                              .health_interval_ms = 0, /* the tests that need it turn it on */
                              .health_timeout_ms = 5000,
                              .max_conns = 1};
  f->o = (struct tm_opts){.container = xstrdup("app"),
                          .dir = xstrdup(""),
                          .host = xstrdup("127.0.0.1"),
                          .port = sftp_server_port(f->server)};
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fx *f = *state;
  if (f == NULL)
    return 0;
  tm_mounts_free(f->m);
  sftp_server_free(f->server);
  bool mounted = tm_is_mounted(f->root, NULL, 0);
  if (!mounted) /* never recurse into a live mount */
    assert_int_equal(test_rmtree(f->dir), 0);
  tm_opts_clear(&f->o);
  free(f->dir);
  free(f->export_dir);
  free(f->root);
  free(f->sshfs);
  free(f->pid_file);
  free(f);
  assert_false(mounted);
  return 0;
}

static struct fx *start(void **state)
{
  struct fx *f = *state;
  if (f == NULL)
    skip();
  f->m = tm_mounts_new(&f->cfg);
  return f;
}

static char *state_of(struct fx *f, char **error)
{
  json_t *status = json_object();
  tm_mounts_status(f->m, &f->o, status);
  char *name = xstrdup(json_string_value(json_object_get(status, "state")));
  const char *e = json_string_value(json_object_get(status, "error"));
  if (error != NULL)
    *error = e != NULL ? xstrdup(e) : NULL;
  json_decref(status);
  return name;
}

/* The watchdog and sshfs's own threads move the state: look until it is WANT. */
static void await_state(struct fx *f, const char *want)
{
  int64_t until = plg_now_ms() + AWAIT_MS;
  for (;;) {
    cleanup_free char *now = state_of(f, NULL);
    if (strcmp(now, want) == 0)
      return;
    if (plg_now_ms() > until)
      fail_msg("the export is %s, not %s", now, want);
    plg_sleep_ms(20);
  }
}

static void await_unmounted(struct fx *f)
{
  int64_t until = plg_now_ms() + AWAIT_MS;
  while (tm_is_mounted(f->root, NULL, 0))
    if (plg_now_ms() > until)
      fail_msg("%s is still mounted", f->root);
    else
      plg_sleep_ms(20);
}

static char *ensure(struct fx *f)
{
  char *path = NULL;
  plg_error_t err = NULL;
  if (tm_mounts_ensure(f->m, &f->o, &path, &err) < 0)
    fail_msg("tm_mounts_ensure: %s", err->msg);
  return path;
}

static void assert_reads_hello(const char *volume)
{
  cleanup_free char *path = xasprintf("%s/hello.txt", volume);
  char buf[16] = "";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(read(fd, buf, sizeof buf - 1), 5);
  close(fd);
  assert_string_equal(buf, "hello");
}

static pid_t sshfs_pid(struct fx *f)
{
  FILE *fp = fopen(f->pid_file, "r");
  assert_non_null(fp);
  int pid = 0;
  assert_int_equal(fscanf(fp, "%d", &pid), 1);
  fclose(fp);
  return pid;
}

/* sshfs ends as a crash would; the export is lost, and the watchdog tears the dead mount down. */
static void crash_sshfs(struct fx *f)
{
  assert_int_equal(kill(sshfs_pid(f), SIGKILL), 0);
  await_state(f, "disconnected");
  await_unmounted(f);
  assert_false(tm_mounts_is_up(f->m, &f->o));
}

static void a_mount_serves_the_export_and_its_release_leaves_nothing(void **state)
{
  struct fx *f = start(state);
  cleanup_free char *before = state_of(f, NULL);
  assert_string_equal(before, "idle");
  cleanup_free char *path = ensure(f);
  cleanup_free char *expected = tm_mounts_volume_path(f->m, &f->o);
  assert_string_equal(path, expected);
  cleanup_free char *now = state_of(f, NULL);
  assert_string_equal(now, "mounted");
  assert_true(tm_mounts_is_up(f->m, &f->o));
  assert_reads_hello(path);
  cleanup_free char *written = xasprintf("%s/written.txt", path);
  write_text(written, "from a container", 0644);
  cleanup_free char *arrived = xasprintf("%s/app/written.txt", f->export_dir);
  assert_int_equal(access(arrived, F_OK), 0);

  tm_mounts_release(f->m, &f->o);
  cleanup_free char *after = state_of(f, NULL);
  assert_string_equal(after, "idle");
  assert_false(tm_is_mounted(f->root, NULL, 0));
  cleanup_free char *host_dir = xasprintf("%s/127.0.0.1", f->root);
  assert_int_equal(access(host_dir, F_OK), -1); /* the plugin's own empty directories are gone */
}

static void an_sshfs_that_ends_is_torn_down_and_the_next_mount_starts_another(void **state)
{
  struct fx *f = start(state);
  cleanup_free char *path = ensure(f);
  pid_t first = sshfs_pid(f);
  crash_sshfs(f);
  cleanup_free char *error = NULL;
  cleanup_free char *lost = state_of(f, &error);
  assert_non_null(error);
  assert_non_null(strstr(error, "sshfs"));

  cleanup_free char *again = ensure(f);
  assert_string_equal(again, path);
  assert_true(sshfs_pid(f) != first);
  cleanup_free char *now = state_of(f, NULL);
  assert_string_equal(now, "mounted");
  assert_reads_hello(again);
}

struct comeback {
  struct sftp_server *server;
  int after; /* serve again once this many connections were hung up on */
};

static void *serve_again(void *arg)
{
  struct comeback *c = arg;
  if (!sftp_server_await_connections(c->server, c->after, AWAIT_MS))
    fprintf(stderr, "nobody asked the server again\n");
  sftp_server_set(c->server, SFTP_SERVE);
  return NULL;
}

/* A daemon restarting its port forward answers again within the linger time: the Mount of a lost
 * export probes until then instead of failing at the first silence. */
static void a_mount_after_a_loss_waits_for_a_server_that_comes_back_within_the_linger_time(void **state)
{
  struct fx *f = *state;
  if (f != NULL)
    f->cfg.linger_ms = AWAIT_MS;
  f = start(state);
  cleanup_free char *first = ensure(f);
  sftp_server_set(f->server, SFTP_HANG_UP);
  crash_sshfs(f);
  int before = sftp_server_connections(f->server);
  struct comeback c = {.server = f->server, .after = before + 2}; /* hung up on twice: it retried */
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, serve_again, &c), 0);
  cleanup_free char *path = ensure(f);
  pthread_join(t, NULL);
  assert_true(sftp_server_connections(f->server) > c.after);
  assert_reads_hello(path);
}

static void a_server_silent_for_longer_than_the_linger_time_is_gone_for_good(void **state)
{
  struct fx *f = start(state);
  cleanup_free char *first = ensure(f);
  sftp_server_set(f->server, SFTP_REFUSE);
  crash_sshfs(f);

  char *path = NULL;
  plg_error_t err = NULL;
  assert_int_equal(tm_mounts_ensure(f->m, &f->o, &path, &err), -1);
  cleanup_free char *address = xasprintf("127.0.0.1:%d", f->o.port);
  assert_non_null(strstr(err->msg, address));
  plg_error_release(&err);
  int64_t silent = 0;
  assert_true(tm_mounts_server_gone(f->m, &f->o, &silent));
  assert_true(silent > f->cfg.linger_ms);

  /* Telepresence's next intercept may bring a server back on the port: it is used again */
  sftp_server_set(f->server, SFTP_SERVE);
  assert_false(tm_mounts_server_gone(f->m, &f->o, &silent));
  cleanup_free char *again = ensure(f);
  assert_reads_hello(again);
}

/* sshfs runs with -o reconnect: a connection that ends keeps the mount, which serves again once a
 * check through it (HEALTH_CHECK_INTERVAL) finds the server back; sshfs is never restarted. */
static void a_dropped_connection_is_redialled_and_the_mount_serves_again(void **state)
{
  struct fx *f = *state;
  if (f != NULL)
    f->cfg.health_interval_ms = 200;
  f = start(state);
  cleanup_free char *path = ensure(f);
  pid_t pid = sshfs_pid(f);
  sftp_server_set(f->server, SFTP_REFUSE);
  sftp_server_signal_all(f->server, SIGKILL);
  await_state(f, "reconnecting");
  assert_true(tm_mounts_is_up(f->m, &f->o)); /* containers keep their mount meanwhile */

  int before = sftp_server_connections(f->server);
  sftp_server_set(f->server, SFTP_SERVE);
  await_state(f, "mounted");
  assert_true(sftp_server_connections(f->server) > before);
  assert_int_equal(sshfs_pid(f), pid);
  assert_reads_hello(path);
}

/* A frozen server keeps its connection open and never answers: the check through the mount times
 * out (HEALTH_CHECK_TIMEOUT) and the plugin cuts sshfs's connection, so sshfs redials. */
static void a_frozen_server_is_cut_off_and_sshfs_redials(void **state)
{
  struct fx *f = *state;
  if (f != NULL) {
    f->cfg.health_interval_ms = 200;
    f->cfg.health_timeout_ms = 1000;
  }
  f = start(state);
  cleanup_free char *path = ensure(f);
  pid_t pid = sshfs_pid(f);
  sftp_server_signal_all(f->server, SIGSTOP);
  sftp_server_set(f->server, SFTP_REFUSE); /* holds it in reconnecting while the test looks */
  await_state(f, "reconnecting");
  cleanup_free char *error = NULL;
  cleanup_free char *now = state_of(f, &error);
  assert_non_null(error);
  assert_non_null(strstr(error, "stopped answering"));

  sftp_server_set(f->server, SFTP_SERVE);
  await_state(f, "mounted");
  assert_int_equal(sshfs_pid(f), pid);
  assert_reads_hello(path);
}

/* A Mount must not hang Docker on a frozen server: the lookup of the volume's directory has a
 * deadline, and its timeout breaks the connection off as the health check would. */
static void a_mount_on_a_frozen_server_fails_with_the_address_instead_of_hanging(void **state)
{
  struct fx *f = *state;
  if (f != NULL)
    f->cfg.health_timeout_ms = 1000;
  f = start(state);
  cleanup_free char *first = ensure(f);
  sftp_server_signal_all(f->server, SIGSTOP);

  char *path = NULL;
  plg_error_t err = NULL;
  assert_int_equal(tm_mounts_ensure(f->m, &f->o, &path, &err), -1);
  cleanup_free char *address = xasprintf("127.0.0.1:%d did not answer", f->o.port);
  assert_non_null(strstr(err->msg, address));
  plg_error_release(&err);
  cleanup_free char *now = state_of(f, NULL);
  assert_string_equal(now, "reconnecting");

  cleanup_free char *again = ensure(f); /* sshfs redials to a new, live sftp-server */
  assert_reads_hello(again);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(stale_mounts_are_gone_before_the_plugin_can_take_requests),
      cmocka_unit_test_setup_teardown(a_mount_serves_the_export_and_its_release_leaves_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(an_sshfs_that_ends_is_torn_down_and_the_next_mount_starts_another,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_mount_after_a_loss_waits_for_a_server_that_comes_back_within_the_linger_time, setup, teardown),
      cmocka_unit_test_setup_teardown(a_server_silent_for_longer_than_the_linger_time_is_gone_for_good, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_dropped_connection_is_redialled_and_the_mount_serves_again, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_frozen_server_is_cut_off_and_sshfs_redials, setup, teardown),
      cmocka_unit_test_setup_teardown(a_mount_on_a_frozen_server_fails_with_the_address_instead_of_hanging,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
