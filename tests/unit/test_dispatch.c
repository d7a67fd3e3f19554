/* The protocol's routing and every error path, called directly without a socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_fs.h"
#include "plg_json.h"
#include "plg_log.h"
#include "plg_server.h"
#include "plg_util.h"
#include "test_http.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int echo(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)err;
  *reply = plg_json_pack("{s:O}", "Got", req);
  return 0;
}

static int failing(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  return plg_error_make(err, 0, "volume \"%s\" broke", "v1");
}

static int need_name(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  const char *name;
  if (plg_json_string(req, "Name", true, &name, err) < 0)
    return -1;
  *reply = plg_json_pack("{s:s}", "Name", name);
  return 0;
}

static int count_keys(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)err;
  *reply = plg_json_pack("{s:i}", "Keys", (int)json_object_size(req));
  return 0;
}

static int bad_reply(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)err;
  *reply = json_array();
  return 0;
}

static int silent_failure(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  (void)err;
  return -1;
}

static int missing(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  return plg_error_not_found(err, "no such volume: \"%s\"", "v9");
}

static int no_reply(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  (void)err;
  return 0;
}

static const struct plg_route routes[] = {
    {"Test.Echo", echo, false},          {"Test.Fail", failing, false},
    {"Test.Name", need_name, false},     {"Test.NoBody", count_keys, true},
    {"Test.BadReply", bad_reply, false}, {"Test.Silent", silent_failure, false},
    {"Test.Nothing", no_reply, false},   {"Test.Missing", missing, false},
};
static const struct plg_service svc = {"TestDriver", routes, sizeof routes / sizeof routes[0], NULL, NULL};

/* Every reply, success or failure, must be a JSON object: Docker decodes all of them. */
static json_t *call_len(const char *method, const char *path, const char *body, size_t len, int *status)
{
  struct plg_response resp = {0};
  plg_dispatch(&svc, method, path, body, len, &resp);
  *status = resp.status;
  assert_non_null(resp.body);
  json_error_t jerr;
  json_t *j = json_loads(resp.body, 0, &jerr);
  assert_non_null(j);
  assert_true(json_is_object(j));
  free(resp.body);
  return j;
}

static json_t *call(const char *method, const char *path, const char *body, int *status)
{
  return call_len(method, path, body, body ? strlen(body) : 0, status);
}

static void assert_err_contains(json_t *reply, const char *needle)
{
  const char *msg = json_string_value(json_object_get(reply, "Err"));
  assert_non_null(msg);
  if (strstr(msg, needle) == NULL)
    fail_msg("error \"%s\" does not contain \"%s\"", msg, needle);
}

static void activate_answers_the_plugin_kind(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Plugin.Activate", "", &status);
  assert_int_equal(status, 200);
  json_t *impl = json_object_get(r, "Implements");
  assert_int_equal(json_array_size(impl), 1);
  assert_string_equal(json_string_value(json_array_get(impl, 0)), "TestDriver");
}

static void a_known_call_reaches_its_handler_with_the_body(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Echo", "{\"Name\":\"v1\",\"Opts\":{\"a\":\"b\"}}\n", &status);
  assert_int_equal(status, 200);
  json_t *got = json_object_get(r, "Got");
  assert_string_equal(json_string_value(json_object_get(got, "Name")), "v1");
  assert_string_equal(json_string_value(json_object_get(json_object_get(got, "Opts"), "a")), "b");
}

static void go_escaped_characters_are_decoded(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Name", "{\"Name\":\"a\\u003cb\\u0026c\"}", &status);
  assert_int_equal(status, 200);
  assert_string_equal(json_string_value(json_object_get(r, "Name")), "a<b&c");
}

static void an_unknown_path_is_404_with_a_json_error(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/VolumeDriver.Nope", "{}", &status);
  assert_int_equal(status, 404);
  assert_err_contains(r, "unknown method \"/VolumeDriver.Nope\"");
  cleanup_json json_t *r2 = call("POST", "Test.Echo", "{}", &status); /* no leading slash */
  assert_int_equal(status, 404);
}

static void a_method_other_than_post_is_405(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("GET", "/Test.Echo", "", &status);
  assert_int_equal(status, 405);
  assert_err_contains(r, "method GET is not allowed");
}

static void a_body_that_is_not_json_is_400(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Echo", "{\"Name\": ", &status);
  assert_int_equal(status, 400);
  assert_err_contains(r, "not valid JSON");
}

static void trailing_garbage_is_400(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Echo", "{} {}", &status);
  assert_int_equal(status, 400);
  assert_err_contains(r, "not valid JSON");
}

static void a_body_that_is_not_an_object_is_400(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Echo", "[1,2]", &status);
  assert_int_equal(status, 400);
  assert_err_contains(r, "must be a JSON object, not an array");
  cleanup_json json_t *r2 = call("POST", "/Test.Echo", "\"x\"", &status);
  assert_int_equal(status, 400);
  assert_err_contains(r2, "not a string");
}

static void duplicate_keys_are_400(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Echo", "{\"Name\":\"a\",\"Name\":\"b\"}", &status);
  assert_int_equal(status, 400);
}

static void an_empty_body_is_400_where_a_body_is_needed(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Echo", "", &status);
  assert_int_equal(status, 400);
  assert_err_contains(r, "empty request body");
  cleanup_json json_t *r2 = call("POST", "/Test.Echo", " \n", &status);
  assert_int_equal(status, 400);
}

static void an_empty_body_is_an_empty_object_where_none_is_needed(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.NoBody", "", &status);
  assert_int_equal(status, 200);
  assert_int_equal(json_integer_value(json_object_get(r, "Keys")), 0);
  cleanup_json json_t *r2 = call("POST", "/Test.NoBody", "{\"a\":1}", &status);
  assert_int_equal(json_integer_value(json_object_get(r2, "Keys")), 1);
}

static void a_body_over_the_limit_is_413(void **state)
{
  (void)state;
  size_t len = PLG_MAX_BODY + 1;
  char *big = xmalloc(len);
  memset(big, ' ', len);
  big[0] = '{';
  big[len - 1] = '}';
  int status;
  cleanup_json json_t *r = call_len("POST", "/Test.Echo", big, len, &status);
  free(big);
  assert_int_equal(status, 413);
  assert_err_contains(r, "exceeds the limit");
}

static void a_handler_error_is_500_with_its_message(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Fail", "{}", &status);
  assert_int_equal(status, 500);
  assert_err_contains(r, "volume \"v1\" broke");
}

static void a_missing_object_is_404_and_not_logged_as_a_failure(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/plugin.log", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_log_open_file(path, &err), 0);
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Missing", "{}", &status);
  assert_int_equal(status, 404);
  cleanup_json json_t *r2 = call("POST", "/Test.Fail", "{}", &status);
  plg_log_close();
  assert_err_contains(r, "no such volume: \"v9\"");
  char *text;
  assert_int_equal(plg_fs_read_file(path, 1 << 20, &text, NULL, &err), 0);
  assert_null(strstr(text, "v9"));
  assert_non_null(strstr(text, "warn: Test.Fail failed"));
  free(text);
  unlink(path);
  rmdir(dir);
}

static void a_missing_field_is_400_naming_it(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Name", "{}", &status);
  assert_int_equal(status, 400);
  assert_err_contains(r, "field \"Name\" is missing");
}

static void a_field_of_the_wrong_type_is_400_naming_it(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Name", "{\"Name\": 42}", &status);
  assert_int_equal(status, 400);
  assert_err_contains(r, "field \"Name\" must be a string, not a number");
}

static void a_handler_that_returns_no_reply_answers_an_empty_object(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Nothing", "{}", &status);
  assert_int_equal(status, 200);
  assert_int_equal(json_object_size(r), 0);
}

static void handler_bugs_become_500_not_crashes(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.BadReply", "{}", &status);
  assert_int_equal(status, 500);
  cleanup_json json_t *r2 = call("POST", "/Test.Silent", "{}", &status);
  assert_int_equal(status, 500);
  assert_err_contains(r2, "internal error");
}

static void invalid_utf8_in_path_or_body_still_gives_a_json_error(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call("POST", "/Test.\xff\xfe\"x", "{}", &status);
  assert_int_equal(status, 404);
  cleanup_json json_t *r2 = call("POST", "/Test.Echo", "{\"a\":\"\xff\"}", &status);
  assert_int_equal(status, 400);
  cleanup_json json_t *r3 = call("POST", "/Test.Echo", "\xc3\x28", &status);
  assert_int_equal(status, 400);
}

static void a_nul_byte_in_the_body_is_400(void **state)
{
  (void)state;
  int status;
  cleanup_json json_t *r = call_len("POST", "/Test.Echo", "{\"a\":\"x\\u0000y\"}", 16, &status);
  assert_int_equal(status, 400);
  cleanup_json json_t *r2 = call_len("POST", "/Test.Echo", "{}\0", 3, &status);
  assert_int_equal(status, 400);
}

static void every_request_is_logged_at_debug_level_with_its_duration(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/log/plugin.log", dir);
  plg_error_t err = NULL;
  assert_int_equal(plg_log_open_file(path, &err), 0);
  plg_log_set_debug(true);
  int status;
  cleanup_json json_t *r = call("POST", "/Test.Echo", "{}", &status);
  plg_log_set_debug(false);
  cleanup_json json_t *r2 = call("POST", "/Test.NoBody", "{}", &status);
  plg_log_close();
  char *text;
  assert_int_equal(plg_fs_read_file(path, 1 << 20, &text, NULL, &err), 0);
  assert_non_null(strstr(text, "debug: POST /Test.Echo -> 200 in "));
  assert_null(strstr(text, "/Test.NoBody")); /* debug off: nothing */
  free(text);
  unlink(path);
  cleanup_free char *logdir = xasprintf("%s/log", dir);
  rmdir(logdir);
  rmdir(dir);
}

int main(void)
{
  plg_log_init("test");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(activate_answers_the_plugin_kind),
      cmocka_unit_test(a_known_call_reaches_its_handler_with_the_body),
      cmocka_unit_test(go_escaped_characters_are_decoded),
      cmocka_unit_test(an_unknown_path_is_404_with_a_json_error),
      cmocka_unit_test(a_method_other_than_post_is_405),
      cmocka_unit_test(a_body_that_is_not_json_is_400),
      cmocka_unit_test(trailing_garbage_is_400),
      cmocka_unit_test(a_body_that_is_not_an_object_is_400),
      cmocka_unit_test(duplicate_keys_are_400),
      cmocka_unit_test(an_empty_body_is_400_where_a_body_is_needed),
      cmocka_unit_test(an_empty_body_is_an_empty_object_where_none_is_needed),
      cmocka_unit_test(a_body_over_the_limit_is_413),
      cmocka_unit_test(a_handler_error_is_500_with_its_message),
      cmocka_unit_test(a_missing_object_is_404_and_not_logged_as_a_failure),
      cmocka_unit_test(a_missing_field_is_400_naming_it),
      cmocka_unit_test(a_field_of_the_wrong_type_is_400_naming_it),
      cmocka_unit_test(a_handler_that_returns_no_reply_answers_an_empty_object),
      cmocka_unit_test(handler_bugs_become_500_not_crashes),
      cmocka_unit_test(invalid_utf8_in_path_or_body_still_gives_a_json_error),
      cmocka_unit_test(a_nul_byte_in_the_body_is_400),
      cmocka_unit_test(every_request_is_logged_at_debug_level_with_its_duration),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
