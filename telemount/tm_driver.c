#include "tm_driver.h"

#include "plg_json.h"
#include "plg_log.h"
#include "plg_util.h"
#include "tm_config.h"
#include "tm_mounts.h"
#include "tm_table.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* how long the shutdown waits for requests the stop did not end (the stopping hook ends those
 * that wait on a server at once) */
#define SHUTDOWN_WAIT_MS 1000

struct tm_ctx {
  struct tm_config cfg;
  char *state_file;
  /* The table. Lock order: tm_ctx.lock -> tm_export_env.lock (tm_export.h) -> tm_sshfs.lock ->
   * tm_relay.lock; never held while a mount is being made or a server probed. */
  pthread_mutex_t lock;
  struct tm_table table;
  struct tm_mounts *mounts;
};

static int save_locked(struct tm_ctx *c, plg_error_t *err)
{
  if (tm_table_save(&c->table, c->state_file, err) < 0)
    return plg_error_wrap(err, "cannot save the volume table");
  return 0;
}

static int request_name(json_t *req, const char **name, plg_error_t *err)
{
  if (plg_json_string(req, "Name", true, name, err) < 0)
    return -1;
  return tm_volume_name_check(*name, err);
}

/* Docker sends 64 hex digits; anything else is refused before it reaches the state file. */
static int request_id(json_t *req, const char **id, plg_error_t *err)
{
  if (plg_json_string(req, "ID", true, id, err) < 0)
    return -1;
  size_t n = strlen(*id);
  if (n == 0 || n > 128)
    return plg_error_bad_request(err, "field \"ID\" must be 1 to 128 characters long");
  for (const char *p = *id; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p))
      return plg_error_bad_request(err, "field \"ID\" must be alphanumeric");
  return 0;
}

/* Copies a volume's options out of the table so that the slow mount runs without the lock. */
static int lookup_opts(struct tm_ctx *c, const char *name, struct tm_opts *o, plg_error_t *err)
{
  pthread_mutex_lock(&c->lock);
  struct tm_volume *v = tm_table_find(&c->table, name);
  if (v != NULL)
    tm_opts_copy(o, &v->opts);
  pthread_mutex_unlock(&c->lock);
  if (v == NULL)
    return plg_error_not_found(err, "no such volume: \"%s\"", name);
  return 0;
}

static size_t volumes_of_export_locked(struct tm_ctx *c, const struct tm_opts *o)
{
  size_t n = 0;
  for (size_t i = 0; i < c->table.n; i++)
    if (tm_opts_same_export(&c->table.vols[i]->opts, o))
      n++;
  return n;
}

/* 1: the same volume exists already; 0: go on; -1: refused. */
static int check_create_locked(struct tm_ctx *c, const char *name, const struct tm_opts *o, plg_error_t *err)
{
  struct tm_volume *v = tm_table_find(&c->table, name);
  if (v != NULL) {
    if (tm_opts_equal(&v->opts, o))
      return 1;
    cleanup_free char *have = tm_opts_describe(&v->opts);
    return plg_error_make(err, 0, "volume \"%s\" already exists with other options (%s)", name, have);
  }
  return 0;
}

/* Takes NAME out of the table for good, but only once the table without it is saved: memory and
 * disk never disagree. The last volume of an export stops its sshfs (outside the lock). Called
 * with the lock held; returns with it held. */
static int take_and_save_locked(struct tm_ctx *c, const char *name, plg_error_t *err)
{
  struct tm_volume *v = tm_table_take(&c->table, name);
  if (save_locked(c, err) < 0) {
    tm_table_put(&c->table, v);
    return -1;
  }
  size_t users = volumes_of_export_locked(c, &v->opts);
  pthread_mutex_unlock(&c->lock);
  if (users == 0)
    tm_mounts_release(c->mounts, &v->opts);
  tm_volume_free(v);
  pthread_mutex_lock(&c->lock);
  return 0;
}

/* After a failed create, stop an sshfs that only this create had started. */
static void release_if_unused(struct tm_ctx *c, const struct tm_opts *o)
{
  pthread_mutex_lock(&c->lock);
  size_t users = volumes_of_export_locked(c, o);
  pthread_mutex_unlock(&c->lock);
  if (users == 0)
    tm_mounts_release(c->mounts, o);
}

static int handle_create(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tm_ctx *c = ctx;
  const char *name;
  json_t *opts;
  struct tm_opts o;
  if (request_name(req, &name, err) < 0 || plg_json_string_map(req, "Opts", &opts, err) < 0 ||
      tm_opts_parse(opts, &o, err) < 0)
    return -1;
  pthread_mutex_lock(&c->lock);
  int rc = check_create_locked(c, name, &o, err);
  pthread_mutex_unlock(&c->lock);
  if (rc != 0) {
    tm_opts_clear(&o);
    return rc < 0 ? -1 : 0;
  }
  /* Connect now: a wrong host, port or directory fails the create with its cause. */
  cleanup_free char *mountpoint = NULL;
  if (tm_mounts_ensure(c->mounts, &o, &mountpoint, err) < 0) {
    release_if_unused(c, &o);
    tm_opts_clear(&o);
    return plg_error_wrap(err, "volume \"%s\"", name);
  }
  pthread_mutex_lock(&c->lock);
  rc = check_create_locked(c, name, &o, err);
  if (rc == 0) {
    tm_table_add(&c->table, name, &o, NULL);
    if (save_locked(c, err) < 0) {
      tm_table_remove(&c->table, name);
      rc = -1;
    }
  }
  pthread_mutex_unlock(&c->lock);
  if (rc < 0)
    release_if_unused(c, &o);
  else
    plg_info("created volume %s (%s)", name, mountpoint);
  tm_opts_clear(&o);
  return rc < 0 ? -1 : 0;
}

static int handle_remove(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tm_ctx *c = ctx;
  const char *name;
  if (request_name(req, &name, err) < 0)
    return -1;
  pthread_mutex_lock(&c->lock);
  struct tm_volume *v = tm_table_find(&c->table, name);
  if (v == NULL) {
    pthread_mutex_unlock(&c->lock);
    return plg_error_not_found(err, "no such volume: \"%s\"", name);
  }
  if (v->n_ids > 0)
    plg_warn("removing volume %s with %zu mount(s) Docker never unmounted", name, v->n_ids);
  int rc = take_and_save_locked(c, name, err);
  pthread_mutex_unlock(&c->lock);
  if (rc == 0)
    plg_info("removed volume %s", name);
  return rc;
}

static int handle_mount(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  struct tm_ctx *c = ctx;
  const char *name, *id;
  struct tm_opts o;
  if (request_name(req, &name, err) < 0 || request_id(req, &id, err) < 0 || lookup_opts(c, name, &o, err) < 0)
    return -1;
  cleanup_free char *mountpoint = NULL;
  int rc = tm_mounts_ensure(c->mounts, &o, &mountpoint, err);
  tm_opts_clear(&o);
  if (rc < 0)
    return plg_error_wrap(err, "volume \"%s\"", name);
  pthread_mutex_lock(&c->lock);
  struct tm_volume *v = tm_table_find(&c->table, name);
  if (v != NULL && tm_volume_add_id(v, id)) {
    plg_error_t save_err = NULL;
    if (save_locked(c, &save_err) < 0) /* the mount works; only its record may be lost */
      plg_warn("%s", save_err->msg);
    plg_error_release(&save_err);
  }
  pthread_mutex_unlock(&c->lock);
  if (v == NULL)
    return plg_error_make(err, 0, "volume \"%s\" was removed while it was being mounted", name);
  *reply = plg_json_pack("{s:s}", "Mountpoint", mountpoint);
  return 0;
}

static int handle_unmount(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tm_ctx *c = ctx;
  const char *name, *id;
  if (request_name(req, &name, err) < 0 || request_id(req, &id, err) < 0)
    return -1;
  pthread_mutex_lock(&c->lock);
  struct tm_volume *v = tm_table_find(&c->table, name);
  int rc = 0;
  if (v == NULL)
    rc = plg_error_not_found(err, "no such volume: \"%s\"", name);
  else if (tm_volume_remove_id(v, id))
    rc = save_locked(c, err);
  pthread_mutex_unlock(&c->lock);
  return rc;
}

static int handle_path(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  struct tm_ctx *c = ctx;
  const char *name;
  struct tm_opts o;
  if (request_name(req, &name, err) < 0 || lookup_opts(c, name, &o, err) < 0)
    return -1;
  cleanup_free char *path =
      tm_mounts_is_up(c->mounts, &o) ? tm_mounts_volume_path(c->mounts, &o) : xstrdup("");
  tm_opts_clear(&o);
  *reply = plg_json_pack("{s:s}", "Mountpoint", path);
  return 0;
}

static json_t *volume_json_locked(struct tm_ctx *c, const struct tm_volume *v, bool with_status)
{
  cleanup_free char *path = tm_mounts_volume_path(c->mounts, &v->opts);
  json_t *j = plg_json_pack("{s:s,s:s,s:s}", "Name", v->name, "Mountpoint", path, "CreatedAt", v->created_at);
  if (!with_status)
    return j;
  cleanup_free char *remote = tm_remote_dir(&v->opts);
  json_t *ids = json_array();
  for (size_t i = 0; i < v->n_ids; i++)
    json_array_append_new(ids, json_string(v->ids[i]));
  json_t *status = plg_json_pack("{s:s,s:i,s:s,s:b,s:o}", "host", v->opts.host, "port", v->opts.port,
                                 "remoteDir", remote, "readOnly", v->opts.ro, "usedBy", ids);
  tm_mounts_status(c->mounts, &v->opts, status);
  json_object_set_new(j, "Status", status);
  return j;
}

/* The rule that lets Telepresence reuse a name (tm_silence_is_final): Docker asks Get before it
 * creates a volume, also when an older plugin holds the name, and reuses what Get still finds.
 * Only local state is let go; the server is never touched. */
static void drop_if_forgotten(struct tm_ctx *c, const char *name)
{
  struct tm_opts o;
  pthread_mutex_lock(&c->lock);
  struct tm_volume *v = tm_table_find(&c->table, name);
  bool candidate = v != NULL && tm_volume_held(v) == 0;
  if (candidate)
    tm_opts_copy(&o, &v->opts);
  pthread_mutex_unlock(&c->lock);
  if (!candidate)
    return;
  int64_t silent_ms = 0;
  bool gone = tm_mounts_server_gone(c->mounts, &o, &silent_ms);
  pthread_mutex_lock(&c->lock);
  v = tm_table_find(&c->table, name);
  plg_error_t err = NULL;
  if (gone && v != NULL && tm_volume_held(v) == 0 && tm_opts_equal(&v->opts, &o)) {
    size_t earlier = v->n_earlier;
    if (take_and_save_locked(c, name, &err) == 0)
      plg_info("let go of volume %s: no container uses it (dead mounts from an earlier run of the "
               "plugin: %zu) and %s:%d has not answered for %lld ms (DISCONNECTED_LINGER_TIME %lld ms); "
               "its name is free again",
               name, earlier, o.host, o.port, (long long)silent_ms, (long long)c->cfg.linger_ms);
    else
      plg_warn("keeping volume %s, whose server is gone: %s", name, err->msg);
  }
  pthread_mutex_unlock(&c->lock);
  plg_error_release(&err);
  tm_opts_clear(&o);
}

static int handle_get(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  struct tm_ctx *c = ctx;
  const char *name;
  if (request_name(req, &name, err) < 0)
    return -1;
  drop_if_forgotten(c, name);
  pthread_mutex_lock(&c->lock);
  struct tm_volume *v = tm_table_find(&c->table, name);
  if (v != NULL)
    *reply = plg_json_pack("{s:o}", "Volume", volume_json_locked(c, v, true));
  pthread_mutex_unlock(&c->lock);
  if (v == NULL)
    return plg_error_not_found(err, "no such volume: \"%s\"", name);
  return 0;
}

static int handle_list(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)req;
  (void)err;
  struct tm_ctx *c = ctx;
  json_t *vols = json_array();
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->table.n; i++)
    json_array_append_new(vols, volume_json_locked(c, c->table.vols[i], false));
  pthread_mutex_unlock(&c->lock);
  *reply = plg_json_pack("{s:o}", "Volumes", vols);
  return 0;
}

static int handle_capabilities(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)err;
  *reply = plg_json_pack("{s:{s:s}}", "Capabilities", "Scope", "local");
  return 0;
}

const struct plg_route tm_routes[TM_N_ROUTES] = {
    {"VolumeDriver.Create", handle_create, false}, {"VolumeDriver.Remove", handle_remove, false},
    {"VolumeDriver.Mount", handle_mount, false},   {"VolumeDriver.Unmount", handle_unmount, false},
    {"VolumeDriver.Path", handle_path, false},     {"VolumeDriver.Get", handle_get, false},
    {"VolumeDriver.List", handle_list, true},      {"VolumeDriver.Capabilities", handle_capabilities, true},
};

int tm_init(void **ctx, plg_error_t *err)
{
  struct tm_ctx *c = xcalloc(1, sizeof *c);
  if (tm_config_load(&c->cfg, err) < 0) {
    free(c);
    return -1;
  }
  c->state_file = tm_config_state_file(&c->cfg);
  pthread_mutex_init(&c->lock, NULL);
  /* Loading is quick and needs no server: Docker asks Get for every volume right after start. */
  if (tm_table_load(&c->table, c->state_file, err) < 0) {
    plg_error_wrap(err, "the volume table cannot be read now; not starting, so that it is not overwritten");
    pthread_mutex_destroy(&c->lock);
    free(c->state_file);
    free(c);
    return -1;
  }
  c->mounts = tm_mounts_new(&c->cfg);
  *ctx = c;
  return 0;
}

void tm_stopping(void *ctx)
{
  struct tm_ctx *c = ctx;
  tm_mounts_stopping(c->mounts);
}

void tm_shutdown(void *ctx)
{
  struct tm_ctx *c = ctx;
  if (c == NULL)
    return;
  tm_mounts_stop(c->mounts); /* every sshfs stopped, every mount removed; the table is saved already */
  if (plg_server_wait_handlers(SHUTDOWN_WAIT_MS) > 0) {
    plg_warn("a request is still running: the plugin's state is left allocated for it");
    return; /* the process ends anyway: freeing what a request still uses would be worse */
  }
  tm_mounts_free(c->mounts);
  tm_table_clear(&c->table);
  pthread_mutex_destroy(&c->lock);
  free(c->state_file);
  free(c);
}
