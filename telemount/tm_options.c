#include "tm_options.h"

#include "plg_net.h"
#include "plg_settings.h"
#include "plg_text.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME 255
#define MAX_DIR 1024
#define MAX_HOST 253

static const char *const known_options = "container, dir, host, port, ro";

int tm_volume_name_check(const char *name, plg_error_t *err)
{
  size_t n = strlen(name);
  if (n < 2 || n > MAX_NAME)
    return plg_error_bad_request(err, "volume name \"%.64s\" must be 2 to %d characters long", name,
                                 MAX_NAME);
  if (!isalnum((unsigned char)name[0]))
    return plg_error_bad_request(err, "volume name \"%.64s\" must start with a letter or digit", name);
  for (const char *p = name; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
      return plg_error_bad_request(err, "volume name \"%.64s\" may only contain [a-zA-Z0-9_.-]", name);
  return 0;
}

static int parse_container(const char *value, char **out, plg_error_t *err)
{
  if (*value == '\0')
    return plg_error_bad_request(err, "option \"container\" must not be empty");
  if (strlen(value) > MAX_NAME)
    return plg_error_bad_request(err, "option \"container\" is longer than %d characters", MAX_NAME);
  if (strcmp(value, ".") == 0 || strcmp(value, "..") == 0)
    return plg_error_bad_request(err, "option \"container\": \"%s\" is not a container name", value);
  for (const char *p = value; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
      return plg_error_bad_request(err, "option \"container\": \"%.64s\" may only contain [a-zA-Z0-9_.-]",
                                   value);
  *out = xstrdup(value);
  return 0;
}

/* Splits on '/', drops empty and "." segments, and refuses "..": the result is a relative path
 * that cannot leave the container's export, whatever the user typed. */
static int parse_dir(const char *value, char **out, plg_error_t *err)
{
  if (strlen(value) > MAX_DIR)
    return plg_error_bad_request(err, "option \"dir\" is longer than %d characters", MAX_DIR);
  if (plg_text_has_control(value))
    return plg_error_bad_request(err, "option \"dir\" contains control characters");
  cleanup_free char *copy = xstrdup(value);
  char *result = xcalloc(1, strlen(value) + 1);
  char *save = NULL;
  for (char *seg = strtok_r(copy, "/", &save); seg != NULL; seg = strtok_r(NULL, "/", &save)) {
    if (strcmp(seg, ".") == 0)
      continue;
    if (strcmp(seg, "..") == 0) {
      free(result);
      return plg_error_bad_request(err, "option \"dir\": \"%.128s\" must not contain \"..\"", value);
    }
    if (*result != '\0')
      strcat(result, "/");
    strcat(result, seg);
  }
  *out = result;
  return 0;
}

static bool is_dns_name(const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > MAX_HOST)
    return false;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    if (!isalnum((unsigned char)c) && c != '-')
      return false;
    if (c == '-' && label == 0)
      return false; /* also keeps "-oProxyCommand=..." from ever looking like a host */
    if (++label > 63)
      return false;
  }
  return s[n - 1] != '-';
}

int tm_host_parse(const char *text, char **normalised, plg_error_t *err)
{
  char ip[INET6_ADDRSTRLEN];
  int family;
  if (plg_net_parse_ip(text, ip, &family)) {
    *normalised = xstrdup(ip);
    return 0;
  }
  if (!is_dns_name(text) || strspn(text, "0123456789.") == strlen(text))
    return plg_error_bad_request(err, "option \"host\": \"%.64s\" is not an IP address or a host name", text);
  *normalised = xstrdup(text);
  for (char *p = *normalised; *p != '\0'; p++)
    *p = (char)tolower((unsigned char)*p);
  return 0;
}

static int parse_ro(const char *value, bool *out, plg_error_t *err)
{
  if (*value == '\0') { /* `-o ro` alone means read-only */
    *out = true;
    return 0;
  }
  plg_error_t inner = NULL;
  if (plg_parse_bool(value, out, &inner) < 0) {
    plg_error_release(&inner);
    return plg_error_bad_request(err, "option \"ro\": \"%.32s\" is not a boolean (true or false)", value);
  }
  return 0;
}

static int parse_one(struct tm_opts *o, const char *key, const char *value, plg_error_t *err)
{
  if (strcmp(key, "container") == 0)
    return parse_container(value, &o->container, err);
  if (strcmp(key, "dir") == 0)
    return parse_dir(value, &o->dir, err);
  if (strcmp(key, "host") == 0) {
    free(o->host);
    o->host = NULL;
    return tm_host_parse(value, &o->host, err);
  }
  if (strcmp(key, "port") == 0)
    return plg_parse_port("port", value, &o->port, err);
  if (strcmp(key, "ro") == 0)
    return parse_ro(value, &o->ro, err);
  return plg_error_bad_request(err, "unknown option \"%.64s\" (valid options: %s)", key, known_options);
}

int tm_opts_parse(json_t *opts, struct tm_opts *out, plg_error_t *err)
{
  memset(out, 0, sizeof *out);
  if (opts != NULL) {
    const char *key;
    json_t *value;
    json_object_foreach(opts, key, value)
    {
      int rc = json_is_string(value) ? parse_one(out, key, json_string_value(value), err)
                                     : plg_error_bad_request(err, "option \"%.64s\" must be a string", key);
      if (rc < 0) {
        tm_opts_clear(out);
        return -1;
      }
    }
  }
  const char *missing = out->container == NULL ? "container" : out->port == 0 ? "port" : NULL;
  if (missing != NULL) {
    tm_opts_clear(out);
    return plg_error_bad_request(err, "option \"%s\" is required (valid options: %s)", missing,
                                 known_options);
  }
  if (out->dir == NULL)
    out->dir = xstrdup("");
  if (out->host == NULL) {
    out->host = xstrdup("localhost");
  }
  return 0;
}

void tm_opts_clear(struct tm_opts *o)
{
  free(o->container);
  free(o->dir);
  free(o->host);
  memset(o, 0, sizeof *o);
}

void tm_opts_copy(struct tm_opts *dst, const struct tm_opts *src)
{
  *dst = *src;
  dst->container = xstrdup(src->container);
  dst->dir = xstrdup(src->dir);
  dst->host = xstrdup(src->host);
}

bool tm_opts_equal(const struct tm_opts *a, const struct tm_opts *b)
{
  return strcmp(a->container, b->container) == 0 && strcmp(a->dir, b->dir) == 0 &&
         strcmp(a->host, b->host) == 0 && a->port == b->port && a->ro == b->ro;
}

bool tm_opts_same_export(const struct tm_opts *a, const struct tm_opts *b)
{
  return strcmp(a->host, b->host) == 0 && a->port == b->port && a->ro == b->ro;
}

char *tm_opts_describe(const struct tm_opts *o)
{
  return xasprintf("container=%s dir=%s host=%s port=%d ro=%s", o->container, o->dir, o->host, o->port,
                   o->ro ? "true" : "false");
}

char *tm_remote_dir(const struct tm_opts *o)
{
  if (*o->dir == '\0')
    return xasprintf(TM_EXPORT_ROOT "/%s", o->container);
  return xasprintf(TM_EXPORT_ROOT "/%s/%s", o->container, o->dir);
}

char *tm_safe_host(const char *host)
{
  char *safe = xstrdup(host);
  for (char *p = safe; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
      *p = '_';
  return safe;
}

char *tm_mount_root(const char *base, const char *host, int port, bool ro)
{
  cleanup_free char *safe = tm_safe_host(host);
  return xasprintf("%s/%s/%d%s", base, safe, port, ro ? "-ro" : "");
}

char *tm_volume_path(const char *mount_root, const struct tm_opts *o)
{
  if (*o->dir == '\0')
    return xasprintf("%s/%s", mount_root, o->container);
  return xasprintf("%s/%s/%s", mount_root, o->container, o->dir);
}
