/* Networks and endpoints, and their persistence: after a plugin restart Docker replays nothing,
 * so a network must still accept containers and an endpoint must still be removable. */
#ifndef TR_TABLE_H
#define TR_TABLE_H

#include "plg_error.h"
#include "tr_addr.h"
#include "tr_options.h"
#include "tr_routes.h"

#include <jansson.h>
#include <stdbool.h>

#define TR_MAX_POOLS 4
#define TR_ID_MAX 64
/* The one size limit of the state file, for saving and for loading: a table the loader would
 * refuse is never written. 16 MiB holds about 300,000 routes (endpoints times routes each). */
#define TR_STATE_MAX_BYTES (16 * 1024 * 1024)

struct tr_session;

/* Every field of an endpoint and of a network is saved, but a network's session. */
struct tr_endpoint {
  char id[TR_ID_MAX + 1];
  char network_id[TR_ID_MAX + 1];
  struct tr_prefix addr4, addr6;
  bool daemon;
  bool joined;
  char *sandbox_key;       /* the container's netns, from Join */
  char src_name[16];       /* the interface the daemon named */
  struct tr_route *routes; /* what the container was given (by Docker at Join, or by a refresh) */
  size_t n_routes;
  struct tr_endpoint *next;
};

struct tr_network {
  char id[TR_ID_MAX + 1];
  struct tr_net_opts opts;
  struct tr_prefix pools[TR_MAX_POOLS];
  size_t n_pools;
  struct tr_prefix gateways[TR_MAX_POOLS];
  size_t n_gateways;
  bool daemon_option_seen; /* some endpoint said daemon=true|false */
  unsigned endpoints_created;
  struct tr_session *session; /* not saved: the daemon connection, made on first use */
  struct tr_network *next;
};

struct tr_table {
  struct tr_network *networks;
  struct tr_endpoint *endpoints;
};

/* Docker's IDs are 64 hex digits; anything else never reaches the table or its file. */
int tr_id_check(const char *field, const char *id, plg_error_t *err);

struct tr_network *tr_table_network(struct tr_table *t, const char *id);
struct tr_endpoint *tr_table_endpoint(struct tr_table *t, const char *id);
struct tr_network *tr_table_add_network(struct tr_table *t, const char *id);
struct tr_endpoint *tr_table_add_endpoint(struct tr_table *t, const char *id, const char *network_id);
void tr_table_remove_network(struct tr_table *t, const char *id);
void tr_table_remove_endpoint(struct tr_table *t, const char *id);
void tr_endpoint_set_routes(struct tr_endpoint *e, const struct tr_route *routes, size_t n);
void tr_table_clear(struct tr_table *t);

json_t *tr_table_to_json(const struct tr_table *t);
/* Takes the entries of a decoded state file (plg_state) into T; each is checked as the request that
 * made it was, and an invalid one is skipped and logged. Returns how many were taken. */
size_t tr_table_from_state(json_t *state, struct tr_table *t);
/* Writes the table atomically, unless its text would exceed MAX_BYTES (TR_STATE_MAX_BYTES): then
 * the file keeps its previous content and the error names both sizes. */
int tr_table_save(const struct tr_table *t, const char *path, size_t max_bytes, plg_error_t *err);
/* Missing: empty. Damaged or over MAX_BYTES: moved aside to "<path>.corrupt-<time>", logged, empty.
 * -1 when it cannot be read now (EIO, EACCES...): it stays, and the plugin must not start. */
int tr_table_load(struct tr_table *t, const char *path, size_t max_bytes, plg_error_t *err);

#endif
