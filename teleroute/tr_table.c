#include "tr_table.h"

#include "plg_fs.h"
#include "plg_json.h"
#include "plg_log.h"
#include "plg_state.h"
#include "plg_util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_VERSION 1

int tr_id_check(const char *field, const char *id, plg_error_t *err)
{
  size_t n = strlen(id);
  if (n == 0 || n > TR_ID_MAX)
    return plg_error_bad_request(err, "field \"%s\" must be 1 to %d characters long", field, TR_ID_MAX);
  for (const char *p = id; *p != '\0'; p++)
    if (!isalnum((unsigned char)*p))
      return plg_error_bad_request(err, "field \"%s\" must be alphanumeric", field);
  return 0;
}

struct tr_network *tr_table_network(struct tr_table *t, const char *id)
{
  for (struct tr_network *n = t->networks; n != NULL; n = n->next)
    if (strcmp(n->id, id) == 0)
      return n;
  return NULL;
}

struct tr_endpoint *tr_table_endpoint(struct tr_table *t, const char *id)
{
  for (struct tr_endpoint *e = t->endpoints; e != NULL; e = e->next)
    if (strcmp(e->id, id) == 0)
      return e;
  return NULL;
}

struct tr_network *tr_table_add_network(struct tr_table *t, const char *id)
{
  struct tr_network *n = xcalloc(1, sizeof *n);
  snprintf(n->id, sizeof n->id, "%s", id);
  n->next = t->networks;
  t->networks = n;
  return n;
}

struct tr_endpoint *tr_table_add_endpoint(struct tr_table *t, const char *id, const char *network_id)
{
  struct tr_endpoint *e = xcalloc(1, sizeof *e);
  snprintf(e->id, sizeof e->id, "%s", id);
  snprintf(e->network_id, sizeof e->network_id, "%s", network_id);
  e->next = t->endpoints;
  t->endpoints = e;
  return e;
}

static void endpoint_free(struct tr_endpoint *e)
{
  free(e->sandbox_key);
  free(e->routes);
  free(e);
}

void tr_table_remove_network(struct tr_table *t, const char *id)
{
  for (struct tr_network **p = &t->networks; *p != NULL; p = &(*p)->next)
    if (strcmp((*p)->id, id) == 0) {
      struct tr_network *n = *p;
      *p = n->next;
      free(n);
      return;
    }
}

void tr_table_remove_endpoint(struct tr_table *t, const char *id)
{
  for (struct tr_endpoint **p = &t->endpoints; *p != NULL; p = &(*p)->next)
    if (strcmp((*p)->id, id) == 0) {
      struct tr_endpoint *e = *p;
      *p = e->next;
      endpoint_free(e);
      return;
    }
}

void tr_endpoint_set_routes(struct tr_endpoint *e, const struct tr_route *routes, size_t n)
{
  free(e->routes);
  e->routes = xcalloc(n ? n : 1, sizeof *routes);
  if (n > 0)
    memcpy(e->routes, routes, n * sizeof *routes);
  e->n_routes = n;
}

void tr_table_clear(struct tr_table *t)
{
  while (t->networks != NULL) {
    struct tr_network *n = t->networks;
    t->networks = n->next;
    free(n);
  }
  while (t->endpoints != NULL) {
    struct tr_endpoint *e = t->endpoints;
    t->endpoints = e->next;
    endpoint_free(e);
  }
}

static json_t *prefix_json(const struct tr_prefix *p, bool host)
{
  char buf[64];
  tr_prefix_format(p, host, buf, sizeof buf);
  return json_string(buf);
}

static json_t *prefixes_json(const struct tr_prefix *p, size_t n)
{
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, prefix_json(&p[i], false));
  return a;
}

static json_t *network_json(const struct tr_network *n)
{
  return plg_json_pack("{s:s,s:s,s:i,s:I,s:o,s:o,s:b,s:i}", "id", n->id, "host", n->opts.host, "port",
                       n->opts.port, "pid", (json_int_t)n->opts.pid, "pools",
                       prefixes_json(n->pools, n->n_pools), "gateways",
                       prefixes_json(n->gateways, n->n_gateways), "daemon_option_seen", n->daemon_option_seen,
                       "endpoints_created", (int)n->endpoints_created);
}

static json_t *endpoint_json(const struct tr_endpoint *e)
{
  json_t *j = plg_json_pack("{s:s,s:s,s:b,s:b,s:s}", "id", e->id, "network", e->network_id, "daemon",
                            e->daemon, "joined", e->joined, "src_name", e->src_name);
  if (e->addr4.family != 0)
    json_object_set_new(j, "addr4", prefix_json(&e->addr4, false));
  if (e->addr6.family != 0)
    json_object_set_new(j, "addr6", prefix_json(&e->addr6, false));
  if (e->sandbox_key != NULL)
    json_object_set_new(j, "sandbox_key", json_string(e->sandbox_key));
  json_t *routes = json_array();
  for (size_t i = 0; i < e->n_routes; i++) {
    json_t *r = plg_json_pack("{s:o}", "dst", prefix_json(&e->routes[i].dst, false));
    if (e->routes[i].via.family != 0)
      json_object_set_new(r, "via", prefix_json(&e->routes[i].via, true));
    json_array_append_new(routes, r);
  }
  json_object_set_new(j, "routes", routes);
  return j;
}

json_t *tr_table_to_json(const struct tr_table *t)
{
  json_t *nets = json_array(), *eps = json_array();
  for (const struct tr_network *n = t->networks; n != NULL; n = n->next)
    json_array_append_new(nets, network_json(n));
  for (const struct tr_endpoint *e = t->endpoints; e != NULL; e = e->next)
    json_array_append_new(eps, endpoint_json(e));
  return plg_json_pack("{s:i,s:o,s:o}", "version", STATE_VERSION, "networks", nets, "endpoints", eps);
}

static int prefixes_from_json(json_t *a, struct tr_prefix *out, size_t *n, plg_error_t *err)
{
  size_t i;
  json_t *v;
  *n = 0;
  json_array_foreach(a, i, v)
  {
    if (*n == TR_MAX_POOLS || !json_is_string(v) || tr_prefix_parse(json_string_value(v), &out[*n], err) < 0)
      return plg_error_make(err, 0, "a bad prefix list");
    (*n)++;
  }
  return 0;
}

static int network_from_json(json_t *j, struct tr_table *t, plg_error_t *err)
{
  const char *id, *host;
  json_t *pools, *gws;
  if (plg_json_string(j, "id", true, &id, err) < 0 || plg_json_string(j, "host", true, &host, err) < 0 ||
      plg_json_array(j, "pools", true, &pools, err) < 0 ||
      plg_json_array(j, "gateways", true, &gws, err) < 0 || tr_id_check("id", id, err) < 0)
    return -1;
  /* the options go through the same validation as a CreateNetwork */
  cleanup_json json_t *generic = json_object();
  json_object_set_new(generic, "host", json_string(host));
  json_object_set_new(generic, "port", json_sprintf("%lld", json_integer_value(json_object_get(j, "port"))));
  if (json_integer_value(json_object_get(j, "pid")) > 0)
    json_object_set_new(generic, "pid", json_sprintf("%lld", json_integer_value(json_object_get(j, "pid"))));
  struct tr_net_opts opts;
  if (tr_net_opts_parse(generic, &opts, err) < 0)
    return -1;
  if (tr_table_network(t, id) != NULL)
    return plg_error_make(err, 0, "network %.12s appears twice", id);
  struct tr_network *n = tr_table_add_network(t, id);
  n->opts = opts;
  n->daemon_option_seen = json_is_true(json_object_get(j, "daemon_option_seen"));
  n->endpoints_created = (unsigned)json_integer_value(json_object_get(j, "endpoints_created"));
  if (prefixes_from_json(pools, n->pools, &n->n_pools, err) < 0 ||
      prefixes_from_json(gws, n->gateways, &n->n_gateways, err) < 0) {
    tr_table_remove_network(t, id); /* an entry is taken whole or not at all */
    return -1;
  }
  return 0;
}

static int optional_prefix(json_t *j, const char *key, struct tr_prefix *p, plg_error_t *err)
{
  const char *text;
  memset(p, 0, sizeof *p);
  if (plg_json_string(j, key, false, &text, err) < 0)
    return -1;
  if (text == NULL)
    return 0;
  return tr_prefix_parse(text, p, err);
}

static int endpoint_from_json(json_t *j, struct tr_table *t, plg_error_t *err)
{
  const char *id, *net, *src, *key;
  json_t *routes;
  if (plg_json_string(j, "id", true, &id, err) < 0 || plg_json_string(j, "network", true, &net, err) < 0 ||
      plg_json_string(j, "src_name", true, &src, err) < 0 ||
      plg_json_string(j, "sandbox_key", false, &key, err) < 0 ||
      plg_json_array(j, "routes", true, &routes, err) < 0 || tr_id_check("id", id, err) < 0 ||
      tr_id_check("network", net, err) < 0 || strlen(src) > 15)
    return plg_error_make(err, 0, "a bad endpoint entry");
  if (tr_table_endpoint(t, id) != NULL)
    return plg_error_make(err, 0, "endpoint %.12s appears twice", id);
  struct tr_endpoint *e = tr_table_add_endpoint(t, id, net);
  e->daemon = json_is_true(json_object_get(j, "daemon"));
  e->joined = json_is_true(json_object_get(j, "joined"));
  snprintf(e->src_name, sizeof e->src_name, "%s", src);
  if (key != NULL)
    e->sandbox_key = xstrdup(key);
  if (optional_prefix(j, "addr4", &e->addr4, err) < 0 || optional_prefix(j, "addr6", &e->addr6, err) < 0) {
    tr_table_remove_endpoint(t, id); /* an entry is taken whole or not at all */
    return -1;
  }
  size_t n = json_array_size(routes), i;
  struct tr_route *list = xcalloc(n ? n : 1, sizeof *list);
  json_t *r;
  json_array_foreach(routes, i, r)
  {
    if (optional_prefix(r, "dst", &list[i].dst, err) < 0 ||
        optional_prefix(r, "via", &list[i].via, err) < 0 || list[i].dst.family == 0) {
      free(list);
      tr_table_remove_endpoint(t, id);
      return plg_error_make(err, 0, "a bad route of endpoint %s", id);
    }
  }
  tr_endpoint_set_routes(e, list, n);
  free(list);
  return 0;
}

static const char *const state_lists[] = {"networks", "endpoints", NULL};

static struct plg_state_format state_format(size_t max_bytes)
{
  return (struct plg_state_format){"network table", STATE_VERSION, state_lists, max_bytes};
}

static int take_network(json_t *entry, void *arg, plg_error_t *err)
{
  return network_from_json(entry, arg, err);
}

static int take_endpoint(json_t *entry, void *arg, plg_error_t *err)
{
  return endpoint_from_json(entry, arg, err);
}

size_t tr_table_from_state(json_t *state, struct tr_table *t)
{
  struct plg_state_format fmt = state_format(0);
  return plg_state_each(&fmt, state, "networks", take_network, t) +
         plg_state_each(&fmt, state, "endpoints", take_endpoint, t);
}

int tr_table_save(const struct tr_table *t, const char *path, size_t max_bytes, plg_error_t *err)
{
  struct plg_state_format fmt = state_format(max_bytes);
  cleanup_json json_t *j = tr_table_to_json(t);
  return plg_state_save(&fmt, path, j, err);
}

int tr_table_load(struct tr_table *t, const char *path, size_t max_bytes, plg_error_t *err)
{
  memset(t, 0, sizeof *t);
  struct plg_state_format fmt = state_format(max_bytes);
  json_t *state = NULL;
  if (plg_state_load(&fmt, path, &state, err) < 0)
    return -1;
  if (state != NULL)
    plg_info("loaded %zu network(s) and endpoint(s) from %s", tr_table_from_state(state, t), path);
  json_decref(state);
  return 0;
}
