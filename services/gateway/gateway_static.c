/* gateway_static: static files (see gateway_static.h). */
#include "gateway_static.h"
#include "gateway_http.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_STATIC_PREFIX "/static/"

static const struct {
    const char *ext;
    const char *type;
} s_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *gw_static_type(const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++) {
        size_t n = strlen(s_types[i].ext);
        if (len >= n && strcmp(name + len - n, s_types[i].ext) == 0)
            return s_types[i].type;
    }
    return "application/octet-stream";
}

/* True when rel is a plain relative path: no empty, "." or ".." component, no component
 * starting with a dot, no backslash. */
static bool s_safe(const char *rel)
{
    if (!rel[0] || strchr(rel, '\\'))
        return false;
    const char *c = rel;
    while (*c) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 0 || c[0] == '.')
            return false;
        if (!end)
            break;
        c = end + 1;
        if (!*c)
            return false;
    }
    return true;
}

static enum MHD_Result s_not_found(struct MHD_Connection *conn)
{
    return gw_http_json(conn, MHD_HTTP_NOT_FOUND, json_pack("{s:s}", "error", "not found"));
}

enum MHD_Result gw_static_serve(gw_t *gw, struct MHD_Connection *conn, const char *url)
{
    const char *rel = NULL;
    if (strcmp(url, "/") == 0)
        rel = "index.html";
    else if (strncmp(url, S_STATIC_PREFIX, strlen(S_STATIC_PREFIX)) == 0)
        rel = url + 1; /* "static/..." under www, where the page's files are */
    if (!rel || !s_safe(rel))
        return s_not_found(conn);
    char path[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", gw->www, rel) >= (int)sizeof path ||
        !realpath(gw->www, root) || !realpath(path, real))
        return s_not_found(conn);
    size_t n = strlen(root);
    if (strncmp(real, root, n) != 0 || real[n] != '/')
        return s_not_found(conn); /* a link leading out of the directory */
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return s_not_found(conn);
    }
    struct MHD_Response *response = MHD_create_response_from_fd((size_t)st.st_size, fd);
    if (!response) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", gw_static_type(real));
    MHD_add_response_header(response, "Cache-Control", "no-cache");
    gw_http_secure_headers(response);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return rc;
}
