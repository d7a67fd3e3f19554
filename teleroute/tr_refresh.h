/* Live route refresh. Docker installs a container's routes once, at Join, but the cluster's
 * subnets change during a session (a new node brings a new pod subnet). Every interval each joined
 * endpoint asks the daemon again (Join has no side effects) and its container's routes are brought
 * in line: new ones added, vanished ones deleted, nothing else touched. Only endpoints that joined
 * are asked: the real daemon crashes on a Join of an endpoint whose CreateEndpoint failed. The
 * container's namespace is found as tr_netns.h says. One endpoint's failure is logged and retried
 * next round; it never stops others. The refresher's own memory (how each endpoint's namespace was
 * reached, what was said about it) lives on its thread, never in the state. */
#ifndef TR_REFRESH_H
#define TR_REFRESH_H

#include "tr_state.h"

#include <stdint.h>

struct tr_refresh;

/* Starts refreshing ST every INTERVAL_MS on a thread of its own; NULL (logged) when INTERVAL_MS
 * is 0 or the thread cannot start. The refresher ends its round early once ST stops. */
struct tr_refresh *tr_refresh_start(struct tr_state *st, int64_t interval_ms);
/* Joins the refresher, which tr_state_stop must have been asked to end; NULL is fine. */
void tr_refresh_stop(struct tr_refresh *r);

#endif
