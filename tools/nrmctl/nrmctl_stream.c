/* nrmctl_stream: opening the streams of a command, and nrmctl's sink callbacks. */
#include "nrmctl_stream.h"

/* Adds the stream of service to streams, if its endpoints are configured. Returns 0, or the
 * exit code when they are not and required is set, or the stream cannot be made. */
static int s_add_stream(nrmctl_t *ctl, const char *service, bool required, nrm_stream_t **streams,
                        int *n_streams)
{
    const char *api = nrmctl_endpoint(ctl, service, "api_connect");
    const char *events = nrmctl_endpoint(ctl, service, "events_connect");
    if (!api || !events) {
        if (!required)
            return 0;
        nrmctl_error("no endpoints for service '%s' (services.%s.api_connect, events_connect)",
                     service, service);
        return NRMCTL_EXIT_USAGE;
    }
    nrm_curve_t curve;
    int rc = nrmctl_curve(ctl, service, &curve);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    const char *agency = curve.cert && !ctl->agency_given ? "" : ctl->agency_id;
    nrm_stream_t *stream = nrm_stream_new(service, api, events, agency, &curve, ctl->timeout_ms);
    if (!stream) {
        nrmctl_error("%s: invalid endpoint %s or %s", service, api, events);
        return NRMCTL_EXIT_USAGE;
    }
    streams[(*n_streams)++] = stream;
    return 0;
}

/* Public: the named services, or the configured ones of the default five. */
int nrmctl_streams_open(nrmctl_t *ctl, const char *command, const char *const *services,
                        int n_services, nrm_stream_t **streams, int *n_streams)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_services; i++)
        rc = s_add_stream(ctl, services[i], true, streams, n_streams);
    for (int i = 0; rc == 0 && n_services == 0 && nrmctl_services[i]; i++)
        rc = s_add_stream(ctl, nrmctl_services[i], false, streams, n_streams);
    if (rc == 0 && *n_streams == 0) {
        nrmctl_error("no service to %s: none has endpoints in %s", command, ctl->config_path);
        rc = NRMCTL_EXIT_USAGE;
    }
    return rc;
}

/* Public: one line on stderr. */
void nrmctl_stream_problem(const char *name, const char *message, void *arg)
{
    (void)arg;
    nrmctl_error("%s: %s", name, message);
}

/* Public: one JSON line on stdout. */
int nrmctl_stream_print(const Nrm__V1__Event *ev, void *arg)
{
    (void)arg;
    if (nrmctl_print_message(&ev->base) != 0) {
        nrmctl_error("cannot write to the standard output");
        return -1;
    }
    return 0;
}
