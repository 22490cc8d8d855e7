/* gateway_static: GET / and /static/FILE from services.gateway.www, never outside it. */
#ifndef GATEWAY_STATIC_H
#define GATEWAY_STATIC_H

#include <microhttpd.h>
#include "gateway.h"

/* Serves url: "/" is index.html, "/static/P" is the file P of the directory (no "..", no
 * hidden files, resolved path inside the directory); anything else 404. */
enum MHD_Result gw_static_serve(gw_t *gw, struct MHD_Connection *conn, const char *url);

/* The Content-Type of a file name by its extension (application/octet-stream when unknown). */
const char *gw_static_type(const char *name);

#endif
