/* Volume options from `docker volume create -o ...`: validation, and the paths they lead to.
 * Everything the user types is hostile: nothing here may become an sshfs option or leave the
 * export directory. */
#ifndef TM_OPTIONS_H
#define TM_OPTIONS_H

#include "plg_error.h"

#include <jansson.h>
#include <stdbool.h>

#define TM_EXPORT_ROOT "/tel_app_exports"

struct tm_opts {
  char *container; /* one path segment */
  char *dir;       /* relative path, normalised ("" when not given): "var/run/secrets" */
  char *host;      /* normalised: IP literals in canonical form without brackets */
  int port;
  bool ro;
};

/* Docker's own rule for local volume names, which also keeps names safe in paths and logs. */
int tm_volume_name_check(const char *name, plg_error_t *err);

/* OPTS is Docker's Opts map (NULL when none was given). */
int tm_opts_parse(json_t *opts, struct tm_opts *out, plg_error_t *err);
void tm_opts_clear(struct tm_opts *o);
void tm_opts_copy(struct tm_opts *dst, const struct tm_opts *src);
bool tm_opts_equal(const struct tm_opts *a, const struct tm_opts *b);
/* True when A and B are volumes of one export: the same host, port and read-only flag, which one
 * sshfs serves. */
bool tm_opts_same_export(const struct tm_opts *a, const struct tm_opts *b);
/* "container=echo-easy dir=var/run host=localhost port=34439 ro=false", for messages. */
char *tm_opts_describe(const struct tm_opts *o);

/* Host syntax: an IPv4 or IPv6 literal (brackets allowed) or a plain DNS name. An IPv4-mapped
 * IPv6 address ("::ffff:172.17.0.2") is the IPv4 address. */
int tm_host_parse(const char *text, char **normalised, plg_error_t *err);

/* The remote directory: "/tel_app_exports/<container>[/<dir>]". */
char *tm_remote_dir(const struct tm_opts *o);
/* A host as a directory name: only [A-Za-z0-9_.-] ("::1" -> "__1"). */
char *tm_safe_host(const char *host);
/* Where the sshfs of HOST:PORT is mounted: "<base>/<safe host>/<port>", or "<port>-ro" for the
 * read-only one: read-only and writable volumes of one port are served by two sshfs. */
char *tm_mount_root(const char *base, const char *host, int port, bool ro);
/* A volume's mountpoint inside its sshfs mount: "<mount root>/<container>[/<dir>]". */
char *tm_volume_path(const char *mount_root, const struct tm_opts *o);

#endif
