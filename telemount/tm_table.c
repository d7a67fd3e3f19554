#include "tm_table.h"

#include "plg_fs.h"
#include "plg_json.h"
#include "plg_log.h"
#include "plg_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_VERSION 1
#define STATE_MAX_BYTES (16 * 1024 * 1024)

void tm_table_init(struct tm_table *t)
{
  memset(t, 0, sizeof *t);
}

void tm_volume_free(struct tm_volume *v)
{
  free(v->name);
  tm_opts_clear(&v->opts);
  free(v->created_at);
  for (size_t i = 0; i < v->n_ids; i++)
    free(v->ids[i]);
  free(v->ids);
  free(v);
}

void tm_table_clear(struct tm_table *t)
{
  for (size_t i = 0; i < t->n; i++)
    tm_volume_free(t->vols[i]);
  free(t->vols);
  tm_table_init(t);
}

struct tm_volume *tm_table_find(const struct tm_table *t, const char *name)
{
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->vols[i]->name, name) == 0)
      return t->vols[i];
  return NULL;
}

static void append(struct tm_table *t, struct tm_volume *v)
{
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->vols = xrealloc(t->vols, t->cap * sizeof *t->vols);
  }
  t->vols[t->n++] = v;
}

static char *now_rfc3339(void)
{
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return xstrdup(buf);
}

struct tm_volume *tm_table_add(struct tm_table *t, const char *name, const struct tm_opts *opts,
                               const char *created_at)
{
  struct tm_volume *v = xcalloc(1, sizeof *v);
  v->name = xstrdup(name);
  tm_opts_copy(&v->opts, opts);
  v->created_at = created_at != NULL ? xstrdup(created_at) : now_rfc3339();
  append(t, v);
  return v;
}

struct tm_volume *tm_table_take(struct tm_table *t, const char *name)
{
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->vols[i]->name, name) != 0)
      continue;
    struct tm_volume *v = t->vols[i];
    memmove(&t->vols[i], &t->vols[i + 1], (t->n - i - 1) * sizeof *t->vols);
    t->n--;
    return v;
  }
  return NULL;
}

void tm_table_put(struct tm_table *t, struct tm_volume *v)
{
  append(t, v);
}

void tm_table_remove(struct tm_table *t, const char *name)
{
  struct tm_volume *v = tm_table_take(t, name);
  if (v != NULL)
    tm_volume_free(v);
}

bool tm_volume_add_id(struct tm_volume *v, const char *id)
{
  for (size_t i = 0; i < v->n_ids; i++)
    if (strcmp(v->ids[i], id) == 0)
      return false;
  v->ids = xrealloc(v->ids, (v->n_ids + 1) * sizeof *v->ids);
  v->ids[v->n_ids++] = xstrdup(id);
  return true;
}

bool tm_volume_remove_id(struct tm_volume *v, const char *id)
{
  for (size_t i = 0; i < v->n_ids; i++) {
    if (strcmp(v->ids[i], id) != 0)
      continue;
    free(v->ids[i]);
    memmove(&v->ids[i], &v->ids[i + 1], (v->n_ids - i - 1) * sizeof *v->ids);
    v->n_ids--;
    return true;
  }
  return false;
}

/* Options are stored as Docker sent them (normalised), so loading can run them through the same
 * validation as Create. */
static json_t *opts_to_json(const struct tm_opts *o)
{
  json_t *j = plg_json_pack("{s:s,s:s,s:s}", "container", o->container, "host", o->host, "ro",
                            o->ro ? "true" : "false");
  json_object_set_new(j, "port", json_sprintf("%d", o->port));
  if (*o->dir != '\0')
    json_object_set_new(j, "dir", json_string(o->dir));
  return j;
}

json_t *tm_table_to_json(const struct tm_table *t)
{
  json_t *vols = json_array();
  for (size_t i = 0; i < t->n; i++) {
    const struct tm_volume *v = t->vols[i];
    json_t *ids = json_array();
    for (size_t k = 0; k < v->n_ids; k++)
      json_array_append_new(ids, json_string(v->ids[k]));
    json_array_append_new(vols, plg_json_pack("{s:s,s:o,s:s,s:o}", "name", v->name, "options",
                                              opts_to_json(&v->opts), "created_at", v->created_at,
                                              "mount_ids", ids));
  }
  return plg_json_pack("{s:i,s:o}", "version", STATE_VERSION, "volumes", vols);
}

static int volume_from_json(json_t *jv, struct tm_table *t, plg_error_t *err)
{
  const char *name, *created_at;
  json_t *opts, *ids;
  if (!json_is_object(jv))
    return plg_error_make(err, 0, "a volume entry is not an object");
  if (plg_json_string(jv, "name", true, &name, err) < 0 ||
      plg_json_string(jv, "created_at", true, &created_at, err) < 0 ||
      plg_json_string_map(jv, "options", &opts, err) < 0 ||
      plg_json_array(jv, "mount_ids", false, &ids, err) < 0)
    return -1;
  if (tm_volume_name_check(name, err) < 0)
    return -1;
  if (tm_table_find(t, name) != NULL)
    return plg_error_make(err, 0, "volume \"%s\" appears twice", name);
  struct tm_opts o;
  if (tm_opts_parse(opts, &o, err) < 0)
    return plg_error_wrap(err, "volume \"%s\"", name);
  struct tm_volume *v = tm_table_add(t, name, &o, created_at);
  tm_opts_clear(&o);
  size_t i;
  json_t *id;
  json_array_foreach(ids, i, id)
  {
    if (!json_is_string(id))
      return plg_error_make(err, 0, "volume \"%s\": a mount ID is not a string", name);
    tm_volume_add_id(v, json_string_value(id));
  }
  return 0;
}

int tm_table_from_json(json_t *j, struct tm_table *t, plg_error_t *err)
{
  json_t *vols, *version = json_object_get(j, "version");
  if (!json_is_integer(version) || json_integer_value(version) != STATE_VERSION)
    return plg_error_make(err, 0, "unknown state version (expected %d)", STATE_VERSION);
  if (plg_json_array(j, "volumes", true, &vols, err) < 0)
    return -1;
  size_t i;
  json_t *jv;
  json_array_foreach(vols, i, jv)
  {
    if (volume_from_json(jv, t, err) < 0) {
      tm_table_clear(t);
      return -1;
    }
  }
  return 0;
}

int tm_table_save(const struct tm_table *t, const char *path, plg_error_t *err)
{
  cleanup_json json_t *j = tm_table_to_json(t);
  cleanup_free char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
  if (text == NULL)
    return plg_error_make(err, 0, "cannot encode the volume table");
  cleanup_free char *dir = plg_fs_dirname(path);
  if (plg_fs_mkdir_p(dir, 0700, err) < 0)
    return -1;
  return plg_fs_write_atomic(path, text, strlen(text), 0600, err);
}

static void move_aside(const char *path, const char *why)
{
  cleanup_free char *aside = xasprintf("%s.corrupt-%ld", path, (long)time(NULL));
  if (rename(path, aside) == 0)
    plg_error("volume table %s is unusable (%s); moved it to %s and starting with no volumes", path, why,
              aside);
  else
    plg_error("volume table %s is unusable (%s) and cannot be moved aside: %s", path, why, strerror(errno));
}

void tm_table_load(struct tm_table *t, const char *path)
{
  tm_table_init(t);
  cleanup_free char *text = NULL;
  plg_error_t read_err = NULL;
  if (plg_fs_read_file(path, STATE_MAX_BYTES, &text, NULL, &read_err) < 0) {
    bool missing = read_err->errno_ == ENOENT;
    if (!missing)
      move_aside(path, read_err->msg);
    plg_error_release(&read_err);
    return;
  }
  json_error_t jerr;
  cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
  plg_error_t parse_err = NULL;
  if (j == NULL)
    plg_error_make(&parse_err, 0, "not JSON: %s (line %d)", jerr.text, jerr.line);
  else
    tm_table_from_json(j, t, &parse_err);
  if (parse_err != NULL) {
    move_aside(path, parse_err->msg);
    plg_error_release(&parse_err);
    return;
  }
  plg_info("loaded %zu volume(s) from %s", t->n, path);
}
