#include "nrm_time.h"

#include <time.h>

static int64_t s_clock_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t nrm_now_ms(void)
{
    return s_clock_us(CLOCK_REALTIME) / 1000;
}

int64_t nrm_mono_ms(void)
{
    return s_clock_us(CLOCK_MONOTONIC) / 1000;
}

int64_t nrm_mono_us(void)
{
    return s_clock_us(CLOCK_MONOTONIC);
}
