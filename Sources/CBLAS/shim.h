#include <cblas.h>
/* OpenBLAS extension: threads used by level-3 calls. One rank per core under MPI sets it to 1. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
