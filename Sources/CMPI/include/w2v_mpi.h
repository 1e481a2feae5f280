/* w2v_mpi: the only interface between Swift and MPI.
 * Only shim.c includes <mpi.h>; Swift sees plain C types. Every function returns an MPI error code
 * (0 = MPI_SUCCESS) that Swift turns into an error with w2v_mpi_error_string, in one place. */
#ifndef W2V_MPI_H
#define W2V_MPI_H
#include <stddef.h>
#include <stdint.h>

enum { W2V_MPI_FLOAT = 0, W2V_MPI_DOUBLE = 1, W2V_MPI_INT64 = 2, W2V_MPI_BYTE = 3 };
enum { W2V_MPI_SUM = 0, W2V_MPI_MAX = 1, W2V_MPI_MIN = 2 };

/* Initialise with MPI_THREAD_MULTIPLE; *provided receives the thread level granted (0..3). */
int w2v_mpi_init(int *provided);
int w2v_mpi_initialized(void);
int w2v_mpi_finalize(void);
int w2v_mpi_rank(int *rank);
int w2v_mpi_size(int *size);
/* Rank among the processes on this node (MPI_Comm_split_type MPI_COMM_TYPE_SHARED) and their count. */
int w2v_mpi_local_rank(int *local_rank, int *local_size);
/* In-place all-reduce of count elements of dtype with op. */
int w2v_mpi_allreduce(void *buf, int64_t count, int dtype, int op);
int w2v_mpi_bcast(void *buf, int64_t count, int dtype, int root);
/* send: count elements; recv: count * size elements, rank-major. */
int w2v_mpi_allgather(const void *send, void *recv, int64_t count, int dtype);
int w2v_mpi_barrier(void);
void w2v_mpi_abort(int code);
/* Writes MPI's message for code into buf (NUL-terminated). */
void w2v_mpi_error_string(int code, char *buf, int len);
/* Processor (host) name. */
int w2v_mpi_processor_name(char *buf, int len);
#endif
