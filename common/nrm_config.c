#include "nrm_alloc.h"
#include "nrm_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NRM_CONFIG_PATH_MAX 256
#define NRM_CONFIG_INCLUDE_DEPTH 8

struct nrm_config_t {
    char *path;
    json_t *root;
    json_t *overrides; /* every environment value handed out, kept alive until destroy */
    json_t *directory; /* run-time agencies (nrm_config_set_directory), or NULL */
};

/* Loads one JSON object file. Returns a new reference, or NULL with err set. */
static json_t *s_load_object(const char *path, nrm_error_t *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, "config", "configuration %s: line %d: %s", path,
                 jerr.line, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        nrm_fail(err, NRM_FAILED_PRECONDITION, "config", "configuration %s: not an object", path);
        return NULL;
    }
    return root;
}

/* Merges src into dst: objects recursively, arrays concatenated, anything else must not be
 * set twice. Returns 0, or -1 with err naming the key. */
static int s_merge(json_t *dst, json_t *src, const char *file, nrm_error_t *err)
{
    const char *key;
    json_t *value;
    json_object_foreach(src, key, value)
    {
        json_t *have = json_object_get(dst, key);
        if (!have) {
            json_object_set(dst, key, value);
        } else if (json_is_object(have) && json_is_object(value)) {
            if (s_merge(have, value, file, err) != 0)
                return -1;
        } else if (json_is_array(have) && json_is_array(value)) {
            json_array_extend(have, value);
        } else {
            nrm_fail(err, NRM_FAILED_PRECONDITION, "config", "configuration %s: '%s' set twice",
                     file, key);
            return -1;
        }
    }
    return 0;
}

/* Merges every file named by the root's "include" list (paths relative to the including
 * file's directory unless absolute), each after its own includes. Returns 0, or -1 with err set. */
static int s_includes(json_t *root, const char *path, int depth, nrm_error_t *err)
{
    json_t *list = json_object_get(root, "include");
    if (!list)
        return 0;
    if (depth > NRM_CONFIG_INCLUDE_DEPTH) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, "config",
                 "configuration %s: includes nested too deeply", path);
        return -1;
    }
    char dir[NRM_CONFIG_PATH_MAX * 4];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *name = json_string_value(item);
        char file[NRM_CONFIG_PATH_MAX * 8];
        if (!name) {
            nrm_fail(err, NRM_FAILED_PRECONDITION, "config", "include entries must be paths");
            return -1;
        }
        if (name[0] == '/')
            snprintf(file, sizeof file, "%s", name);
        else
            snprintf(file, sizeof file, "%s/%s", dir, name);
        json_t *part = s_load_object(file, err);
        int rc = part ? s_includes(part, file, depth + 1, err) : -1;
        if (rc == 0) {
            json_object_del(part, "include"); /* resolved against its own directory above */
            rc = s_merge(root, part, file, err);
        }
        json_decref(part);
        if (rc != 0)
            return -1;
    }
    return 0;
}

nrm_config_t *nrm_config_load(const char *path, nrm_error_t *err)
{
    json_t *root = s_load_object(path, err);
    if (!root)
        return NULL;
    if (s_includes(root, path, 0, err) != 0) {
        json_decref(root);
        return NULL;
    }
    nrm_config_t *self = nrm_xcalloc(1, sizeof *self);
    self->path = nrm_xstrdup(path);
    self->root = root;
    self->overrides = json_array();
    return self;
}

void nrm_config_destroy(nrm_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_config_t *self = *self_p;
    json_decref(self->root);
    json_decref(self->overrides);
    json_decref(self->directory);
    free(self->path);
    free(self);
    *self_p = NULL;
}

/* Returns the environment override for path (NRM_ + upper-cased path), or NULL. */
static const char *s_env_override(const char *path)
{
    char name[NRM_CONFIG_PATH_MAX + 8] = "NRM_";
    size_t n = strlen(name);
    for (const char *p = path; *p && n + 1 < sizeof name; p++)
        name[n++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    name[n] = '\0';
    return getenv(name);
}

json_t *nrm_config_get(const nrm_config_t *self, const char *path)
{
    char buf[NRM_CONFIG_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *node = self->root;
    char *save = NULL;
    for (char *key = strtok_r(buf, ".", &save); key && node; key = strtok_r(NULL, ".", &save))
        node = json_is_object(node) ? json_object_get(node, key) : NULL;
    return node;
}

const char *nrm_config_string(nrm_config_t *self, const char *path, const char *dflt)
{
    const char *env = s_env_override(path);
    if (env) {
        /* pointers handed out earlier stay valid: reuse an equal value or keep a new one */
        size_t i;
        json_t *kept;
        json_array_foreach(self->overrides, i, kept)
        {
            if (strcmp(json_string_value(kept), env) == 0)
                return json_string_value(kept);
        }
        kept = json_string_nocheck(env);
        if (json_array_append_new(self->overrides, kept) != 0)
            return dflt;
        return json_string_value(kept);
    }
    json_t *v = nrm_config_get(self, path);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

int64_t nrm_config_int(nrm_config_t *self, const char *path, int64_t dflt)
{
    const char *env = s_env_override(path);
    if (env) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(env, &end, 10);
        return (end && *end == '\0' && end != env && errno == 0) ? (int64_t)v : dflt;
    }
    json_t *v = nrm_config_get(self, path);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* Returns the element of array `list` whose member `key` equals value, or NULL. Borrowed. */
static json_t *s_find_by(json_t *list, const char *key, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *v = json_string_value(json_object_get(item, key));
        if (v && value && strcmp(v, value) == 0)
            return item;
    }
    return NULL;
}

bool nrm_config_region_known(const nrm_config_t *self, const char *code)
{
    return s_find_by(json_object_get(self->root, "regions"), "code", code) != NULL;
}

json_t *nrm_config_agency(const nrm_config_t *self, const char *agency_id)
{
    json_t *found = s_find_by(json_object_get(self->root, "agencies"), "id", agency_id);
    return found ? found : s_find_by(self->directory, "id", agency_id);
}

json_t *nrm_config_file_agency(const nrm_config_t *self, const char *agency_id)
{
    return s_find_by(json_object_get(self->root, "agencies"), "id", agency_id);
}

/* The run-time agencies not shadowed by the file's, counted; *at set to the i-th when i < n. */
static size_t s_directory_visible(const nrm_config_t *self, size_t i, json_t **at)
{
    json_t *file = json_object_get(self->root, "agencies");
    size_t visible = 0, k;
    json_t *entry;
    json_array_foreach(self->directory, k, entry)
    {
        const char *id = json_string_value(json_object_get(entry, "id"));
        if (!id || s_find_by(file, "id", id))
            continue;
        if (at && visible == i) {
            *at = entry;
            return visible + 1;
        }
        visible++;
    }
    return visible;
}

size_t nrm_config_agency_count(const nrm_config_t *self)
{
    return json_array_size(json_object_get(self->root, "agencies")) +
           s_directory_visible(self, 0, NULL);
}

json_t *nrm_config_agency_at(const nrm_config_t *self, size_t i)
{
    json_t *file = json_object_get(self->root, "agencies");
    size_t in_file = json_array_size(file);
    if (i < in_file)
        return json_array_get(file, i);
    json_t *at = NULL;
    s_directory_visible(self, i - in_file, &at);
    return at;
}

void nrm_config_set_directory(nrm_config_t *self, json_t *agencies)
{
    json_decref(self->directory);
    self->directory = json_is_array(agencies) ? agencies : NULL;
    if (agencies && !self->directory)
        json_decref(agencies);
}

json_t *nrm_config_directory(const nrm_config_t *self)
{
    return self->directory;
}

const char *nrm_config_agency_type(const nrm_config_t *self, const char *agency_id)
{
    return json_string_value(json_object_get(nrm_config_agency(self, agency_id), "type"));
}

const char *nrm_config_path(const nrm_config_t *self)
{
    return self->path;
}
