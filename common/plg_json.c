#include "plg_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void plg_json_decref(json_t **j)
{
  if (*j != NULL)
    json_decref(*j);
}

static const char *type_name(const json_t *j)
{
  switch (json_typeof(j)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
    return "null";
  }
  return "unknown";
}

/* Looks KEY up; 1 when present and not null, 0 when absent (or null, which Go treats as absent),
 * -1 when it is required and missing. */
static int lookup(json_t *obj, const char *key, bool required, json_t **out, plg_error_t *err)
{
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v)) {
    *out = NULL;
    if (required)
      return plg_error_bad_request(err, "field \"%s\" is missing", key);
    return 0;
  }
  *out = v;
  return 1;
}

static int wrong_type(const char *key, const char *expected, const json_t *got, plg_error_t *err)
{
  return plg_error_bad_request(err, "field \"%s\" must be %s, not %s", key, expected, type_name(got));
}

int plg_json_string(json_t *obj, const char *key, bool required, const char **out, plg_error_t *err)
{
  json_t *v;
  int found = lookup(obj, key, required, &v, err);
  *out = NULL;
  if (found <= 0)
    return found;
  if (!json_is_string(v))
    return wrong_type(key, "a string", v, err);
  *out = json_string_value(v);
  return 0;
}

int plg_json_object(json_t *obj, const char *key, bool required, json_t **out, plg_error_t *err)
{
  json_t *v;
  int found = lookup(obj, key, required, &v, err);
  *out = NULL;
  if (found <= 0)
    return found;
  if (!json_is_object(v))
    return wrong_type(key, "an object", v, err);
  *out = v;
  return 0;
}

int plg_json_array(json_t *obj, const char *key, bool required, json_t **out, plg_error_t *err)
{
  json_t *v;
  int found = lookup(obj, key, required, &v, err);
  *out = NULL;
  if (found <= 0)
    return found;
  if (!json_is_array(v))
    return wrong_type(key, "an array", v, err);
  *out = v;
  return 0;
}

int plg_json_bool(json_t *obj, const char *key, bool def, bool *out, plg_error_t *err)
{
  json_t *v;
  *out = def;
  int found = lookup(obj, key, false, &v, err);
  if (found <= 0)
    return found;
  if (!json_is_boolean(v))
    return wrong_type(key, "a boolean", v, err);
  *out = json_is_true(v);
  return 0;
}

int plg_json_string_map(json_t *obj, const char *key, json_t **out, plg_error_t *err)
{
  json_t *map;
  if (plg_json_object(obj, key, false, &map, err) < 0)
    return -1;
  *out = NULL;
  if (map == NULL)
    return 0;
  const char *k;
  json_t *v;
  json_object_foreach(map, k, v)
  {
    if (!json_is_string(v))
      return plg_error_bad_request(err, "field \"%s\": value of \"%s\" must be a string, not %s", key, k,
                                   type_name(v));
  }
  *out = map;
  return 0;
}

json_t *plg_json_pack(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  json_error_t jerr;
  json_t *j = json_vpack_ex(&jerr, 0, fmt, ap);
  va_end(ap);
  if (j == NULL) {
    /* Only a programming error (bad format) or exhaustion gets here. */
    fprintf(stderr, "fatal: json_pack(\"%s\"): %s\n", fmt, jerr.text);
    abort();
  }
  return j;
}

const char *plg_json_kind(const json_t *j)
{
  if (json_is_object(j))
    return "an object";
  if (json_is_array(j))
    return "an array";
  if (json_is_string(j))
    return "a string";
  if (json_is_number(j))
    return "a number";
  if (json_is_boolean(j))
    return "a boolean";
  return "null";
}
