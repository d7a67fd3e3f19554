#include "tm_table.h"

#include "plg_fs.h"
#include "plg_json.h"
#include "plg_log.h"
#include "plg_state.h"
#include "plg_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define STATE_VERSION 1

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

static ssize_t find_id(const struct tm_volume *v, const char *id)
{
  for (size_t i = 0; i < v->n_ids; i++)
    if (strcmp(v->ids[i], id) == 0)
      return (ssize_t)i;
  return -1;
}

/* Removes entry I, keeping the order: earlier-run IDs stay in front. */
static void drop_id_at(struct tm_volume *v, size_t i)
{
  free(v->ids[i]);
  memmove(&v->ids[i], &v->ids[i + 1], (v->n_ids - i - 1) * sizeof *v->ids);
  v->n_ids--;
  if (i < v->n_earlier)
    v->n_earlier--;
}

bool tm_volume_add_id(struct tm_volume *v, const char *id)
{
  ssize_t at = find_id(v, id);
  if (at >= 0 && (size_t)at >= v->n_earlier)
    return false;
  if (at >= 0)
    drop_id_at(v, (size_t)at);
  v->ids = xrealloc(v->ids, (v->n_ids + 1) * sizeof *v->ids);
  v->ids[v->n_ids++] = xstrdup(id);
  return at < 0;
}

bool tm_volume_remove_id(struct tm_volume *v, const char *id)
{
  ssize_t at = find_id(v, id);
  if (at < 0)
    return false;
  drop_id_at(v, (size_t)at);
  return true;
}

size_t tm_volume_held(const struct tm_volume *v)
{
  return v->n_ids - v->n_earlier;
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

static const char *const state_lists[] = {"volumes", NULL};
static const struct plg_state_format state_format = {"volume table", STATE_VERSION, state_lists, 0};

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

/* One entry of the file, checked as if Docker had sent it (plg_state_entry_fn). */
static int volume_from_json(json_t *jv, void *arg, plg_error_t *err)
{
  struct tm_table *t = arg;
  const char *name, *created_at;
  json_t *opts, *ids;
  if (plg_json_string(jv, "name", true, &name, err) < 0 ||
      plg_json_string(jv, "created_at", true, &created_at, err) < 0 ||
      plg_json_string_map(jv, "options", &opts, err) < 0 ||
      plg_json_array(jv, "mount_ids", false, &ids, err) < 0)
    return -1;
  if (tm_volume_name_check(name, err) < 0)
    return -1;
  if (tm_table_find(t, name) != NULL)
    return plg_error_make(err, 0, "volume \"%s\" appears twice", name);
  size_t i;
  json_t *id;
  json_array_foreach(ids, i, id)
  {
    if (!json_is_string(id))
      return plg_error_make(err, 0, "volume \"%s\": a mount ID is not a string", name);
  }
  struct tm_opts o;
  if (tm_opts_parse(opts, &o, err) < 0)
    return plg_error_wrap(err, "volume \"%s\"", name);
  struct tm_volume *v = tm_table_add(t, name, &o, created_at);
  tm_opts_clear(&o);
  json_array_foreach(ids, i, id)
  {
    tm_volume_add_id(v, json_string_value(id));
  }
  v->n_earlier = v->n_ids;
  return 0;
}

int tm_table_save(const struct tm_table *t, const char *path, plg_error_t *err)
{
  cleanup_json json_t *j = tm_table_to_json(t);
  return plg_state_save(&state_format, path, j, err);
}

size_t tm_table_from_state(json_t *state, struct tm_table *t)
{
  return plg_state_each(&state_format, state, "volumes", volume_from_json, t);
}

int tm_table_load(struct tm_table *t, const char *path, plg_error_t *err)
{
  tm_table_init(t);
  json_t *state = NULL;
  if (plg_state_load(&state_format, path, &state, err) < 0)
    return -1;
  if (state != NULL)
    plg_info("loaded %zu volume(s) from %s", tm_table_from_state(state, t), path);
  json_decref(state);
  return 0;
}
