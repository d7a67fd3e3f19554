#include "plg_main.h"

#include "plg_log.h"
#include "plg_settings.h"
#include "plg_socket.h"
#include "plg_util.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out, const struct plg_plugin *p)
{
  fprintf(out,
          "usage: %s [--socket PATH] [--version] [--help]\n"
          "Docker %s plugin. Listens on /run/docker/plugins/%s.sock unless --socket is given.\n"
          "Settings come from the environment (see the README): DEBUG, LOG_FILE, ...\n",
          p->name, p->implements, p->name);
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(const struct plg_plugin *p, int argc, char **argv, char **socket_path)
{
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 's'},
      {"version", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 's':
      free(*socket_path);
      *socket_path = xstrdup(optarg);
      break;
    case 'v':
      printf("%s %s\n", p->name, p->version);
      return 0;
    case 'h':
      usage(stdout, p);
      return 0;
    default:
      usage(stderr, p);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "%s: unexpected argument \"%s\"\n", p->name, argv[optind]);
    usage(stderr, p);
    return 2;
  }
  if (*socket_path == NULL)
    *socket_path = xasprintf("/run/docker/plugins/%s.sock", p->name);
  return -1;
}

static int common_settings(plg_error_t *err)
{
  bool debug;
  if (plg_setting_bool("DEBUG", false, &debug, err) < 0)
    return -1;
  plg_log_set_debug(debug);
  const char *log_file = plg_setting_string("LOG_FILE", NULL);
  if (log_file != NULL && plg_log_open_file(log_file, err) < 0)
    return -1;
  return 0;
}

/* Signals are taken synchronously by the main thread; every other thread inherits the mask.
 * Children are reaped by plg_proc's reaper thread, not here. */
static void block_signals(sigset_t *set)
{
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, set, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static void wait_for_stop(const sigset_t *set)
{
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(set, &info);
    if (sig < 0)
      continue; /* EINTR */
    if (sig == SIGHUP)
      continue;
    plg_info("received %s, stopping", strsignal(sig));
    return;
  }
}

static int serve(const struct plg_plugin *p, const char *socket_path, const sigset_t *set)
{
  plg_error_t err = NULL;
  void *ctx = NULL;
  if (p->init != NULL && p->init(&ctx, &err) < 0) {
    plg_error("cannot start: %s", err->msg);
    plg_error_release(&err);
    return 1;
  }
  int fd = plg_socket_listen(socket_path, &err);
  struct plg_service svc = {p->implements, p->routes, p->n_routes, ctx, p->stopping};
  struct plg_server *srv = NULL;
  if (fd < 0 || plg_server_start(&svc, fd, NULL, &srv, &err) < 0) {
    plg_error("cannot serve: %s", err->msg);
    plg_error_release(&err);
    if (fd >= 0) {
      close(fd);
      unlink(socket_path);
    }
    if (p->shutdown != NULL)
      p->shutdown(ctx);
    return 1;
  }
  plg_info("listening on %s", socket_path);
  wait_for_stop(set);
  /* stopping hook, then the HTTP server; the plugin's own cleanup comes last */
  int left = plg_server_stop(srv, PLG_STOP_GRACE_MS);
  unlink(socket_path);
  if (left > 0)
    plg_warn("%d handler(s) still running after the stop; their replies are dropped", left);
  if (p->shutdown != NULL)
    p->shutdown(ctx);
  plg_info("stopped");
  return 0;
}

int plg_main(const struct plg_plugin *p, int argc, char **argv)
{
  cleanup_free char *socket_path = NULL;
  int status = parse_args(p, argc, argv, &socket_path);
  if (status >= 0)
    return status;

  /* One malloc arena for all threads. libmicrohttpd serves each connection on a thread of its
   * own, and glibc gives threads arenas of their own (up to 8 per CPU) which keep their pages
   * when the thread is gone: 50 endpoints joined at once left teleroute 1.2 MB more anonymous
   * memory with the default, 0.5 MB with one arena (bench/README.md, "Footprint"). The threads
   * spend their time waiting for dockerd, sshfs or the daemon, not in malloc. */
  mallopt(M_ARENA_MAX, 1);
  plg_log_init(p->name);
  sigset_t set;
  block_signals(&set);
  plg_error_t err = NULL;
  if (common_settings(&err) < 0) {
    plg_error("cannot start: %s", err->msg);
    plg_error_release(&err);
    return 1;
  }
  plg_info("%s %s starting (pid %ld)", p->name, p->version, (long)getpid());
  status = serve(p, socket_path, &set);
  plg_log_close();
  return status;
}
