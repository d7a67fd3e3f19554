#include "tm_mountinfo.h"

#include "plg_fs.h"
#include "plg_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOUNTINFO_MAX (8 * 1024 * 1024)

struct mount_line {
  char dev[32]; /* major:minor */
  char mountpoint[4096];
  char fstype[64];
};

/* Fields: id parent major:minor root mountpoint options [optional...] - fstype source super.
 * Mount points escape space, tab, newline and backslash as octal; ours never contain them, and
 * an escaped one simply never equals our path. */
static bool parse_line(const char *line, struct mount_line *m)
{
  if (sscanf(line, "%*s %*s %31s %*s %4095s", m->dev, m->mountpoint) != 2)
    return false;
  const char *sep = strstr(line, " - ");
  if (sep == NULL || sscanf(sep + 3, "%63s", m->fstype) != 1)
    return false;
  return true;
}

static char *next_line(char **cursor)
{
  char *line = *cursor;
  if (line == NULL || *line == '\0')
    return NULL;
  char *nl = strchr(line, '\n');
  if (nl != NULL) {
    *nl = '\0';
    *cursor = nl + 1;
  } else {
    *cursor = line + strlen(line);
  }
  return line;
}

/* The visible mount on PATH: the last line for it, as later mounts cover earlier ones. */
static bool find_line(const char *text, const char *path, struct mount_line *out)
{
  cleanup_free char *copy = xstrdup(text);
  char *cursor = copy, *line;
  bool found = false;
  struct mount_line m;
  while ((line = next_line(&cursor)) != NULL) {
    if (!parse_line(line, &m) || strcmp(m.mountpoint, path) != 0)
      continue;
    found = true;
    *out = m;
  }
  return found;
}

bool tm_mountinfo_find(const char *text, const char *path, char *fstype, size_t fstype_size)
{
  struct mount_line m;
  if (!find_line(text, path, &m))
    return false;
  if (fstype != NULL)
    snprintf(fstype, fstype_size, "%s", m.fstype);
  return true;
}

bool tm_mountinfo_device(const char *text, const char *path, char *dev, size_t dev_size)
{
  struct mount_line m;
  if (!find_line(text, path, &m))
    return false;
  snprintf(dev, dev_size, "%s", m.dev);
  return true;
}

static char *read_mountinfo(void)
{
  char *text = NULL;
  plg_error_t err = NULL;
  if (plg_fs_read_file("/proc/self/mountinfo", MOUNTINFO_MAX, &text, NULL, &err) < 0) {
    plg_error_release(&err);
    return xstrdup("");
  }
  return text;
}

bool tm_is_mounted(const char *path, char *fstype, size_t fstype_size)
{
  cleanup_free char *text = read_mountinfo();
  return tm_mountinfo_find(text, path, fstype, fstype_size);
}

bool tm_mount_device(const char *path, char *dev, size_t dev_size)
{
  cleanup_free char *text = read_mountinfo();
  return tm_mountinfo_device(text, path, dev, dev_size);
}

static int deeper_first(const void *a, const void *b)
{
  size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
  return la < lb ? 1 : la > lb ? -1 : 0;
}

char **tm_mountinfo_below(const char *text, const char *prefix, const char *fstype)
{
  cleanup_free char *copy = xstrdup(text);
  char *cursor = copy, *line;
  size_t n = 0, plen = strlen(prefix);
  char **out = xcalloc(1, sizeof *out);
  struct mount_line m;
  while ((line = next_line(&cursor)) != NULL) {
    if (!parse_line(line, &m) || strcmp(m.fstype, fstype) != 0)
      continue;
    if (strncmp(m.mountpoint, prefix, plen) != 0 || m.mountpoint[plen] != '/')
      continue;
    out = xrealloc(out, (n + 2) * sizeof *out);
    out[n++] = xstrdup(m.mountpoint);
    out[n] = NULL;
  }
  qsort(out, n, sizeof *out, deeper_first);
  return out;
}

char **tm_mountinfo_list_below(const char *prefix, const char *fstype)
{
  cleanup_free char *text = read_mountinfo();
  return tm_mountinfo_below(text, prefix, fstype);
}
