/* Typed access to the fields of a request body. A field of the wrong type is a bad request whose
 * message names the field; an absent or null optional field reads as "not given". */
#ifndef PLG_JSON_H
#define PLG_JSON_H

#include "plg_error.h"

#include <jansson.h>
#include <stdbool.h>

void plg_json_decref(json_t **j);
#define cleanup_json __attribute__((cleanup(plg_json_decref)))

/* The returned pointers are borrowed from OBJ. */
int plg_json_string(json_t *obj, const char *key, bool required, const char **out, plg_error_t *err);
int plg_json_object(json_t *obj, const char *key, bool required, json_t **out, plg_error_t *err);
int plg_json_array(json_t *obj, const char *key, bool required, json_t **out, plg_error_t *err);
int plg_json_bool(json_t *obj, const char *key, bool def, bool *out, plg_error_t *err);
/* An object whose values must all be strings (option maps); absent or null gives NULL. */
int plg_json_string_map(json_t *obj, const char *key, json_t **out, plg_error_t *err);

/* json_pack for replies that cannot fail except by running out of memory. */
json_t *plg_json_pack(const char *fmt, ...);

/* "an object", "an array", "a string", "a number", "a boolean" or "null", for messages. */
const char *plg_json_kind(const json_t *j);

#endif
