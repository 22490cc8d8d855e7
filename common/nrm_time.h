/* nrm_time: clocks. Wall-clock milliseconds for timestamps on the wire, monotonic milliseconds
 * for timeouts and latency measurements. */
#ifndef NRM_TIME_H
#define NRM_TIME_H

#include <stdint.h>

/* Milliseconds since the Unix epoch, UTC. */
int64_t nrm_now_ms(void);

/* Milliseconds from an arbitrary fixed point; never goes backwards. */
int64_t nrm_mono_ms(void);

/* Microseconds from the same kind of fixed point, for latency measurements. */
int64_t nrm_mono_us(void);

#endif
