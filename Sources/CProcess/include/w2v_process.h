/* Process-level helpers that need C: async-signal-safe stop flags and CRC-32C. */
#ifndef W2V_PROCESS_H
#define W2V_PROCESS_H
#include <stddef.h>
#include <stdint.h>

/* Installs handlers for SIGTERM and SIGUSR1 that only record the signal (async-signal-safe). */
void w2v_install_stop_handlers(void);
/* The last stop signal received (SIGTERM or SIGUSR1), or 0. */
int w2v_stop_signal(void);
void w2v_clear_stop_signal(void);
/* CRC-32C (Castagnoli), as TFRecord framing uses. */
uint32_t w2v_crc32c(const void *data, size_t n);
#endif
