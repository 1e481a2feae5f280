#include "w2v_mpi.h"
#include <mpi.h>
#include <string.h>
#include <stdlib.h>

static MPI_Datatype dtype_of(int d) {
    switch (d) {
    case W2V_MPI_FLOAT: return MPI_FLOAT;
    case W2V_MPI_DOUBLE: return MPI_DOUBLE;
    case W2V_MPI_INT64: return MPI_INT64_T;
    default: return MPI_BYTE;
    }
}
static MPI_Op op_of(int o) {
    switch (o) {
    case W2V_MPI_MAX: return MPI_MAX;
    case W2V_MPI_MIN: return MPI_MIN;
    default: return MPI_SUM;
    }
}
static size_t dsize(int d) { return d == W2V_MPI_FLOAT ? 4 : (d == W2V_MPI_BYTE ? 1 : 8); }

/* MPI counts are int: large buffers go in chunks of at most 2^30 elements. */
#define CHUNK ((int64_t)1 << 30)

int w2v_mpi_init(int *provided) {
    int flag = 0;
    /* The gradient all-reduce runs on a background thread; Open MPI's default busy-polling while it waits
     * for the other ranks steals the core from backward (2 ranks on 2 cores scaled 1.74-1.82x instead of
     * 1.92x). Yield when idle unless the user chose otherwise. */
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    MPI_Initialized(&flag);
    if (flag) { MPI_Query_thread(provided); return MPI_SUCCESS; }
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, provided);
    if (rc == MPI_SUCCESS) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return rc;
}
int w2v_mpi_initialized(void) { int f = 0; MPI_Initialized(&f); return f; }
int w2v_mpi_finalize(void) {
    int f = 0; MPI_Finalized(&f);
    if (f) return MPI_SUCCESS;
    return MPI_Finalize();
}
int w2v_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
int w2v_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }
int w2v_mpi_local_rank(int *local_rank, int *local_size) {
    MPI_Comm node;
    int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Comm_rank(node, local_rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(node, local_size);
    MPI_Comm_free(&node);
    return rc;
}
int w2v_mpi_allreduce(void *buf, int64_t count, int dtype, int op) {
    char *p = (char *)buf;
    for (int64_t off = 0; off < count; off += CHUNK) {
        int n = (int)(count - off < CHUNK ? count - off : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, p + off * dsize(dtype), n, dtype_of(dtype), op_of(op), MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}
int w2v_mpi_bcast(void *buf, int64_t count, int dtype, int root) {
    char *p = (char *)buf;
    for (int64_t off = 0; off < count; off += CHUNK) {
        int n = (int)(count - off < CHUNK ? count - off : CHUNK);
        int rc = MPI_Bcast(p + off * dsize(dtype), n, dtype_of(dtype), root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}
int w2v_mpi_allgather(const void *send, void *recv, int64_t count, int dtype) {
    if (count > CHUNK) return MPI_ERR_COUNT;
    return MPI_Allgather(send, (int)count, dtype_of(dtype), recv, (int)count, dtype_of(dtype), MPI_COMM_WORLD);
}
int w2v_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
void w2v_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
void w2v_mpi_error_string(int code, char *buf, int len) {
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, msg, &n) != MPI_SUCCESS) { strncpy(msg, "unknown MPI error", sizeof msg); }
    msg[MPI_MAX_ERROR_STRING - 1] = 0;
    strncpy(buf, msg, (size_t)len);
    if (len > 0) buf[len - 1] = 0;
}
int w2v_mpi_processor_name(char *buf, int len) {
    char name[MPI_MAX_PROCESSOR_NAME];
    int n = 0;
    int rc = MPI_Get_processor_name(name, &n);
    name[n < MPI_MAX_PROCESSOR_NAME ? n : MPI_MAX_PROCESSOR_NAME - 1] = 0;
    strncpy(buf, name, (size_t)len);
    if (len > 0) buf[len - 1] = 0;
    return rc;
}
