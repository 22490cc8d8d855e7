/* nrmctl_stream: the streams of tail, top and case (common/nrm_stream.h does the reading). */
#ifndef NRMCTL_STREAM_H
#define NRMCTL_STREAM_H

#include "nrm_stream.h"
#include "nrmctl_common.h"

/* Opens the streams of a command (command names it in messages): of each named service
 * (services[0 .. n_services), which must have both endpoints), or when none is named, of the
 * default five that have them. streams has room for n_services + NRMCTL_SERVICE_COUNT;
 * *n_streams counts those opened (the caller destroys them, even after an error). Returns 0,
 * or NRMCTL_EXIT_USAGE after printing why. The configuration must be loaded. */
int nrmctl_streams_open(nrmctl_t *ctl, const char *command, const char *const *services,
                        int n_services, nrm_stream_t **streams, int *n_streams);

/* The sink's on_problem of nrmctl: one line on stderr ("nrmctl: NAME: MESSAGE"). */
void nrmctl_stream_problem(const char *name, const char *message, void *arg);

/* The sink's on_event of tail: prints ev as a line of proto3 JSON. Returns 0, or -1 when
 * stdout cannot be written (said on stderr). */
int nrmctl_stream_print(const Nrm__V1__Event *ev, void *arg);

#endif
