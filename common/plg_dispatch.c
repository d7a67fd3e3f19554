/* From an HTTP request to a plugin handler and back: routing, body checks, and the single place
 * where an error becomes {"Err": "..."}. */
#include "plg_json.h"
#include "plg_log.h"
#include "plg_text.h"
#include "plg_server.h"
#include "plg_util.h"

#include <stdlib.h>
#include <string.h>

/* Error text can quote request bytes (a path, a JSON parser's "near '...'"), and jansson only
 * builds strings from valid UTF-8: keep printable ASCII and replace the rest. */
static json_t *safe_json_string(const char *text)
{
  json_t *s = json_string(text);
  if (s != NULL)
    return s;
  cleanup_free char *copy = xmalloc(strlen(text) + 1);
  return json_string(plg_text_printable(copy, text, strlen(text)));
}

static void respond_json(struct plg_response *resp, int status, json_t *body)
{
  resp->status = status;
  resp->body = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (resp->body == NULL) {
    resp->status = 500;
    resp->body = xstrdup("{\"Err\":\"cannot encode the reply\"}");
  }
}

static void respond_error(struct plg_response *resp, int status, const char *msg)
{
  json_t *body = json_object();
  json_object_set_new(body, "Err", safe_json_string(msg));
  respond_json(resp, status, body);
}

/* Paths are attacker-controlled and may be long: quote at most 64 printable characters. */
static char *printable_path(const char *path)
{
  return plg_text_printable(xmalloc(65), path, 64);
}

static const struct plg_route *find_route(const struct plg_service *svc, const char *call)
{
  for (size_t i = 0; i < svc->n_routes; i++)
    if (strcmp(svc->routes[i].call, call) == 0)
      return &svc->routes[i];
  return NULL;
}

static bool is_blank(const char *body, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t')
      return false;
  return true;
}

/* Parses the body into an object, or answers 400 and returns NULL. */
static json_t *parse_body(const struct plg_route *route, const char *body, size_t len,
                          struct plg_response *resp)
{
  if (is_blank(body, len)) {
    if (route->body_optional)
      return json_object();
    /* Docker retries a call that timed out without its body (moby/moby#39331). */
    cleanup_free char *msg = xasprintf("%s: empty request body (a retried call? Docker resends "
                                       "timed-out calls without their body)",
                                       route->call);
    respond_error(resp, 400, msg);
    return NULL;
  }
  json_error_t jerr;
  json_t *req = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (req == NULL) {
    cleanup_free char *msg = xasprintf("%s: request body is not valid JSON: %s (line %d, column %d)",
                                       route->call, jerr.text, jerr.line, jerr.column);
    respond_error(resp, 400, msg);
    return NULL;
  }
  if (!json_is_object(req)) {
    cleanup_free char *msg =
        xasprintf("%s: request body must be a JSON object, not %s", route->call, plg_json_kind(req));
    json_decref(req);
    respond_error(resp, 400, msg);
    return NULL;
  }
  return req;
}

static void call_handler(const struct plg_service *svc, const struct plg_route *route, json_t *req,
                         struct plg_response *resp)
{
  json_t *reply = NULL;
  plg_error_t err = NULL;
  int rc = route->handler(svc->ctx, req, &reply, &err);
  if (rc < 0) {
    if (reply != NULL)
      json_decref(reply);
    const char *msg = err != NULL ? err->msg : "internal error: handler failed without a reason";
    int status = err != NULL ? err->status : 500;
    if (status == 404)
      plg_debug("%s: %s", route->call, msg);
    else
      plg_warn("%s failed: %s", route->call, msg);
    respond_error(resp, status, msg);
    plg_error_release(&err);
    return;
  }
  plg_error_release(&err);
  if (reply == NULL)
    reply = json_object();
  if (!json_is_object(reply)) {
    json_decref(reply);
    respond_error(resp, 500, "internal error: reply is not an object");
    return;
  }
  respond_json(resp, 200, reply);
}

static void route_request(const struct plg_service *svc, const char *method, const char *path,
                          const char *body, size_t len, struct plg_response *resp)
{
  if (strcmp(method, "POST") != 0) {
    cleanup_free char *m = printable_path(method);
    cleanup_free char *msg = xasprintf("method %s is not allowed: plugin calls are POST", m);
    respond_error(resp, 405, msg);
    return;
  }
  if (len > PLG_MAX_BODY) {
    cleanup_free char *msg =
        xasprintf("request body of %zu bytes exceeds the limit of %d", len, PLG_MAX_BODY);
    respond_error(resp, 413, msg);
    return;
  }
  if (strcmp(path, "/Plugin.Activate") == 0) {
    respond_json(resp, 200, plg_json_pack("{s:[s]}", "Implements", svc->implements));
    return;
  }
  const struct plg_route *route = path[0] == '/' ? find_route(svc, path + 1) : NULL;
  if (route == NULL) {
    cleanup_free char *p = printable_path(path);
    cleanup_free char *msg =
        xasprintf("unknown method \"%s\": this plugin implements %s", p, svc->implements);
    respond_error(resp, 404, msg);
    return;
  }
  json_t *req = parse_body(route, body, len, resp);
  if (req == NULL)
    return;
  call_handler(svc, route, req, resp);
  json_decref(req);
}

void plg_dispatch(const struct plg_service *svc, const char *method, const char *path, const char *body,
                  size_t len, struct plg_response *resp)
{
  int64_t start = plg_now_ms();
  route_request(svc, method, path, body != NULL ? body : "", body != NULL ? len : 0, resp);
  if (plg_log_debug_enabled()) {
    cleanup_free char *m = printable_path(method);
    cleanup_free char *p = printable_path(path);
    plg_debug("%s %s -> %d in %lld ms", m, p, resp->status, (long long)(plg_now_ms() - start));
  }
}
